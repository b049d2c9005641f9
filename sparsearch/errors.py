"""The library's exceptions: every error meant for the user derives from :class:`SparsearchError`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "SparsearchError", "WriteError", "one_line"]


class SparsearchError(Exception):
    """An error the user can fix (bad input, missing file); the CLI prints its message on one line.

    The message is one line by construction: a character that would break it or hide in it (a newline
    or another control character, a line separator, a lone surrogate) from a user's value quoted in it
    is written as its escape (``\\n``, ``\\u2028``)."""

    def __str__(self) -> str:
        return one_line(super().__str__())  # ``args`` keep the message as given (a worker's traceback in it)


def one_line(text: str) -> str:
    """``text`` with every character that is not printable written as its escape (spaces kept)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class ConfigError(SparsearchError, ValueError):
    """A configuration, search space or budget that cannot be used; the message names the bad key."""


class WriteError(SparsearchError):
    """An output could not be written (a full disk, no permission); the previous one, if any, is kept."""

    @classmethod
    def of(cls, what: str, path: str | Path, err: BaseException, *, existed: bool) -> WriteError:
        """``out: cannot write the report (File too large); the previous report is kept``."""
        if isinstance(err, OSError) and err.strerror:
            reason = err.strerror  # not err.filename: that is our temporary, not the user's path
        else:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        kept = f"the previous {what} is kept" if existed else "nothing was written"
        return cls(f"{path}: cannot write the {what} ({reason}); {kept}")
