"""The one atomic file writer of facegen: a file appears complete, or not at all.

:func:`atomic_write` writes through a temporary file in the target's own folder (so the
rename never crosses a filesystem), named by :func:`temp_path_for`: ``.{name}.tmp-{pid}-{hex}``
— hidden, naming the file it will become and the process writing it. The temporary file is
fsync'ed before ``os.replace`` puts it in place, and the folder is fsync'ed after, so the
rename itself survives a power cut (best effort: platforms and filesystems that cannot fsync a
folder skip it). On any failure the temporary file is removed and an existing file at ``path``
is left as it was.

A process killed mid-write leaves its temporary file behind; whoever owns the folder removes
such leftovers with :func:`remove_stale_temps` (the dataset resume does, for each shard's files).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

from facegen.errors import FacegenError

logger = logging.getLogger(__name__)

__all__ = [
    "TEMP_INFIX",
    "atomic_write",
    "atomic_write_bytes",
    "fsync_dir",
    "is_temp_for",
    "remove_stale_temps",
    "replace_durably",
    "temp_path_for",
]

#: What every temporary name has between the final name and the writer's pid.
TEMP_INFIX = ".tmp-"


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """The temporary file :func:`atomic_write` writes ``path`` through: beside it, hidden,
    ``.{name}.tmp-{pid}-{8 hex}`` (unique per call, so two threads writing the same file
    never share a temporary)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_INFIX}{os.getpid()}-{secrets.token_hex(4)}")


def is_temp_for(candidate: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``candidate`` is (by its name) a temporary file of an atomic write of ``path``."""
    candidate, path = Path(candidate), Path(path)
    return candidate.parent == path.parent and candidate.name.startswith(f".{path.name}{TEMP_INFIX}")


def remove_stale_temps(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files that interrupted atomic writes of ``path`` left; return how
    many. Only for a file nobody is writing now (the caller holds the folder)."""
    path = Path(path)
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for candidate in path.parent.glob(f".{glob.escape(path.name)}{TEMP_INFIX}*"):
            if is_temp_for(candidate, path) and not candidate.is_dir():
                candidate.unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.debug("removed %d leftover temporary file(s) of %s", removed, path)
    return removed


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """fsync a folder, so a rename or a new file in it is on disk. Best effort: a platform
    that cannot open a folder (Windows) or a filesystem that refuses to fsync one skips it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        logger.debug("cannot fsync the folder %s (%s); skipped", folder, exc)
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put a finished temporary file (or folder) ``tmp`` at ``path`` for good: fsync it, then
    ``os.replace``, then fsync the folder of ``path``. For temporaries filled over time or by
    another program (a shard's tar, a folder of images, an encoder's output), named with
    :func:`temp_path_for` or kept in a work folder the owner cleans.

    Raises:
        FacegenError: it cannot be done; a temporary *file* is removed, ``path`` is unchanged.
    """
    tmp, path = Path(tmp), Path(path)
    try:
        if tmp.is_dir():
            fsync_dir(tmp)                      # the names of its files, before it is published
        else:
            with open(tmp, "rb+") as fh:        # rb+: Windows fsyncs only a writable descriptor
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if not tmp.is_dir():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise FacegenError(f"cannot write {path}: {exc.strerror or exc}") from exc
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
                 mode: int | None = None) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file beside it, which is
    fsync'ed and renamed over ``path``; then the folder is fsync'ed. Missing parent folders
    are created. ``mode`` (e.g. ``0o600`` for a private key) sets the file's permission bits
    exactly; by default they are ``0o666`` less the umask. Returns ``path``.

    Raises:
        FacegenError: the file cannot be written (permissions, disk full, ...); nothing is
            left behind and an existing ``path`` is unchanged. Anything ``write`` raises
            that is not an ``OSError`` propagates unchanged, with the same clean-up.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o600 if mode is not None else 0o666)
    except OSError as exc:
        raise FacegenError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.chmod(tmp, mode)     # exactly ``mode``: the umask neither adds nor removes bits
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise FacegenError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))
