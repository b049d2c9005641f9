"""Directory readers that stream from disk: an image folder and a VQA-style directory, read through
DataLoader worker processes, reproducible whatever the number of workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparsearch.cli import main
from sparsearch.data import Reading, load_data
from sparsearch.data.stream import StreamSplit
from sparsearch.errors import ConfigError

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230)}


def _image(path: Path, colour: tuple[int, int, int], size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_folder(root: Path, per_class: int = 8) -> Path:
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(per_class):
            _image(root / name / f"{i}.png", colour, (20 + i, 24), seed=c * 100 + i)
    return root


def test_an_image_folder_streams_its_classes(tmp_path: Path) -> None:
    d = load_data(f"folder:{make_folder(tmp_path / 'imgs')}", input_size=16, seed=0, val_fraction=0.25)
    assert isinstance(d.train, StreamSplit) and d.classes == ("blue", "green", "red") and d.test is None
    assert len(d.train) + len(d.val) == 24 and d.in_channels == 3 and d.input_size == 16
    batch = next(d.val.batches(64, reading=Reading(workers=2)))
    assert batch.images.shape == (len(d.val), 3, 16, 16)
    red = batch.images[batch.labels == 2].mean(dim=(0, 2, 3))
    assert red[0] > red[1] and red[0] > red[2]  # the pixels are read, normalised, in RGB order


def test_the_augmentation_is_the_same_with_any_number_of_workers(tmp_path: Path) -> None:
    d = load_data(f"folder:{make_folder(tmp_path / 'imgs')}", input_size=16, seed=0)

    def epoch(workers: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        reading = Reading(workers=workers)
        return torch.cat([b.images for b in d.train.batches(5, shuffle=True, generator=g, reading=reading)])

    assert torch.equal(epoch(0), epoch(2))
    g = torch.Generator().manual_seed(3)
    first, second = (torch.cat([b.images for b in d.train.batches(64, shuffle=True, generator=g)]) for _ in range(2))
    assert not torch.equal(first, second)  # another pass, other crops and order


def test_train_val_test_directories_and_a_foreign_class_is_named(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for side in ("train", "val", "test"):
        make_folder(root / side, per_class=3)
    d = load_data(f"folder:{root}", input_size=12)
    assert (len(d.train), len(d.val), len(d.test)) == (9, 9, 9)
    _image(root / "val" / "purple" / "0.png", (120, 0, 120), (12, 12), 0)
    with pytest.raises(ConfigError, match="class directory 'purple' is not one of the training classes"):
        load_data(f"folder:{root}", input_size=12)


def test_class_directories_that_loop_or_stand_alone_are_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", per_class=2)
    (root / "loop").symlink_to("loop")
    with pytest.raises(ConfigError, match=r"imgs/loop: cannot read it \(Too many levels of symbolic links\)"):
        load_data(f"folder:{root}", input_size=12)
    (root / "loop").unlink()
    (root / "red" / "up").symlink_to("..")  # a link to a directory inside a class: not followed
    d = load_data(f"folder:{root}", input_size=12, val_fraction=0.5)
    assert len(d.train) + len(d.val) == 6
    alone = make_folder(tmp_path / "alone", per_class=2)
    for name in ("green", "blue"):
        for f in (alone / name).iterdir():
            f.unlink()
        (alone / name).rmdir()
    with pytest.raises(ConfigError, match=r"one class sub-directory \(red\) .*a classifier needs two or more"):
        load_data(f"folder:{alone}", input_size=12)


def test_a_broken_image_is_named_in_one_line_from_a_worker(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", per_class=2)
    (root / "red" / "bad.png").write_bytes(b"not a png")
    d = load_data(f"folder:{root}", input_size=12, val_fraction=0.5)
    split = d.train if any(b"bad.png" in bytes(p) for p in d.train.dataset.paths) else d.val
    with pytest.raises(ConfigError) as caught:
        list(split.batches(64, reading=Reading(workers=1)))
    assert "bad.png: cannot decode the image" in str(caught.value) and "\n" not in str(caught.value)


def make_vqa(root: Path) -> Path:
    records = []
    for i, (name, colour) in enumerate(list(COLOURS.items()) * 3):
        _image(root / "images" / f"{i}.png", colour, (18, 18), i)
        records.append({"image": f"images/{i}.png", "question": "What colour is the square?", "answer": name})
        records.append(
            {"image": f"images/{i}.png", "question": "Is it red?", "answers": ["yes" if name == "red" else "no"] * 3}
        )
    (root / "train.json").write_text(json.dumps(records))
    (root / "test.json").write_text(json.dumps([*records[:6], {**records[0], "answer": "never seen"}]))
    return root


def test_a_vqa_directory_streams_questions_with_their_images(tmp_path: Path) -> None:
    d = load_data(f"vqa-folder:{make_vqa(tmp_path / 'vqa')}", input_size=16, seed=0, val_fraction=0.25)
    assert d.task == "vqa" and set(d.classes) == {"red", "green", "blue", "yes", "no"}
    assert d.vocab[:2] == ("<pad>", "<unk>") and "colour" in d.vocab
    assert len(d.test) == 6  # the question whose answer no training question has is left out
    batch = next(d.train.batches(64, reading=Reading(workers=2)))
    assert batch.tokens is not None and batch.tokens.shape[0] == len(d.train) and batch.images.shape[1:] == (3, 16, 16)
    assert int(batch.lengths.max()) == batch.tokens.shape[1]


def test_a_vqa_directory_refuses_an_image_outside_it(tmp_path: Path) -> None:
    root = tmp_path / "vqa"
    root.mkdir()
    (root / "train.json").write_text(json.dumps([{"image": "../x.png", "question": "q", "answer": "a"}]))
    with pytest.raises(ConfigError, match=r"image '../x.png' is outside"):
        load_data(f"vqa-folder:{root}", input_size=16)


def test_train_and_eval_on_an_image_folder_through_the_cli(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    out = tmp_path / "run"
    args = ["train", "--space", "gateconnect_digits", "--data", f"folder:{root}", "--epochs", "1", "--workers", "2"]
    assert main([*args, "--steps-per-epoch", "2", "--batch-size", "8", "--out", str(out)]) == 0
    assert main(["eval", str(out), "--split", "val", "--json"]) == 0
