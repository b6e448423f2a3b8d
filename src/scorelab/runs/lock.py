"""One writer per run directory: an exclusive lock that training holds while it writes.

The lock is ``fcntl.flock`` on the file ``.lock`` in the run directory. The kernel releases it
when the holder's process ends, however it ends, so a SIGKILL never leaves a stale lock. Readers
(sample, evaluate, plot) take no lock: every file is replaced atomically (:mod:`scorelab.core.atomic`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from scorelab.core.atomic import remove_temporaries
from scorelab.core.errors import ScorelabError

LOCK_NAME = ".lock"


class RunDirectoryBusy(ScorelabError):
    """Another process is writing the run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's writer lock for the ``with`` block; raise :class:`RunDirectoryBusy`
    at once (never wait) if another process holds it.

    Under the lock, temporaries left by a writer killed mid-write are removed. A directory that
    this call created and that holds nothing but the lock afterwards (the run failed before
    writing) is removed again, so a refused run leaves nothing behind. Where ``fcntl`` does not
    exist (Windows) the block runs unlocked.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ScorelabError(f"cannot write to {run_dir}: {exc.strerror}") from None
    try:
        _lock(handle, run_dir)
        remove_temporaries(run_dir)
        yield
    finally:
        os.close(handle)  # releases the lock
        if created and [path.name for path in run_dir.iterdir()] == [LOCK_NAME]:
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def _lock(handle: int, run_dir: Path) -> None:
    try:
        import fcntl
    except ImportError:
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(handle, 32, 0).decode(errors="replace").strip()
        raise RunDirectoryBusy(f"{run_dir} is being written by {f'process {pid}' if pid else 'another process'}; "
                               "wait for it to finish or use another --out") from None
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
