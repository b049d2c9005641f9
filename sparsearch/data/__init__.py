"""Data: easy-VQA, scikit-learn digits, CIFAR python-format directories and user plug-ins.

``load_data(spec, input_size=..., seed=...)`` returns :class:`Datasets` with train, validation (carved
from the training data, stratified and seeded) and test splits. Specs:

- ``easy-vqa``: the VQA dataset of the easy-vqa package;
- ``sort-of-clevr`` or ``sort-of-clevr:train=N,test=M,seed=S``: the generated relational VQA set;
- ``digits``: scikit-learn's handwritten digits;
- ``cifar10:/path`` or ``cifar100:/path``: a CIFAR python-format directory;
- ``folder:/path``: an image-folder directory, streamed from disk (:mod:`sparsearch.data.image_folder`);
- ``vqa-folder:/path``: images and questions JSON, streamed from disk (:mod:`sparsearch.data.vqa_folder`);
- ``mypkg.mymod:make_datasets``: a user plug-in (see :mod:`sparsearch.data.plugins`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sparsearch.data.base import TASKS, Batch, Datasets, Reading, Split, normalise
from sparsearch.errors import ConfigError

__all__ = [
    "BUILTIN",
    "TASKS",
    "Batch",
    "Datasets",
    "Reading",
    "Split",
    "data_task",
    "is_plugin",
    "load_data",
    "normalise",
]

BUILTIN = (
    "easy-vqa",
    "sort-of-clevr[:train=N,test=M,seed=S]",
    "digits",
    "cifar10:PATH",
    "cifar100:PATH",
    "folder:PATH",
    "vqa-folder:PATH",
)
READERS = ("cifar10", "cifar100", "sort-of-clevr", "folder", "vqa-folder")  # name:argument specs that are not plug-ins
VAL_FRACTION = 0.1
VQA_DATA = ("easy-vqa", "sort-of-clevr", "vqa-folder")


def data_task(spec: str) -> str:
    """The task of the data named by ``spec``, known before loading it: easy-VQA and Sort-of-CLEVR are VQA,
    the rest classify."""
    return "vqa" if spec.strip().partition(":")[0] in VQA_DATA else "classification"


def is_plugin(spec: str) -> bool:
    """True when ``spec`` names a user plug-in (``module:function``), whose code runs when loaded.

    sparsearch runs a plug-in only when the user names it on the command line; a spec recorded in a
    file (a checkpoint's config.json, a study's settings) is never enough.
    """
    name, sep, rest = spec.strip().partition(":")
    return bool(sep and rest) and name not in READERS


def load_data(
    spec: str,
    *,
    input_size: int,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    vocab: Sequence[str] | None = None,
) -> Datasets:
    """Load the data named by ``spec`` at ``input_size``×``input_size``; ``vocab`` fixes VQA tokens."""
    if not isinstance(input_size, int) or input_size < 1:
        raise ConfigError(f"input_size={input_size!r} must be a positive integer")
    spec = spec.strip()
    name, sep, rest = spec.partition(":")
    if spec == "easy-vqa":
        from sparsearch.data.easy_vqa import load_easy_vqa

        return load_easy_vqa(input_size, val_fraction, seed, None if vocab is None else tuple(vocab))
    if name == "sort-of-clevr":
        from sparsearch.data.sort_of_clevr import load_sort_of_clevr

        return load_sort_of_clevr(rest, input_size, val_fraction, seed, None if vocab is None else tuple(vocab))
    if spec == "digits":
        from sparsearch.data.digits import load_digits_data

        return load_digits_data(input_size, val_fraction, seed)
    if name in ("cifar10", "cifar100"):
        if not rest:
            raise ConfigError(f"data {spec!r}: give the directory, e.g. {name}:/data/{name}-python")
        from sparsearch.data.cifar import load_cifar

        return load_cifar(name, rest, input_size, val_fraction, seed)
    if name in ("folder", "vqa-folder"):
        if not rest:
            raise ConfigError(f"data {spec!r}: give the directory, e.g. {name}:/data/my-images")
        if name == "folder":
            from sparsearch.data.image_folder import load_image_folder

            return load_image_folder(rest, input_size, val_fraction, seed)
        from sparsearch.data.vqa_folder import load_vqa_folder

        return load_vqa_folder(rest, input_size, val_fraction, seed, None if vocab is None else tuple(vocab))
    if sep and rest and all(part.isidentifier() for part in name.split(".")) and rest.isidentifier():
        from sparsearch.data.plugins import load_plugin

        return load_plugin(spec, input_size, seed)
    raise ConfigError(f"unknown data {spec!r}; use one of {', '.join(BUILTIN)}, or a plug-in module:function")
