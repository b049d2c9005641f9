"""An image-folder directory, streamed: ``--data folder:/path``.

Layouts (as torchvision's ``ImageFolder`` and timm's folder reader read them):

- ``PATH/train/<class>/<image>`` with optional ``PATH/val/<class>/...`` and ``PATH/test/<class>/...``;
- ``PATH/<class>/<image>``: the training images; the validation split is carved from them (stratified,
  seeded), and there is no test split.

Class names are the training side's sub-directory names, sorted. Images (.png, .jpg, .jpeg, .bmp, .gif,
.webp, .tif, .tiff) are decoded with Pillow as RGB, in the DataLoader's worker processes, never kept:
evaluation resizes the shorter side to the input size and crops the centre; training crops a random
35-100% of the area at an aspect ratio in [3/4, 4/3], resizes it and flips it half the time, drawn from
a per-item seed (:mod:`sparsearch.data.stream`), so the same run augments the same way with any number
of workers.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sparsearch.data.base import Datasets
from sparsearch.data.split import stratified_split
from sparsearch.data.stream import StreamSplit
from sparsearch.errors import ConfigError
from sparsearch.limits import MAX

__all__ = ["ImageFiles", "decode", "load_image_folder", "packed", "unpacked"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def decode(path: str, size: int, seed: int | None) -> Tensor:
    """The image at ``path`` as uint8 (3, size, size): centre crop, or with ``seed`` a random crop and flip."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns past its pixel cap, and raises past twice that
            warnings.simplefilter("ignore", UserWarning)  # a damaged file's tags: it decodes, or it is refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                w, h = opened.size  # from the header: checked before any pixel is decoded
                if w * h > MAX["image_pixels"]:
                    raise Image.DecompressionBombError(f"{w}x{h}")
                if w < 1 or h < 1:
                    raise ValueError(f"an image of {w}x{h} pixels")
                image = opened.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ConfigError(
            f"{path}: the image has more than {MAX['image_pixels']:,} pixels (a decompression bomb?)"
        ) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as err:
        raise ConfigError(f"{path}: cannot decode the image ({_first_line(err)})") from None
    if seed is None:
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    else:
        rng = random.Random(seed)
        box = (0, 0, w, h)
        for _ in range(10):  # as torchvision's RandomResizedCrop: area 35-100%, aspect ratio 3/4-4/3
            area = w * h * rng.uniform(0.35, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
                box = (left, top, left + cw, top + ch)
                break
        image = image.crop(box).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def packed(paths: list[str]) -> np.ndarray:
    """Paths as one numpy array of UTF-8 bytes: the worker processes, forked with it, read it without
    writing to it (a Python list's reference counts would copy every page it touches into each worker,
    so their memory would grow with the data set)."""
    return np.array([p.encode("utf-8", "surrogateescape") for p in paths], dtype=bytes)


def unpacked(path: np.bytes_) -> str:
    return bytes(path).decode("utf-8", "surrogateescape")


class ImageFiles(Dataset):
    """``(image, label)`` items read from files; with ``augment``, indexed by ``(index, seed)``."""

    def __init__(self, paths: list[str], labels: list[int], size: int, augment: bool) -> None:
        self.paths, self.labels, self.size = packed(paths), np.asarray(labels, dtype=np.int64), size
        self.takes_seed = augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = decode(unpacked(self.paths[index]), self.size, seed if self.takes_seed else None)
        return image, int(self.labels[index])


def _classes(root: Path) -> list[str]:
    """The class directories of ``root`` (links to directories included), sorted."""
    try:
        entries = list(os.scandir(root))
    except OSError as err:
        raise ConfigError(f"{root}: cannot read the directory ({err.strerror})") from None
    names = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()  # follows a link
        except OSError as err:  # a link loop
            raise ConfigError(f"{entry.path}: cannot read it ({err.strerror})") from None
        if is_dir:
            names.append(entry.name)
    return sorted(names)


def _files(root: Path, classes: list[str], strict: bool) -> tuple[list[str], list[int]]:
    """Image paths under ``root/<class>/`` (any depth) and their class ids; ``strict``: a class directory
    ``root`` has that the training side lacks is refused."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(_classes(root)) - set(index))
    if strict and unknown:
        raise ConfigError(f"{root}: class directory {unknown[0]!r} is not one of the training classes")
    paths, labels = [], []
    for name in classes:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in _walk(folder):
            paths.append(path)
            labels.append(index[name])
            if len(paths) > MAX["files"]:
                raise ConfigError(f"{root}: more than {MAX['files']:,} image files")
    return paths, labels


def _walk(folder: Path) -> list[str]:
    """The image files under ``folder``, sorted, depth first. Symbolic links to directories are not
    followed (no loops); a file named as an image that is not a regular file (a broken link, a link loop,
    a FIFO, which would block the reader) and a directory that cannot be read are one-line errors."""
    found: list[str] = []
    stack = [str(folder)]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as err:
            raise ConfigError(f"{directory}: cannot read the directory ({err.strerror or err})") from None
        subdirectories = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.path)
            elif entry.name.lower().endswith(EXTENSIONS):
                try:
                    regular = entry.is_file()  # follows the link: False for a broken one
                except OSError:  # a link loop
                    regular = False
                if not regular:
                    raise ConfigError(f"{entry.path}: not a regular file (a broken link, a link loop or a device)")
                found.append(entry.path)
        stack.extend(reversed(subdirectories))
    return found


def load_image_folder(path: str, input_size: int, val_fraction: float, seed: int) -> Datasets:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data folder:{path}: no such directory")
    split_dirs = (root / "train").is_dir()
    train_root = root / "train" if split_dirs else root
    classes = _classes(train_root)
    if not classes:
        raise ConfigError(f"data folder:{path}: no class sub-directories in {train_root}")
    if len(classes) < 2:
        raise ConfigError(
            f"data folder:{path}: one class sub-directory ({classes[0]}) in {train_root}; "
            "a classifier needs two or more"
        )
    paths, labels = _files(train_root, classes, strict=False)
    if not paths:
        raise ConfigError(f"data folder:{path}: no image files ({', '.join(EXTENSIONS)}) under {train_root}")

    def split(files: list[str], ids: list[int], augment: bool, where: str) -> StreamSplit:
        reader = ImageFiles(files, ids, input_size, augment)
        return StreamSplit(reader, size=input_size, channels=3, where=where, labels=torch.tensor(ids))

    where = f"data folder:{path}"
    if split_dirs and (root / "val").is_dir():
        val_paths, val_labels = _files(root / "val", classes, strict=True)
        train = split(paths, labels, True, where)
        val = split(val_paths, val_labels, False, where)
    else:
        train_idx, val_idx = stratified_split(torch.tensor(labels), val_fraction, seed)
        pick = lambda rows, seq: [seq[i] for i in rows.tolist()]  # noqa: E731
        train = split(pick(train_idx, paths), pick(train_idx, labels), True, where)
        val = split(pick(val_idx, paths), pick(val_idx, labels), False, where)
    if len(val) == 0:
        raise ConfigError(f"{where}: the validation split is empty")
    test = None
    if split_dirs and (root / "test").is_dir():
        test_paths, test_labels = _files(root / "test", classes, strict=True)
        test = split(test_paths, test_labels, False, where) if test_paths else None
    return Datasets(
        spec=f"folder:{path}", task="classification", train=train, val=val, test=test, classes=tuple(classes)
    )
