"""The installed version of sparsearch: a leaf module that every floor may import (checkpoints record it)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("sparsearch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
