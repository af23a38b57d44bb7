"""One bridge per data_dir: an flock on `data_dir/bridge.lock`, holding the owner's pid.

Two bridges on one data_dir would both show the same HAP identity and overwrite each other's
state files. The kernel drops an flock when its process ends, however it ends, so a lock
left by `kill -9` does not stand in the way of the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import BridgeError
from .store import FILE_MODE, ensure_private_dir

LOCK_FILE = "bridge.lock"


class DataDirInUseError(BridgeError):
    """Another bridge runs on this data_dir."""


def _in_use(data_dir: Path, pid: str) -> DataDirInUseError:
    other = f"pid {pid}" if pid else "a process that did not write its pid"
    return DataDirInUseError(
        f"data_dir {data_dir} is in use by another bridge ({other}); stop it first, or give "
        "this one a data_dir of its own"
    )


class DataDirLock:
    """`with DataDirLock(data_dir):` runs while holding the lock, or raises DataDirInUseError."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise _in_use(self.path.parent, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Emptied first: a pid left in the file would name a process that no longer runs.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def check_free(data_dir: Path) -> None:
    """Raise DataDirInUseError when a bridge holds data_dir (for check-config); the lock is
    taken and let go at once, and nothing is created when data_dir does not exist yet."""
    if not (data_dir / LOCK_FILE).exists():
        return
    lock = DataDirLock(data_dir)
    lock.acquire()
    lock.release()
