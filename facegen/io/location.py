"""Where a dataset lives: a local folder or any fsspec URL (``s3://``, ``gs://``, ``memory://`` ...).

:func:`open_location` turns ``--out`` into a :class:`Location`; everything that writes or reads a
dataset goes through it, with names relative to the location's root (``shards/shard-000000.tar``):

* :meth:`Location.write_bytes` / :meth:`Location.publish_file` put a *whole* file under its final
  name. Locally that is the atomic writer (:mod:`facegen.io.atomic`: temporary file, fsync,
  rename); on a store it is one whole-object PUT (or a multipart upload, which S3 also makes
  visible only when complete): an object never exists half-written under a final name, and
  nothing is ever written to the store under a temporary name.
* :meth:`Location.listing` gives every file's size in one listing (a store lists 1000 keys a
  request), so a resume does not ask for each file; :meth:`Location.sha256` hashes one file.
* a run holds the location with a lock (:class:`facegen.io.store.StoreLock` on a store, a
  conditional put; the ``flock`` file of :mod:`facegen.dataset.lock` on a folder).
* :meth:`Location.scratch` is a local folder for work in progress (a shard's tar before it is
  published): ``<root>/.tmp`` on a folder, a private temporary folder of this process on a store,
  so every worker writes its own shards straight to the store.

Stores (:mod:`facegen.io.store`). Store errors: a transient one (a timeout, a dropped connection, a 5xx, throttling) is retried
with exponential back-off (:data:`RETRIES` tries); a permanent one (no bucket, access denied) is
a :class:`StorageError` of one line. Credentials come only from the standard places (environment,
the AWS/GCP config files, instance roles), never from the URL (a URL carrying a user or password
is refused), and no message here names more than the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path


from facegen.errors import InvalidArgumentError
from facegen.io.storage import Location
from facegen.paths import sha256_of

logger = logging.getLogger(__name__)

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")


def is_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` names a location by URL (``scheme://...``) rather than a local path."""
    return isinstance(text, str) and _URL.match(text) is not None


def open_location(where: str | os.PathLike[str] | Location) -> Location:
    """The location ``where`` names: a :class:`Location` as is, a plain path or ``file://`` URL as a
    :class:`LocalLocation`, any other fsspec URL as a :class:`StoreLocation`.

    Raises:
        InvalidArgumentError: a URL with credentials, a query, or no bucket/path.
        MissingDependencyError: the protocol's fsspec package is not installed.
    """
    if isinstance(where, Location):
        return where
    text = os.fspath(where)
    m = _URL.match(text) if isinstance(text, str) else None
    if m is None:
        return LocalLocation(Path(text))
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "file":
        return LocalLocation(Path("/" + rest.lstrip("/")))
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        raise InvalidArgumentError(f"{scheme}://…@{authority.split('@', 1)[1]}: credentials do not go in the URL "
                                   "(use the environment, the provider's config files or an instance role)")
    if "?" in rest or "#" in rest:
        raise InvalidArgumentError(f"{scheme}://{rest.split('?', 1)[0].split('#', 1)[0]}: a dataset location "
                                   "takes no query or fragment")
    rest = rest.strip("/")
    if not rest or "//" in rest or any(part in (".", "..") for part in rest.split("/")):
        raise InvalidArgumentError(f"{text!r} is not a usable location: give {scheme}://bucket/prefix")
    from facegen.io.store import store_location

    return store_location(f"{scheme}://{rest}")


class LocalLocation(Location):
    """A folder on this machine (or a shared mount): the atomic writer of :mod:`facegen.io.atomic`."""

    is_local = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self.url = str(self.path)

    def child(self, rel: str) -> str:
        return str(self.path / rel) if rel else str(self.path)

    def exists(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def size(self, rel: str) -> int | None:
        try:
            p = self.path / rel
            return p.stat().st_size if p.is_file() else None
        except OSError:
            return None

    def read_bytes(self, rel: str) -> bytes:
        return (self.path / rel).read_bytes()

    def sha256(self, rel: str) -> str:
        return sha256_of(self.path / rel)

    def listing(self, prefix: str = "") -> dict[str, int]:
        base = self.path / prefix if prefix else self.path
        out: dict[str, int] = {}
        if not base.is_dir():
            return out
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                p = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    out[p.relative_to(self.path).as_posix()] = p.stat().st_size
        return out

    def is_empty(self, ignore: tuple[str, ...] = ()) -> bool:
        if not self.path.is_dir():
            return not self.path.exists()
        return all(p.name in ignore for p in self.path.iterdir())

    def local_file(self, rel: str, refresh: bool = False) -> Path:
        return self.path / rel

    def write_bytes(self, rel: str, data: bytes) -> tuple[int, str]:
        from facegen.io.atomic import atomic_write_bytes

        atomic_write_bytes(self.path / rel, data)
        return len(data), hashlib.sha256(data).hexdigest()

    def publish_file(self, rel: str, local: Path) -> tuple[int, str]:
        from facegen.io.atomic import replace_durably

        size, digest = Path(local).stat().st_size, sha256_of(local)
        final = self.path / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_durably(local, final)
        return size, digest

    def delete(self, rel: str) -> None:
        p = self.path / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)

    def scratch(self) -> Path:
        tmp = self.path / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def prepare(self) -> bool:
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FacegenError(f"cannot create the dataset folder {self.path}: {exc.strerror or exc}") from exc
        return created
