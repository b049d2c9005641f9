from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch

from sparsearch.data import load_data
from sparsearch.data.easy_vqa import build_vocab, encode_questions, tokenize
from sparsearch.data.stream import StreamSplit
from sparsearch.errors import ConfigError
from tests.cifar_files import RunsCode, make_cifar


@pytest.fixture(scope="module")
def vqa():
    return load_data("easy-vqa", input_size=64, seed=0)


def test_easy_vqa_is_the_real_dataset_with_image_disjoint_splits(vqa) -> None:
    assert len(vqa.train) + len(vqa.val) == 38_575
    assert len(vqa.test) == 9_673
    assert vqa.num_classes == 13 and vqa.task == "vqa"
    assert vqa.train.images.shape == (4_000, 3, 64, 64) and vqa.test.images.shape == (1_000, 3, 64, 64)
    train_images = set(vqa.train.image_index.tolist())
    val_images = set(vqa.val.image_index.tolist())
    assert not train_images & val_images  # no validation image is seen in training
    assert 0.07 < len(vqa.val) / 38_575 < 0.13
    # Stratified: each answer's share differs by under 1.5 points between the two sides.
    train_share = Counter(vqa.train.labels.tolist())
    val_share = Counter(vqa.val.labels.tolist())
    for answer in range(13):
        assert abs(train_share[answer] / len(vqa.train) - val_share[answer] / len(vqa.val)) < 0.015


def test_easy_vqa_vocabulary_comes_from_the_training_side_only(vqa) -> None:
    import easy_vqa

    from sparsearch.data.split import stratified_split

    texts, answers, image_ids = easy_vqa.get_train_questions()
    labels = torch.tensor([vqa.classes.index(a) for a in answers])
    rows = {image: row for row, image in enumerate(sorted(easy_vqa.get_train_image_paths()))}
    train_idx, _ = stratified_split(labels, 0.1, 0, groups=torch.tensor([rows[i] for i in image_ids]))
    assert vqa.vocab == build_vocab([texts[i] for i in train_idx.tolist()])
    assert vqa.vocab[:2] == ("<pad>", "<unk>")
    first = vqa.train.tokens[0][: vqa.train.lengths[0]].tolist()
    assert [vqa.vocab[t] for t in first] == tokenize(texts[int(train_idx[0])])


def test_easy_vqa_split_is_seeded(vqa) -> None:
    again = load_data("easy-vqa", input_size=64, seed=0)
    other = load_data("easy-vqa", input_size=64, seed=1)
    assert torch.equal(again.val.image_index, vqa.val.image_index)
    assert set(other.val.image_index.tolist()) != set(vqa.val.image_index.tolist())


def test_questions_encode_with_padding_and_unknown_words() -> None:
    vocab = build_vocab(["what is the shape?", "is the shape red?"])
    tokens, lengths = encode_questions(["What is the colour?", "shape"], vocab)
    assert lengths.tolist() == [4, 1]
    assert tokens[0, 3] == 1  # "colour" was never seen: unknown
    assert tokens[1, 1:].eq(0).all()  # right padding


def test_digits_are_stratified_three_channel_images_at_the_asked_size() -> None:
    d = load_data("digits", input_size=16, seed=3)
    assert d.train.images.shape[1:] == (3, 16, 16) and d.train.images.dtype == torch.uint8
    assert len(d.train) + len(d.val) + len(d.test) == 1_797
    assert set(d.val.labels.tolist()) == set(range(10))
    # The test split does not move with the run's seed; the validation split does.
    other = load_data("digits", input_size=16, seed=4)
    assert torch.equal(other.test.images, d.test.images)
    assert not torch.equal(other.val.labels, d.val.labels)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_directories_load(tmp_path: Path, name: str) -> None:
    root = make_cifar(tmp_path / name, name)
    d = load_data(f"{name}:{root}", input_size=32, seed=0)
    assert d.classes == tuple(f"{'class' if name == 'cifar10' else 'fine'}{c}" for c in range(3))
    assert len(d.train) + len(d.val) == 90 and len(d.test) == 18
    assert d.train.images.shape[1:] == (3, 32, 32)
    small = load_data(f"{name}:{root}", input_size=16, seed=0)
    assert small.train.images.shape[1:] == (3, 16, 16)


