"""sparsearch: search and compress conditionally-computed neural networks."""

from importlib.metadata import PackageNotFoundError, version

from sparsearch.errors import SparsearchError

try:
    __version__ = version("sparsearch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["SparsearchError", "__version__"]
