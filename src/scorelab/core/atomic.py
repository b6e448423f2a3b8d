"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from scorelab.core.errors import ScorelabError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write whose bytes replace ``path`` when the ``with`` block ends without an
    error; readers see the old file or the new one, never half.

    The bytes go to a temporary file ``.<name>.XXXXXXXX.tmp`` in the same directory,
    are flushed to disk, and then renamed over ``path`` (``os.replace`` is atomic on
    POSIX and Windows); on POSIX the directory is synced too, so that the rename
    survives a power cut (as SQLite does). A write that fails (a full disk, a file
    size limit) or a block that raises leaves the old file and no temporary; an
    ``OSError`` becomes one line naming ``path`` and the cause.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ScorelabError(f"cannot write to {path.parent}: {exc.strerror}") from None
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ScorelabError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    _sync_directory(path.parent)


def write_atomic(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so readers see the old file or the new one, never half
    (:func:`atomic_file`)."""
    with atomic_file(path) as file:
        file.write(payload)


def _sync_directory(directory: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a directory for fsync; its renames are journaled by NTFS
    # Best effort: the file is already in place, and some file systems refuse to sync a directory.
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries that :func:`write_atomic` left in ``directory`` when its process was killed
    mid-write, and return them. Call it only while no other process writes there (under its lock)."""
    directory = Path(directory)
    stale = [path for path in directory.glob(".*.tmp") if _TEMPORARY.fullmatch(path.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
