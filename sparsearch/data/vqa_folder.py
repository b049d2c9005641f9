"""A VQA-style directory, streamed: ``--data vqa-folder:/path``.

Layout: ``PATH/train.json`` and optionally ``PATH/val.json`` and ``PATH/test.json``, each a list of
``{"image": "relative/path.png", "question": "...", "answer": "..."}`` (or ``"answers": [...]``, the
annotators' answers, of which the most frequent is the label), the images under ``PATH``.

As seed 002 builds them: the question vocabulary (:func:`~sparsearch.data.easy_vqa.build_vocab`) and the
answer set come from the training questions only; validation and test questions whose answer no
training question has cannot be scored by a classifier over that set and are left out (say so when
reporting such a split's accuracy). Without ``val.json`` the
validation questions are those of a seeded, answer-stratified set of training images. Images are decoded
in the DataLoader's workers, resized on the shorter side and centre-cropped; not flipped (a flip would
change the answer to "what is on the left?").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sparsearch.data.base import Datasets
from sparsearch.data.easy_vqa import build_vocab, encode_questions
from sparsearch.data.image_folder import decode, packed, unpacked
from sparsearch.data.split import stratified_split
from sparsearch.data.stream import StreamSplit
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX, read_capped, shown
from sparsearch.strict_json import parse_json

__all__ = ["Questions", "load_vqa_folder"]


class Questions(Dataset):
    """``(image, tokens, answer)`` items: images read from files, questions already tokenised."""

    def __init__(self, images: list[str], tokens: list[list[int]], labels: list[int], size: int) -> None:
        # numpy arrays, not Python lists: the forked workers read them without copying (see image_folder.packed)
        self.images, self.labels, self.size = packed(images), np.asarray(labels, dtype=np.int64), size
        self.offsets = np.cumsum([0, *(len(t) for t in tokens)])
        self.tokens = np.fromiter((w for t in tokens for w in t), dtype=np.int64, count=int(self.offsets[-1]))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        words = torch.from_numpy(self.tokens[self.offsets[index] : self.offsets[index + 1]].copy())
        return decode(unpacked(self.images[index]), self.size, None), words, int(self.labels[index])


def _records(root: Path, name: str) -> list[tuple[str, str, str]]:
    """(image path, question, answer) of ``root/name``, checked."""
    path = root / name
    try:
        data = parse_json(read_capped(path, MAX["questions_file_bytes"], "questions file"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: expected a non-empty list of questions")
    out = []
    resolved = root.resolve()
    checked: dict[str, str] = {}
    for i, item in enumerate(data):
        where = f"{path}, question {i}"
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("image"), str)
            or not isinstance(item.get("question"), str)
        ):
            raise ConfigError(f"{where}: needs 'image' and 'question' strings")
        answer = _answer(item, where)
        image = _image(root, resolved, item["image"], where, checked)
        out.append((image, item["question"], answer))
    return out


def _image(root: Path, resolved: Path, name: str, where: str, checked: dict[str, str]) -> str:
    """The question's image, inside ``root`` and a regular file (each checked once)."""
    if name in checked:
        return checked[name]
    try:
        image = (root / name).resolve()
        regular = image.is_file()
    except (OSError, RuntimeError, ValueError) as err:  # a link loop (RuntimeError), a NUL in the name
        raise ConfigError(f"{where}: image {shown(name)} cannot be resolved ({err})") from None
    if not image.is_relative_to(resolved):
        raise ConfigError(f"{where}: image {shown(name)} is outside {root}")
    if not regular:
        raise ConfigError(f"{where}: image {shown(name)} is not a regular file (missing, or a device)")
    checked[name] = str(image)
    return checked[name]


def _answer(item: dict[str, Any], where: str) -> str:
    if isinstance(item.get("answer"), str):
        return item["answer"].strip().lower()
    answers = item.get("answers")
    if isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers):
        counts = Counter(a.strip().lower() for a in answers)
        return min(counts, key=lambda a: (-counts[a], a))
    raise ConfigError(f"{where}: needs an 'answer' string or an 'answers' list of strings")


def load_vqa_folder(
    path: str, input_size: int, val_fraction: float, seed: int, vocab: Sequence[str] | None = None
) -> Datasets:
    root = Path(path).expanduser()
    if not (root / "train.json").is_file():
        raise ConfigError(f"data vqa-folder:{path}: no train.json there (see docs/training.md for the layout)")
    train = _records(root, "train.json")
    counts = Counter(a for _, _, a in train)
    answers = tuple(sorted(counts, key=lambda a: (-counts[a], a)))
    if len(answers) > MAX["classes"]:
        raise ConfigError(f"data vqa-folder:{path}: {len(answers):,} answers; at most {MAX['classes']:,}")
    answer_id = {a: i for i, a in enumerate(answers)}
    labels = torch.tensor([answer_id[a] for _, _, a in train])
    if (root / "val.json").is_file():
        val = [r for r in _records(root, "val.json") if r[2] in answer_id]
        train_rows = list(range(len(train)))
    else:
        images = {p: i for i, p in enumerate(dict.fromkeys(p for p, _, _ in train))}
        groups = torch.tensor([images[p] for p, _, _ in train])
        train_idx, val_idx = stratified_split(labels, val_fraction, seed, groups=groups)
        train_rows, val = train_idx.tolist(), [train[i] for i in val_idx.tolist()]
    if vocab is None:
        vocab = build_vocab([train[i][1] for i in train_rows])
    where = f"data vqa-folder:{path}"

    def split(records: list[tuple[str, str, str]]) -> StreamSplit:
        if not records:
            raise ConfigError(f"{where}: a split has no question whose answer a training question has")
        tokens, lengths = encode_questions([q for _, q, _ in records], vocab)
        rows = [t[:n].tolist() for t, n in zip(tokens, lengths.tolist(), strict=True)]
        ids = [answer_id[a] for _, _, a in records]
        reader = Questions([p for p, _, _ in records], rows, ids, input_size)
        return StreamSplit(reader, size=input_size, channels=3, vqa=True, where=where, labels=torch.tensor(ids))

    test = None
    if (root / "test.json").is_file():
        test = split([r for r in _records(root, "test.json") if r[2] in answer_id])
    return Datasets(
        spec=f"vqa-folder:{path}",
        task="vqa",
        train=split([train[i] for i in train_rows]),
        val=split(val),
        test=test,
        classes=answers,
        vocab=tuple(vocab),
    )
