"""Sort-of-CLEVR (Santoro et al. 2017, "A simple neural network module for relational reasoning"),
generated here from the paper's description: nothing is downloaded.

Each 75×75 RGB image (white background) holds 6 objects of 6 distinct colours (red, green, blue,
orange, grey, yellow), each a square or a circle of size 10 (a 10×10 square or a disk of diameter 10),
placed so that no two overlap. Every image gets 10 unary and 10 binary (relational) questions, each
about one colour, in words:

- unary: the shape of the X object; is the X object on the left; is the X object on the top;
- binary: the shape of the object nearest to the X object; of the object furthest from it; how many
  objects have the shape of the X object.

Answers come from a vocabulary of 10: yes, no, square, circle, 1, ..., 6. Distances are between the
objects' centres; "left" means the centre lies in the image's left half (x < 37.5), "top" likewise.

The same seed gives identical arrays; a set of 10,000 images takes about a second to generate. The
data spec is ``sort-of-clevr`` or ``sort-of-clevr:train=N,test=M,seed=S`` (defaults 9,800 training
and 200 test images of the paper's 10,000, data seed 0); the run's seed only draws the validation
images out of the training ones, so every run of a benchmark sees the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sparsearch.config.sort_of_clevr import DEFAULTS, MAX_IMAGES, parse_options
from sparsearch.data.base import Datasets, Split
from sparsearch.data.easy_vqa import build_vocab, encode_questions
from sparsearch.data.images import resize_uint8
from sparsearch.data.split import stratified_split
from sparsearch.errors import ConfigError

__all__ = [
    "ANSWERS",
    "COLOURS",
    "DEFAULTS",
    "GROUPS",
    "IMAGE_SIZE",
    "KINDS",
    "SortOfClevr",
    "generate",
    "load_sort_of_clevr",
    "parse_options",
]

IMAGE_SIZE = 75
OBJECT_SIZE = 10
OBJECTS = 6
COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "orange": (255, 156, 0),
    "grey": (128, 128, 128),
    "yellow": (255, 255, 0),
}
SHAPES = ("square", "circle")
ANSWERS = ("yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6")
QUESTIONS = {  # kind -> (relational?, template)
    "shape": (False, "what is the shape of the {} object?"),
    "left": (False, "is the {} object on the left?"),
    "top": (False, "is the {} object on the top?"),
    "nearest": (True, "what is the shape of the object nearest to the {} object?"),
    "furthest": (True, "what is the shape of the object furthest from the {} object?"),
    "count": (True, "how many objects have the shape of the {} object?"),
}
KINDS = tuple(QUESTIONS)
GROUPS = tuple(f"{'relational' if QUESTIONS[k][0] else 'unary'}/{k}" for k in KINDS)  # the data's example groups
PER_IMAGE = 10  # questions of each group (unary, binary) per image
_SIDE = IMAGE_SIZE - OBJECT_SIZE  # top-left corners range over 0.._SIDE
_OFFSETS = (np.arange(OBJECT_SIZE) - (OBJECT_SIZE - 1) / 2) ** 2  # squared distances of pixel centres
_DISK = np.add.outer(_OFFSETS, _OFFSETS) <= (OBJECT_SIZE / 2) ** 2  # a disk of diameter OBJECT_SIZE


@dataclass(frozen=True)
class SortOfClevr:
    """A generated set: images, the objects behind them, and the questions with their answers."""

    images: np.ndarray  # (N, 3, 75, 75) uint8
    centres: np.ndarray  # (N, 6, 2) float: (x, y) of each colour's object, in pixels
    shapes: np.ndarray  # (N, 6) int: 0 square, 1 circle, by colour
    questions: list[str]  # N × 20, image-major
    kinds: np.ndarray  # (N·20,) int index into KINDS
    colours: np.ndarray  # (N·20,) int index into COLOURS: the colour a question names
    answers: np.ndarray  # (N·20,) int index into ANSWERS
    image_index: np.ndarray  # (N·20,) int: the image of each question


def _place(rng: np.random.Generator) -> np.ndarray:
    """Top-left corners (6, 2) of non-overlapping 10×10 boxes (rejection sampling)."""
    corners: list[tuple[int, int]] = []
    while len(corners) < OBJECTS:
        x, y = (int(v) for v in rng.integers(0, _SIDE + 1, size=2))
        if all(abs(x - a) >= OBJECT_SIZE or abs(y - b) >= OBJECT_SIZE for a, b in corners):
            corners.append((x, y))
    return np.array(corners)


def _answer(kind: str, colour: int, centres: np.ndarray, shapes: np.ndarray) -> str:
    """The answer to a question of ``kind`` about ``colour`` in one image."""
    x, y = centres[colour]
    if kind == "shape":
        return SHAPES[shapes[colour]]
    if kind == "left":
        return "yes" if x < IMAGE_SIZE / 2 else "no"
    if kind == "top":
        return "yes" if y < IMAGE_SIZE / 2 else "no"
    if kind == "count":
        return str(int((shapes == shapes[colour]).sum()))
    distance = ((centres - centres[colour]) ** 2).sum(axis=1)
    distance[colour] = np.inf if kind == "nearest" else -np.inf
    other = int(distance.argmin() if kind == "nearest" else distance.argmax())
    return SHAPES[shapes[other]]


def generate(images: int, seed: int = 0, stream: int = 0) -> SortOfClevr:
    """``images`` Sort-of-CLEVR images and their 20 questions each, drawn from ``seed`` (``stream`` 0
    for training images, 1 for test images: the two never share a random stream)."""
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= MAX_IMAGES:
        raise ConfigError(f"sort-of-clevr: images={images!r} must be an integer in 1..{MAX_IMAGES:,}")
    rng = np.random.default_rng([stream, seed])
    pixels = np.full((images, IMAGE_SIZE, IMAGE_SIZE, 3), 255, dtype=np.uint8)
    palette = np.array(list(COLOURS.values()), dtype=np.uint8)
    corners = np.empty((images, OBJECTS, 2), dtype=np.int64)
    shapes = rng.integers(0, 2, size=(images, OBJECTS))
    for n in range(images):
        corners[n] = _place(rng)
        for c, (x, y) in enumerate(corners[n]):
            patch = pixels[n, y : y + OBJECT_SIZE, x : x + OBJECT_SIZE]
            if shapes[n, c]:
                patch[_DISK] = palette[c]
            else:
                patch[:] = palette[c]
    centres = corners + (OBJECT_SIZE - 1) / 2
    unary = [k for k in KINDS if not QUESTIONS[k][0]]
    binary = [k for k in KINDS if QUESTIONS[k][0]]
    kinds = np.concatenate(
        [rng.choice(len(unary), size=(images, PER_IMAGE)), len(unary) + rng.choice(len(binary), (images, PER_IMAGE))],
        axis=1,
    ).reshape(-1)
    colours = rng.integers(0, OBJECTS, size=images * 2 * PER_IMAGE)
    image_index = np.repeat(np.arange(images), 2 * PER_IMAGE)
    names = list(COLOURS)
    questions = [QUESTIONS[KINDS[k]][1].format(names[c]) for k, c in zip(kinds, colours, strict=True)]
    position = {a: i for i, a in enumerate(ANSWERS)}
    answers = np.array(
        [
            position[_answer(KINDS[k], c, centres[n], shapes[n])]
            for k, c, n in zip(kinds, colours, image_index, strict=True)
        ]
    )
    return SortOfClevr(
        np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)),
        centres,
        shapes,
        questions,
        kinds,
        colours,
        answers,
        image_index,
    )


def _split(data: SortOfClevr, vocab: tuple[str, ...], input_size: int, width: int | None = None) -> Split:
    tokens, lengths = encode_questions(data.questions, vocab, max_len=width)
    images = resize_uint8(torch.from_numpy(data.images), input_size)
    labels, image_index = torch.from_numpy(data.answers).long(), torch.from_numpy(data.image_index).long()
    return Split(images, labels, image_index, tokens, lengths, torch.from_numpy(data.kinds).long())


def load_sort_of_clevr(
    options: str, input_size: int, val_fraction: float, seed: int, vocab: tuple[str, ...] | None = None
) -> Datasets:
    """The splits of ``sort-of-clevr:options``: the validation questions are those of a seeded,
    answer-stratified set of training images; the test images are drawn from their own seed."""
    settings = parse_options(options)
    train = generate(settings["train"], settings["seed"])
    test = generate(settings["test"], settings["seed"], stream=1)
    if vocab is None:
        vocab = build_vocab(train.questions)
    every = _split(train, vocab, input_size)
    test_split = _split(test, vocab, input_size, every.tokens.shape[1])
    train_idx, val_idx = stratified_split(every.labels, val_fraction, seed, groups=every.image_index)
    spec = "sort-of-clevr" + (f":{options}" if options else "")
    return Datasets(
        spec, "vqa", every.subset(train_idx), every.subset(val_idx), test_split, ANSWERS, tuple(vocab), GROUPS
    )
