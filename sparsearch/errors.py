"""The library's exceptions: every error meant for the user derives from :class:`SparsearchError`."""

from __future__ import annotations

__all__ = ["SparsearchError"]


class SparsearchError(Exception):
    """An error the user can fix (bad input, missing file); the CLI prints its message on one line."""
