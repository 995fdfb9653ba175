"""The part of a dataset location both kinds share: the :class:`Location` interface, its error and
the file hash (:mod:`facegen.io.location` has the folder and the opener, :mod:`facegen.io.store`
the object stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facegen.errors import FacegenError


class StorageError(FacegenError):
    """A store refused an operation for good (no bucket, access denied) or kept failing."""


class Location:
    """A dataset's root: a local folder or a prefix in a store. Names are relative, ``/``-separated."""

    url: str
    is_local: bool = False

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __truediv__(self, rel: str) -> str:
        return self.child(rel)

    def child(self, rel: str) -> str:
        """The full path or URL of ``rel``."""
        raise NotImplementedError

    # reading
    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def size(self, rel: str) -> int | None:
        """Bytes of ``rel``; None when there is no such file."""
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes:
        raise NotImplementedError

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def read_many(self, rels: list[str]) -> list[bytes]:
        """The contents of ``rels``, in order (a store fetches them many at a time)."""
        return [self.read_bytes(rel) for rel in rels]

    def sha256(self, rel: str) -> str:
        raise NotImplementedError

    def listing(self, prefix: str = "") -> dict[str, int]:
        """``{name: size}`` of every file under ``prefix`` (all of the root by default)."""
        raise NotImplementedError

    def local_file(self, rel: str, refresh: bool = False) -> Path:
        """A local file with the content of ``rel`` (itself on a folder, a cached download on a store;
        ``refresh``: downloaded again)."""
        raise NotImplementedError

    def is_empty(self, ignore: tuple[str, ...] = ()) -> bool:
        return all(name.split("/", 1)[0] in ignore for name in self.listing())

    # writing
    def write_bytes(self, rel: str, data: bytes) -> tuple[int, str]:
        """Put ``data`` at ``rel`` whole; return its (size, sha256)."""
        raise NotImplementedError

    def publish_file(self, rel: str, local: Path) -> tuple[int, str]:
        """Put the finished local file ``local`` at ``rel`` (``local`` is consumed); return (size, sha256)."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        """Remove ``rel`` (a file, or everything under a folder name); nothing when absent."""
        raise NotImplementedError

    def scratch(self) -> Path:
        """A local folder for this process's work in progress."""
        raise NotImplementedError

    def prepare(self) -> bool:
        """Make the root usable for writing (create a folder; check a bucket); True if it was created."""
        raise NotImplementedError
