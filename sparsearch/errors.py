"""The library's exceptions: every error meant for the user derives from :class:`SparsearchError`."""

from __future__ import annotations

__all__ = ["ConfigError", "SparsearchError"]


class SparsearchError(Exception):
    """An error the user can fix (bad input, missing file); the CLI prints its message on one line."""


class ConfigError(SparsearchError, ValueError):
    """A configuration, search space or budget that cannot be used; the message names the bad key."""
