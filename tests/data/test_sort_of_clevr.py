"""Sort-of-CLEVR: deterministic by seed, and every answer recomputed from the pixels and the words."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from sparsearch.data import data_task, is_plugin, load_data
from sparsearch.data.sort_of_clevr import ANSWERS, COLOURS, generate, parse_options
from sparsearch.errors import ConfigError

SQUARE_PIXELS = 100  # a 10×10 square; a disk of diameter 10 covers fewer


def _objects(image: np.ndarray) -> dict[str, tuple[float, float, str]]:
    """Each colour's object read back from the pixels: centre (x, y) and shape by its area."""
    found = {}
    for name, rgb in COLOURS.items():
        ys, xs = np.nonzero((image.transpose(1, 2, 0) == np.array(rgb)).all(axis=2))
        assert 60 <= len(xs) <= SQUARE_PIXELS, (name, len(xs))  # whole: nothing painted over it
        found[name] = (xs.mean(), ys.mean(), "square" if len(xs) == SQUARE_PIXELS else "circle")
    return found


def _answer(question: str, objects: dict[str, tuple[float, float, str]]) -> str:
    """The answer worked out from the question's words (not from the generator's kinds)."""
    colour = re.search(r"the (\w+) object", question).group(1)
    x, y, shape = objects[colour]
    if question.startswith("is the"):
        if question.endswith("on the left?"):
            return "yes" if x < 37.5 else "no"
        assert question.endswith("on the top?"), question
        return "yes" if y < 37.5 else "no"
    if question.startswith("how many"):
        return str(sum(s == shape for _, _, s in objects.values()))
    if "nearest" in question or "furthest" in question:
        others = [(math.dist((x, y), (ox, oy)), s) for name, (ox, oy, s) in objects.items() if name != colour]
        return (min if "nearest" in question else max)(others)[1]
    assert question == f"what is the shape of the {colour} object?", question
    return shape


def test_every_answer_recomputed_from_the_pixels_and_the_words() -> None:
    data = generate(300, seed=7)
    assert data.images.shape == (300, 3, 75, 75) and len(data.questions) == 300 * 20
    for n in range(300):
        objects = _objects(data.images[n])
        rows = np.nonzero(data.image_index == n)[0]
        assert len(rows) == 20
        for row in rows:
            assert ANSWERS[data.answers[row]] == _answer(data.questions[row], objects), data.questions[row]


def test_ten_unary_and_ten_relational_questions_per_image_over_every_answer() -> None:
    data = generate(500, seed=1)
    relational = np.array([q.startswith(("how many", "what is the shape of the object")) for q in data.questions])
    assert (relational.reshape(500, 20).sum(axis=1) == 10).all()
    assert set(data.answers.tolist()) == set(range(len(ANSWERS)))  # all 10 answers occur


def test_same_seed_same_arrays_and_another_seed_other_arrays() -> None:
    a, b, c = generate(50, seed=3), generate(50, seed=3), generate(50, seed=4)
    assert np.array_equal(a.images, b.images) and a.questions == b.questions
    assert np.array_equal(a.answers, b.answers) and np.array_equal(a.centres, b.centres)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.images, generate(50, seed=3, stream=1).images)  # test images differ


def test_the_data_spec_loads_vqa_splits_with_disjoint_images() -> None:
    assert data_task("sort-of-clevr:train=40") == "vqa" and not is_plugin("sort-of-clevr:train=40")
    data = load_data("sort-of-clevr:train=60,test=10,seed=2", input_size=32, seed=5)
    assert data.task == "vqa" and data.classes == ANSWERS and data.train.images.shape[1:] == (3, 32, 32)
    assert len(data.test) == 200 and len(data.train) + len(data.val) == 1200
    assert not set(data.train.image_index.tolist()) & set(data.val.image_index.tolist())
    again = load_data("sort-of-clevr:seed=2,test=10,train=60", input_size=32, seed=5)
    assert data.vocab == again.vocab and (data.val.labels == again.val.labels).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("train=5", "leaves no validation images"),
        ("train=0", "must be in 1.."),
        ("test=-1", "must be a non-negative integer"),
        ("size=3", "expected train=N, test=M or seed=S"),
        ("train=20,train=30", "given twice"),
        ("train=1e3", "must be a non-negative integer"),
        ("train=100001", "must be in 1.."),
    ],
)
def test_bad_options_are_one_line_errors(options: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options(options)


def test_group_accuracy_by_group_and_by_prefix() -> None:
    from sparsearch.train.run import group_accuracy

    predictions, labels = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([1, 0, 3, 0, 0])
    groups = torch.tensor([0, 0, 1, 2, 2])
    result = group_accuracy(predictions, labels, groups, ("a/x", "a/y", "b/z", "b/never"))
    assert list(result) == ["a", "b", "a/x", "a/y", "b/z"]  # prefixes first; a group with no example left out
    assert result["a"] == {"accuracy": 2 / 3, "examples": 3} and result["b/z"] == {"accuracy": 0.0, "examples": 2}
    assert group_accuracy(predictions, labels, None, None) == {}


@pytest.mark.integration
def test_train_and_eval_the_relation_network_on_sort_of_clevr(tmp_path, capsys) -> None:
    import json

    from sparsearch.cli import main

    data = "sort-of-clevr:train=20,test=5"
    out = str(tmp_path / "rn")
    args = ["train", "--space", "sort_of_clevr", "--data", data, "--set", "k=6", "--set", "routing=softmax"]
    assert main([*args, "--epochs", "1", "--steps-per-epoch", "2", "--out", out]) == 0
    capsys.readouterr()
    assert main(["eval", out, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == data and result["examples"] == 100
    assert {"unary", "relational", "relational/count"} <= set(result["per_group"])
    assert sum(result["per_group"][g]["examples"] for g in ("unary", "relational")) == 100
