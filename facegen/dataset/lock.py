"""One run per dataset folder: a lock file naming its owner (pid, host, start time).

The run that writes a dataset folder holds ``<folder>/.lock`` for as long as it runs.  On
POSIX the file carries an ``flock`` that the kernel drops when the owner dies (``kill -9``
included), so a lock left by a dead run is recognised as stale and taken over; elsewhere the
owner's pid is checked instead.  A second run on the folder is refused with an error naming
the owner and the lock file.  The file is removed when the run ends.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from facegen.errors import FacegenError
from facegen.io.files import open_lock_file

from facegen.io.storage import Location
from facegen.io.location import LocalLocation
from facegen.io.store import StoreLocation, StoreLock, lock_owner, pid_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: pid check only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class DatasetLockedError(FacegenError):
    """Another run is writing the dataset folder (on a store: :class:`StoreLockedError`, also a FacegenError)."""


def _owner_text() -> bytes:
    owner = lock_owner()
    return (json.dumps(owner, sort_keys=True) + "\n").encode("utf-8")


def _read_owner(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        owner = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "an unknown process"
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"


class FolderLock:
    """``with FolderLock(root):`` holds ``root/.lock`` (``root`` must exist)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        for _ in range(20):
            fd = open_lock_file(self.path)      # no link, no FIFO (facegen.io.files)
            try:
                if not self._lock_fd(fd):
                    raise DatasetLockedError(
                        f"{self.root} is being written by another facegen dataset run ({_describe(_read_owner(fd))}; "
                        f"lock file {self.path}): wait for it to end or stop it, or use another output folder")
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:        # the owner removed the file as we locked it: lock the new one
                    os.close(fd)
                    continue
                old = _read_owner(fd)
                if old:
                    logger.warning("%s: removing a stale lock (%s): that run is gone", self.root, _describe(old))
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, _owner_text())
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise DatasetLockedError(f"{self.root}: could not take the lock file {self.path} (it keeps changing)")

    @staticmethod
    def _lock_fd(fd: int) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            except OSError:  # a filesystem without flock: fall back to the pid check
                pass
            else:
                return True
        owner = _read_owner(fd)
        if owner and owner.get("host") == socket.gethostname():
            return not pid_alive(owner.get("pid"), this_process=False)
        return not owner  # another host's lock cannot be checked here: it holds until removed

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


#: what a run holds on its dataset location: the folder's ``flock`` file, or a store's lock object
RunLock = "FolderLock | StoreLock"


def lock_for(loc: Location) -> FolderLock | StoreLock:
    """The lock of a dataset location (``.lock`` in both cases): :class:`FolderLock` on a folder,
    :class:`~facegen.io.store.StoreLock` (a conditional put) on a store."""
    if isinstance(loc, LocalLocation):
        return FolderLock(loc.path)
    assert isinstance(loc, StoreLocation)
    return StoreLock(loc, LOCK_FILE)
