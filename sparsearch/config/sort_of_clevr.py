"""Sort-of-CLEVR's size options (``sort-of-clevr:train=N,test=M,seed=S``): parsed once, torch-free, so a
space file's ``proxy.dataset`` is checked when the space is read and the data module generates from
the parsed values."""

from __future__ import annotations

from sparsearch.errors import ConfigError

__all__ = ["DEFAULTS", "MAX_IMAGES", "parse_options"]

DEFAULTS = {"train": 9_800, "test": 200, "seed": 0}
MAX_IMAGES = 100_000  # one option's ceiling: 10× the paper's set, 1.7 GB as uint8


def parse_options(text: str) -> dict[str, int]:
    """``train=N,test=M,seed=S`` (any subset, any order) over :data:`DEFAULTS`; a one-line error otherwise."""
    options = dict(DEFAULTS)
    seen: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in DEFAULTS:
            raise ConfigError(f"sort-of-clevr: option {item!r}; expected train=N, test=M or seed=S")
        if key in seen:
            raise ConfigError(f"sort-of-clevr: option {key} given twice")
        seen.add(key)
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 12:
            raise ConfigError(f"sort-of-clevr: {key}={value!r} must be a non-negative integer")
        options[key] = int(value)
    for key in ("train", "test"):
        if not 1 <= options[key] <= MAX_IMAGES:
            raise ConfigError(f"sort-of-clevr: {key}={options[key]:,} must be in 1..{MAX_IMAGES:,}")
    if options["train"] < 10:
        raise ConfigError(f"sort-of-clevr: train={options['train']} leaves no validation images; give at least 10")
    return options