def test_a_cifar_file_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "c10")
    marker = tmp_path / "ran"
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(ConfigError, match=r"data_batch_3: not a CIFAR python-format file .*io.open"):
        load_data(f"cifar10:{root}", input_size=32)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("imagenet", "unknown data 'imagenet'"),
        ("cifar10:", "give the directory"),
        ("cifar10:/no/such/dir", "no such directory"),
        ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ],
)
def test_bad_data_specs_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_data(spec, input_size=16)


def test_a_cifar_directory_missing_a_file_is_named(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "c10")
    (root / "test_batch").unlink()
    with pytest.raises(ConfigError, match="test_batch: missing"):
        load_data(f"cifar10:{root}", input_size=32)


PLUGIN = """
import torch
from torch.utils.data import TensorDataset

def make_datasets(input_size, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(40) % 4
    images = torch.rand(40, 1, 12, 12, generator=g) * 0.2
    images[torch.arange(40), 0, labels, labels] = 1.0  # the class is where the bright pixel is
    return TensorDataset(images, labels), (images[:8], labels[:8])

class Stream(torch.utils.data.IterableDataset):  # an iterable dataset with a length: streams in its own order

    def __len__(self):
        return 20

    def __iter__(self):
        for i in range(20):
            image = torch.zeros(1, 12, 12)
            image[0, i % 4, i % 4] = 1.0
            yield image, i % 4

def iterable(input_size, seed):
    return Stream(), Stream()

def wrong(input_size, seed):
    return "not datasets"

def numpy_arrays(input_size, seed):
    images, labels = make_datasets(input_size, seed)[1]
    return (images.numpy(), labels.numpy()), (images.numpy(), labels.numpy())

def channels_last(input_size, seed):
    images = torch.rand(8, 12, 12, 3)
    return (images, torch.arange(8) % 2), (images, torch.arange(8) % 2)
"""


@pytest.fixture
def plugin_dir(user_module) -> None:
    user_module("my_data_plugin", PLUGIN)


def test_a_plugin_returns_train_and_validation(plugin_dir: None) -> None:
    d = load_data("my_data_plugin:make_datasets", input_size=16, seed=0)
    assert d.test is None and d.num_classes == 4 and d.in_channels == 1
    # the Dataset streams (never read whole); the tensors stay in memory
    assert isinstance(d.train, StreamSplit) and len(d.train) == 40 and d.train.size == 16
    assert next(d.train.batches(64)).images.shape == (40, 1, 16, 16) and len(d.val) == 8
    with pytest.raises(ConfigError, match="has no test split; evaluate on the validation split: --split val"):
        d.split("test")


def test_a_plugin_may_give_an_iterable_dataset_that_streams_in_its_own_order(plugin_dir: None) -> None:
    d = load_data("my_data_plugin:iterable", input_size=16, seed=0)
    assert d.num_classes == 4 and len(d.train) == 20 and d.train.size == 16
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([b.labels for b in d.train.batches(8, shuffle=True, generator=g)])
    assert labels.tolist() == [i % 4 for i in range(20)]  # its own order
    with pytest.raises(ConfigError, match="an IterableDataset cannot be subset; give a map-style Dataset"):
        d.val.subset(torch.arange(4))


def test_a_plugin_may_give_numpy_arrays_and_channels_last_images_are_named(plugin_dir: None) -> None:
    d = load_data("my_data_plugin:numpy_arrays", input_size=16, seed=0)
    assert d.train.images.shape == (8, 1, 16, 16) and d.num_classes == 4
    with pytest.raises(ConfigError, match=r"look channels-last \(N, H, W, C\); give \(N, C, H, W\)"):
        load_data("my_data_plugin:channels_last", input_size=16)


def test_a_plugin_returning_the_wrong_type_is_refused(plugin_dir: None) -> None:
    with pytest.raises(ConfigError, match=r"must return \(train, val\)"):
        load_data("my_data_plugin:wrong", input_size=16)
    with pytest.raises(ConfigError, match="has no function 'absent'"):
        load_data("my_data_plugin:absent", input_size=16)
