"""Writing files a user trusts: whole or not at all, and never over a directory that is not ours.

- :func:`atomic_file`: write a file as a temporary sibling, sync it, rename it into place.
- :func:`atomic_dir`: build a directory as a temporary sibling, sync its files, swap it in whole
  (:func:`move_into_place`): a crash leaves the previous directory or the new one, never half of each.
- :func:`refuse_foreign`: an output directory must not exist, be empty, or be one of ours (replaced).

A failure to write (a full disk, a read-only directory) becomes a :class:`~sparsearch.errors.WriteError`
that says whether the previous output is kept; the temporary files are removed whatever happens.
Every writer of the package uses these: checkpoints, prune outputs, reports, summaries, exports, pictures.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sparsearch.errors import ConfigError, SparsearchError, WriteError

__all__ = [
    "atomic_dir",
    "atomic_file",
    "check_writable",
    "file_sha256",
    "fsync_file",
    "move_into_place",
    "refuse_foreign",
    "save_tensors",
    "write_text",
]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_tensors(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, with its write failures (a full disk, the file-size limit) raised
    as the :class:`OSError` they are, so the writer around it reports them as a :class:`WriteError`."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as err:
        raise OSError(str(err)) from err


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary sibling path of ``path`` (same suffix, so writers that check it are content);
    once the block ends it is synced and renamed to ``path``. On any failure it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise WriteError.of(what, path, err, existed=existed) from err
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
        fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError.of(what, path, err, existed=existed) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def move_into_place(done: Path, out: Path) -> None:
    """Rename the complete directory ``done`` to ``out`` (a sibling, so renames stay on one file system).

    An existing ``out`` is first moved aside and deleted only once ``done`` is in its place; if that
    rename fails, the previous ``out`` is put back, so a failed write never leaves ``out`` missing.
    """
    if not out.exists():
        os.rename(done, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    try:
        os.rename(out, aside / out.name)
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.rename(done, out)
    except BaseException:
        os.rename(aside / out.name, out)  # put the previous one back before reporting the failure
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | Path, what: str) -> Iterator[Path]:
    """Yield an empty temporary sibling directory of ``out``; once the block ends its files are synced
    and it replaces ``out`` whole. On any failure it is removed and ``out`` is left as it was.

    A :class:`WriteError` raised inside (a nested atomic write) is reported as a failure to write ``out``.
    """
    out = Path(out)
    existed = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as err:
        raise WriteError.of(what, out, err, existed=existed) from err
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; outputs are ordinary directories
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                fsync_file(f)
        move_into_place(tmp, out)
    except WriteError as err:
        raise WriteError.of(what, out, err.__cause__ or err, existed=existed) from err
    except OSError as err:
        raise WriteError.of(what, out, err, existed=existed) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_writable(out: str | Path, what: str) -> None:
    """Refuse, before any work, an output whose directory cannot be made or written: ``out``'s nearest
    existing ancestor must be a directory this process may write into."""
    out = Path(out)
    parent = out.parent if out.parent != out else out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{out}: cannot write the {what} there ({parent} is not a directory)")
    try:  # a real try (permissions do not stop root; a read-only or virtual file system does), undone at once
        os.rmdir(tempfile.mkdtemp(prefix=".sparsearch-check-", dir=parent))
    except OSError as err:
        raise ConfigError(f"{out}: cannot write the {what} there ({parent}: {err.strerror})") from None


def refuse_foreign(
    out: str | Path, is_ours: Callable[[Path], bool], what: str, error: type[SparsearchError] = ConfigError
) -> None:
    """Refuse ``out`` unless it does not exist, is an empty directory, or ``is_ours`` (it is replaced):
    a mistyped ``--out`` never deletes a directory of other files."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or is_ours(out))):
        raise error(f"{out} exists and is not {what}; refusing to replace it")
    check_writable(out, what.removeprefix("a sparsearch ").removeprefix("a "))
