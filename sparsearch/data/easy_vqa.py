"""easy-VQA: the real VQA dataset shipped in the ``easy-vqa`` wheel.

4,000 training and 1,000 test images (64×64 RGB shapes), 38,575 and 9,673 questions, 13 answers, one
answer per question. Images are decoded once per process and kept as uint8. Questions are lower-cased
and split into words; the vocabulary comes from the questions of the training side of the split only
(id 0 pads, id 1 is any word never seen there). The validation questions are those of a seeded,
answer-stratified set of training images: no validation image is seen in training.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from sparsearch.data.base import Datasets, Split
from sparsearch.data.images import resize_uint8
from sparsearch.data.split import stratified_split
from sparsearch.errors import ConfigError

__all__ = ["PAD", "UNKNOWN", "build_vocab", "encode_questions", "load_easy_vqa", "tokenize"]

PAD, UNKNOWN = "<pad>", "<unk>"


def tokenize(question: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", question.lower())


def build_vocab(questions: Sequence[str]) -> tuple[str, ...]:
    """PAD, UNKNOWN, then the words by decreasing frequency (ties alphabetical)."""
    counts = Counter(word for q in questions for word in tokenize(q))
    return (PAD, UNKNOWN, *sorted(counts, key=lambda w: (-counts[w], w)))


def encode_questions(
    questions: Sequence[str], vocab: Sequence[str], max_len: int | None = None
) -> tuple[Tensor, Tensor]:
    """(N, T) token ids right-padded with 0, and (N,) lengths; words beyond ``max_len`` are dropped."""
    ids = {word: i for i, word in enumerate(vocab)}
    rows = [[ids.get(w, 1) for w in tokenize(q)] or [1] for q in questions]  # an empty question reads as unknown
    width = max(len(r) for r in rows) if max_len is None else max_len
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    lengths = torch.empty(len(rows), dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:width]
        tokens[i, : len(row)] = torch.tensor(row)
        lengths[i] = len(row)
    return tokens, lengths


def _package():
    try:
        import easy_vqa
    except ImportError as err:  # a dependency of sparsearch; missing only in a broken environment
        raise ConfigError(f"data easy-vqa needs the easy-vqa package: pip install easy-vqa ({err})") from None
    return easy_vqa


@lru_cache(maxsize=2)
def _images(split: str) -> tuple[Tensor, dict[int, int]]:
    """Decoded (N, 3, 64, 64) uint8 images of a split and the row of each image id."""
    from PIL import Image

    paths = getattr(_package(), f"get_{split}_image_paths")()
    ids = sorted(paths)
    array = np.stack([np.asarray(Image.open(paths[i]).convert("RGB")) for i in ids])  # (N, 64, 64, 3)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(), {image: row for row, image in enumerate(ids)}


def _questions(split: str, answers: dict[str, int]) -> tuple[list[str], Tensor, Tensor]:
    texts, given, image_ids = getattr(_package(), f"get_{split}_questions")()
    _, rows = _images(split)
    labels = torch.tensor([answers[a] for a in given], dtype=torch.long)
    return list(texts), labels, torch.tensor([rows[i] for i in image_ids], dtype=torch.long)


@lru_cache(maxsize=2)
def load_easy_vqa(input_size: int, val_fraction: float, seed: int, vocab: tuple[str, ...] | None = None) -> Datasets:
    """The three splits; ``vocab`` (from a checkpoint) replaces the one built from the training side.

    Cached per process (a study loads the same data for every trial); treat the tensors as read-only.
    """
    answer_list = tuple(_package().get_answers())
    answers = {a: i for i, a in enumerate(answer_list)}
    texts, labels, image_index = _questions("train", answers)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed, groups=image_index)
    if vocab is None:
        vocab = build_vocab([texts[i] for i in train_idx.tolist()])
    tokens, lengths = encode_questions(texts, vocab)
    images = resize_uint8(_images("train")[0], input_size)
    train_all = Split(images, labels, image_index, tokens, lengths)
    test_texts, test_labels, test_index = _questions("test", answers)
    test_tokens, test_lengths = encode_questions(test_texts, vocab, max_len=tokens.shape[1])
    test = Split(resize_uint8(_images("test")[0], input_size), test_labels, test_index, test_tokens, test_lengths)
    return Datasets(
        spec="easy-vqa",
        task="vqa",
        train=train_all.subset(train_idx),
        val=train_all.subset(val_idx),
        test=test,
        classes=answer_list,
        vocab=tuple(vocab),
    )
