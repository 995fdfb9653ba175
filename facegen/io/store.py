"""A dataset location in an fsspec store (``s3://``, ``gs://`` ...), and its lock object.

:class:`StoreLocation` implements :class:`facegen.io.location.Location` with whole-object
writes (a PUT, or a multipart upload that S3 makes visible only when complete), one listing for
many sizes, and many small reads at once. Every operation retries transient errors (timeouts,
dropped connections, 5xx, throttling) with exponential back-off and turns a permanent one (no
bucket, access denied) into a one-line :class:`~facegen.io.location.StorageError` naming only the
URL. :class:`StoreLock` is the one-run-per-prefix lock (a conditional put).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from facegen.errors import FacegenError, InvalidArgumentError, MissingDependencyError
from facegen.io.atomic import replace_durably
from facegen.io.storage import Location, StorageError
from facegen.paths import sha256_of

logger = logging.getLogger(__name__)

__all__ = ["StoreLocation", "StoreLock", "StoreLockedError", "store_location"]

T = TypeVar("T")

#: tries of one store operation before a transient error is given up on
RETRIES = 6
#: first back-off (seconds); doubled each try, capped at 20 s
BACKOFF_S = 0.2


class StoreLockedError(StorageError):
    """Another run holds the location's lock object."""


#: this process's store locations, by URL (one filesystem, scratch and cache folder each)
_STORES: dict[str, StoreLocation] = {}


def store_location(url: str) -> StoreLocation:
    """The :class:`StoreLocation` of ``url`` (``scheme://bucket/prefix``, already checked), one per
    URL and process."""
    store = _STORES.get(url)
    if store is None or store.pid != os.getpid():
        store = _STORES[url] = StoreLocation(url)
    return store


def _permanent(exc: BaseException) -> bool:
    """Errors no retry mends: a missing bucket or key, refused access, a failed condition."""
    return isinstance(exc, (FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError,
                            NotADirectoryError, ValueError, TypeError))


