"""The bounds every input gets before any work: file sizes, counts, times and model sizes.

A value outside its bound is refused with one ``ConfigError`` that names the key, the bound and the
value (shortened when long). docs/guarantees.md lists them; each is checked before anything is read,
built, allocated or written.
"""

from __future__ import annotations

import math
import reprlib
from pathlib import Path

from sparsearch.errors import ConfigError

__all__ = ["MAX", "check_int", "check_number", "read_capped", "shown"]

# Upper bounds, by what they bound.
MAX = {
    "trials": 10_000,  # trials in one study (each a row in the storage)
    "epochs": 10_000,
    "jobs": 256,  # local worker processes
    "heartbeat": 3_600,  # seconds between heartbeats
    "timeout": 366 * 24 * 3600,  # seconds: a year
    "count": 10**7,  # steps, examples, batches and the like
    "batch_size": 65_536,
    "space_file_bytes": 1 << 20,  # a search space YAML file
    "json_file_bytes": 16 << 20,  # a checkpoint's config.json
    "questions_file_bytes": 2 << 30,  # a VQA directory's questions JSON (VQA v2's are some hundred MB)
    "files": 50_000_000,  # image files of a directory data set
    "image_pixels": 89_478_485,  # an image file's width x height: Pillow's own cap (a decompression bomb past it)
    "yaml_depth": 64,  # nesting of a space file
    "yaml_aliases": 256,  # aliases (*name) in a space file
    "classes": 1_000_000,  # classes of a classifier, labels of a data set
    # model shapes: keep every configuration buildable on one machine (see also "params")
    "input_size": 8_192,
    "in_channels": 64,
    "channels": 65_536,  # any channel count or width
    "cardinality": 1_024,
    "depth": 1_000,  # blocks in a stage
    "stages": 64,
    "stride": 8,
    "kernel": 31,
    "experts": 256,
    "width_multiplier": 16,
    "params": 2_000_000_000,  # parameters of a built model (8 GB in float32)
    "message_chars": 200,  # a user's value as quoted in a message
}

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = MAX["message_chars"]
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length, without expanding shared or deep structures."""
    return _REPR.repr(value)


def check_int(key: str, value: object, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in ``low..high`` (``high`` defaults to ``MAX[key]`` where there is one)."""
    high = MAX.get(key) if high is None else high
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in {low}..{high:,}"
        raise ConfigError(f"{key}={shown(value)} must be {bound}")
    return value


def check_number(key: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (low_open and value == low):
        raise ConfigError(f"{key}={shown(value)} must be a number in {'(' if low_open else '['}{low:g}, {high:g}]")
    return float(value)


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, refusing one larger than ``cap`` (read no further)."""
    if not path.exists():
        raise ConfigError(f"{path}: cannot read the {what} (No such file or directory)")
    if not path.is_file():
        raise ConfigError(f"{path}: cannot read the {what} (not a regular file)")
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except OSError as err:  # unreadable, a directory swapped in, an I/O error
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if len(data) > cap:
        raise ConfigError(f"{path}: the {what} is larger than the {cap:,}-byte cap")
    return data