def _transient(exc: BaseException) -> bool:
    if _permanent(exc):
        return False
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    name = type(exc).__name__
    return any(word in name for word in ("Timeout", "Connection", "Endpoint", "Throttl", "ServerError",
                                         "ClientPayload", "ResponseParser", "HTTPClient"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class StoreLocation(Location):
    """A prefix in an fsspec store. Writes are whole-object PUTs; reads and listings are retried."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.protocol = url.split("://", 1)[0]
        self.pid = os.getpid()
        self._fs: Any = None
        self._scratch: Path | None = None
        self._cache: Path | None = None

    # the filesystem is made lazily and never pickled (a Ray actor or a spawned worker makes its own)
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "protocol": self.protocol, "pid": -1, "_fs": None, "_scratch": None,
                "_cache": None}

    @property
    def fs(self) -> Any:
        if self._fs is None:
            try:
                import fsspec
            except ImportError as exc:  # pragma: no cover - fsspec comes with huggingface_hub
                raise MissingDependencyError("fsspec", "storage", f"writing to {self.protocol}://") from exc
            try:
                cls = fsspec.get_filesystem_class(self.protocol)
            except (ImportError, ValueError) as exc:
                extra = "storage" if self.protocol in ("s3", "s3a") else None
                package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
                           "abfs": "adlfs"}.get(self.protocol, f"an fsspec implementation of {self.protocol}://")
                if isinstance(exc, ValueError) and "Protocol not known" in str(exc):
                    raise InvalidArgumentError(f"{self.protocol}:// is not a storage protocol fsspec knows") from None
                raise MissingDependencyError(package, extra, f"datasets on {self.protocol}://") from exc
            # skip_instance_cache: a filesystem made in another thread's event loop is not reused
            self._fs = cls()
        return self._fs

    def _path(self, rel: str) -> str:
        base = self.url.split("://", 1)[1]
        return f"{base}/{rel}" if rel else base

    def child(self, rel: str) -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def _call(self, what: str, rel: str, fn: Callable[[], T], tries: int = RETRIES) -> T:
        """``fn()`` with transient errors retried (exponential back-off); a permanent one, or the
        last transient one, as a one-line :class:`StorageError` naming only the URL."""
        delay = BACKOFF_S
        for attempt in range(1, tries + 1):
            try:
                return fn()
            except BaseException as exc:  # noqa: BLE001 - classified below
                if isinstance(exc, (KeyboardInterrupt, SystemExit, FacegenError)):
                    raise
                if _transient(exc) and attempt < tries:
                    logger.warning("%s %s: %s (try %d of %d, again in %.1f s)", what, self.child(rel),
                                   _one_line(exc), attempt, tries, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 20.0)
                    continue
                if isinstance(exc, FileExistsError):
                    raise
                kind = ("access denied" if isinstance(exc, PermissionError) else
                        "not found" if isinstance(exc, FileNotFoundError) else _one_line(exc))
                if isinstance(exc, PermissionError) or (isinstance(exc, FileNotFoundError) and not rel):
                    detail = _one_line(exc)
                    kind = f"{kind} ({detail})" if detail and detail != kind else kind
                raise StorageError(f"cannot {what} {self.child(rel)}: {kind}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def prepare(self) -> bool:
        """Check that the bucket exists and that this process may write, list and delete in it
        (a probe object is written and removed), before any generation starts."""
        probe = f".facegen-probe-{socket.gethostname()}-{os.getpid()}"
        bucket = self.url.split("://", 1)[1].split("/", 1)[0]
        if not self._call("reach the bucket of", "", lambda: self.fs.exists(bucket) or self.fs.ls(bucket) is not None):
            raise StorageError(f"cannot use {self.url}: the bucket {self.protocol}://{bucket} does not exist "
                               "(create it first)")
        self.write_bytes(probe, b"facegen write probe\n")
        self.listing(probe)
        self.delete(probe)
        return False

    def exists(self, rel: str) -> bool:
        return bool(self._call("read", rel, lambda: self.fs.isfile(self._path(rel))))

    def size(self, rel: str) -> int | None:
        def info() -> int | None:
            try:
                return int(self.fs.info(self._path(rel))["size"])
            except FileNotFoundError:
                return None
        return self._call("read", rel, info)

    def read_bytes(self, rel: str) -> bytes:
        return self._call("read", rel, lambda: self.fs.cat_file(self._path(rel)))

    def read_many(self, rels: list[str], batch: int = 1000) -> list[bytes]:
        out: list[bytes] = []
        for start in range(0, len(rels), batch):
            paths = [self._path(rel) for rel in rels[start:start + batch]]
            got = self._call("read", rels[start] if paths else "", lambda: self.fs.cat(paths, on_error="raise"))
            out.extend(got[p] for p in paths)
        return out

    def sha256(self, rel: str) -> str:
        return hashlib.sha256(self.read_bytes(rel)).hexdigest()

    def listing(self, prefix: str = "") -> dict[str, int]:
        base = self._path("")
        top = self._path(prefix)

        def find() -> dict[str, int]:
            self.fs.invalidate_cache()
            try:
                found = self.fs.find(top, detail=True)
            except FileNotFoundError:
                return {}
            return {name[len(base) + 1:]: int(info.get("size") or 0) for name, info in found.items()
                    if info.get("type", "file") != "directory" and name.startswith(base + "/")}
        return self._call("list", prefix, find)

    def local_file(self, rel: str, refresh: bool = False) -> Path:
        if self._cache is None:
            self._cache = Path(tempfile.mkdtemp(prefix="facegen-cache-"))
            atexit.register(shutil.rmtree, self._cache, True)
        dest = self._cache / rel
        if refresh or not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            self._call("read", rel, lambda: self.fs.get_file(self._path(rel), str(tmp)))
            replace_durably(tmp, dest)      # the one atomic writer (a cache file, too)
        return dest

    def write_bytes(self, rel: str, data: bytes) -> tuple[int, str]:
        self._call("write", rel, lambda: self.fs.pipe_file(self._path(rel), data))
        return len(data), hashlib.sha256(data).hexdigest()

    def publish_file(self, rel: str, local: Path) -> tuple[int, str]:
        size, digest = Path(local).stat().st_size, sha256_of(local)
        self._call("write", rel, lambda: self.fs.put_file(str(local), self._path(rel)))
        Path(local).unlink(missing_ok=True)
        return size, digest

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Write ``rel`` only if no object has that name (a conditional put: S3 ``If-None-Match: *``);
        False when one exists."""
        def put() -> bool:
            try:
                with self.fs.open(self._path(rel), "xb") as fh:
                    fh.write(data)
            except FileExistsError:
                return False
            return True
        return self._call("write", rel, put)

    def modified(self, rel: str) -> float | None:
        """When ``rel`` was last written (seconds since the epoch, the store's clock); None if absent."""
        def info() -> float | None:
            try:
                found = self.fs.info(self._path(rel))
            except FileNotFoundError:
                return None
            stamp = found.get("LastModified") or found.get("mtime") or found.get("updated") or found.get("created")
            if stamp is None:
                return None
            return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
        return self._call("read", rel, info)

    def delete(self, rel: str) -> None:
        def rm() -> None:
            path = self._path(rel)
            with contextlib.suppress(FileNotFoundError):
                if self.fs.isfile(path):
                    self.fs.rm_file(path)
                else:
                    names = self.fs.find(path)
                    if names:
                        self.fs.rm(names)
            self.fs.invalidate_cache()
        self._call("delete", rel, rm)

    def scratch(self) -> Path:
        if self._scratch is None or not self._scratch.is_dir():
            self._scratch = Path(tempfile.mkdtemp(prefix="facegen-stage-"))
            atexit.register(shutil.rmtree, self._scratch, True)
        return self._scratch

    def cleanup(self) -> None:
        """Remove this process's local scratch and cache folders."""
        for folder in (self._scratch, self._cache):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        self._scratch = self._cache = None


# ------------------------------------------------------------------------------------ the lock
#: a store lock not renewed for this long is stale (its run is gone); FACEGEN_STORE_LOCK_STALE_S overrides
STALE_AFTER_S = 600.0
#: how often the holder renews it
RENEW_EVERY_S = 60.0


def lock_owner() -> dict[str, Any]:
    """What a lock file says of its holder: this process's pid, host, start time and command."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv)[:300]}


def pid_alive(pid: Any, *, this_process: bool) -> bool:
    """Whether process ``pid`` of this host runs; ``this_process``: what the caller's own pid
    counts as (a store lock: another lock of this process holds; a folder lock: its own leftover)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return this_process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class StoreLock:
    """One run per store prefix: the lock object ``<prefix>/.lock`` created with a conditional put
    (S3 ``If-None-Match: *``: of two runs, exactly one creates it) and naming its owner (host, pid,
    start time). The holder rewrites it every :data:`RENEW_EVERY_S` seconds.

    Stale-lock rule: a lock is taken over when its owner is on this host and its pid is gone
    (``kill -9`` then a rerun on the same machine), or when the store says it was last written more
    than :data:`STALE_AFTER_S` seconds ago (``FACEGEN_STORE_LOCK_STALE_S``): its run died on another
    machine. A takeover deletes the stale object and creates it again with the conditional put, so
    of two runs taking over at once, one wins.
    """

    def __init__(self, loc: StoreLocation, rel: str = ".lock") -> None:
        self.loc, self.rel = loc, rel
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._text = b""

    def acquire(self) -> StoreLock:
        stale_after = float(os.environ.get("FACEGEN_STORE_LOCK_STALE_S", STALE_AFTER_S))
        self._text = (json.dumps(lock_owner(), sort_keys=True) + "\n").encode("utf-8")
        for _ in range(3):
            if self.loc.create_exclusive(self.rel, self._text):
                break
            try:
                owner = json.loads(self.loc.read_bytes(self.rel))
            except (StorageError, ValueError):
                owner = {}
            owner = owner if isinstance(owner, dict) else {}
            written = self.loc.modified(self.rel)
            age = None if written is None else time.time() - written
            dead_here = owner.get("host") == socket.gethostname() and not pid_alive(owner.get("pid"), this_process=True)
            if written is not None and not dead_here and (age is None or age < stale_after):
                raise StoreLockedError(
                    f"{self.loc.url} is being written by another facegen dataset run (pid {owner.get('pid')} on host "
                    f"{owner.get('host')}, started {owner.get('started')}; lock object {self.loc.child(self.rel)}, "
                    f"renewed {age:.0f} s ago): wait for it to end or stop it, or use another prefix")
            logger.warning("%s: taking over a stale lock (pid %s on host %s, %s)", self.loc.url, owner.get("pid"),
                           owner.get("host"), "that process is gone" if dead_here else f"not renewed for {age:.0f} s")
            self.loc.delete(self.rel)
        else:
            raise StoreLockedError(f"{self.loc.url}: could not take the lock object {self.loc.child(self.rel)} "
                                   "(another run keeps taking it)")
        self.held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="facegen-store-lock", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        every = max(1.0, min(RENEW_EVERY_S, float(os.environ.get("FACEGEN_STORE_LOCK_STALE_S", STALE_AFTER_S)) / 4))
        while not self._stop.wait(every):
            with contextlib.suppress(StorageError):
                self.loc.write_bytes(self.rel, self._text)

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.held = False
        with contextlib.suppress(StorageError):
            self.loc.delete(self.rel)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
