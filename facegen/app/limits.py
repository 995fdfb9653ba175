"""What one web request may send: body size, files and bytes per upload, and no URLs in file fields.

:class:`LimitsMiddleware` is a plain ASGI middleware put in front of Gradio's routes. It reads a
POST/PUT/PATCH body up to its cap before Gradio sees it and answers:

- **413** when the body is over ``max_body`` (JSON API calls: a 60 MB prompt never reaches a
  handler, nor the log) or, for ``/upload``, over ``max_upload_total`` bytes or
  ``max_files`` files in one request (Gradio's own ``max_file_size`` still caps each file);
- **400** when a file field names a URL (``{"path": "http://..."}``) instead of an uploaded
  file: the app never fetches anything on a client's behalf (the body is parsed, never sniffed);
- **429** when one client has uploaded ``max_client_total`` bytes within the retention time, and
  **507** when the work folder would hold more than ``max_work_total`` bytes even after the
  oldest uploads and results (over a minute old) are evicted (:class:`UploadQuota`).

Bodies over the cap are drained up to a bound (so the client reads the answer) and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY = "1mb"
DEFAULT_MAX_UPLOAD_TOTAL = "40mb"
DEFAULT_MAX_FILES = 8
DEFAULT_MAX_CLIENT_TOTAL = "200mb"
DEFAULT_MAX_WORK_TOTAL = "2gb"
DEFAULT_RETENTION_S = 3600.0
_DRAIN_EXTRA = 64 * 1024 * 1024      # read at most this far past a cap before answering
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.\-]*://|data:)")


def parse_size(value: str | int, name: str = "size") -> int:
    """``"10mb"``, ``"512kb"``, ``"2gb"`` or a number of bytes → bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)b?\s*", str(value).lower())
        if not found:
            raise InvalidArgumentError(f"{name} must be a size such as 10mb or 512kb, got {value!r}")
        size = int(float(found.group(1)) * _UNITS[found.group(2)])
    if size < 1:
        raise InvalidArgumentError(f"{name} must be at least 1 byte, got {value!r}")
    return size


@dataclass(frozen=True)
class RequestLimits:
    """Caps on one request (bytes)."""

    max_body: int = parse_size(DEFAULT_MAX_BODY)
    max_upload_total: int = parse_size(DEFAULT_MAX_UPLOAD_TOTAL)
    max_files: int = DEFAULT_MAX_FILES
    max_client_total: int = parse_size(DEFAULT_MAX_CLIENT_TOTAL)
    max_work_total: int = parse_size(DEFAULT_MAX_WORK_TOTAL)

    @classmethod
    def from_options(cls, max_body: str | int = DEFAULT_MAX_BODY,
                     max_upload_total: str | int = DEFAULT_MAX_UPLOAD_TOTAL,
                     max_files: int = DEFAULT_MAX_FILES,
                     max_client_total: str | int = DEFAULT_MAX_CLIENT_TOTAL,
                     max_work_total: str | int = DEFAULT_MAX_WORK_TOTAL) -> "RequestLimits":
        if isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1:
            raise InvalidArgumentError(f"max_files must be a positive integer, got {max_files!r}")
        return cls(parse_size(max_body, "--max-body"), parse_size(max_upload_total, "--max-upload-total"),
                   max_files, parse_size(max_client_total, "--max-upload-per-client"),
                   parse_size(max_work_total, "--max-work-total"))


def _folder_bytes(root: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of every file under ``root`` (links not followed)."""
    out = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, path))
    return out


class UploadQuota:
    """Bytes uploaded per client within ``window_s`` (the retention time), and the bytes the work
    folder's uploads and results may hold in all: the oldest files (over ``min_age_s`` old) are
    evicted to make room, else the upload is refused."""

    def __init__(self, limits: RequestLimits, work_dir: str | os.PathLike[str] | None, window_s: float,
                 min_age_s: float = 60.0) -> None:
        self.limits = limits
        self.cache = Path(work_dir) / "gradio" if work_dir is not None else None
        self.window_s, self.min_age_s = float(window_s), float(min_age_s)
        self._lock = threading.Lock()
        self._ledger: dict[str, deque[tuple[float, int]]] = {}

    def admit(self, client: str, nbytes: int) -> tuple[int, str] | None:
        """None when ``client`` may upload ``nbytes`` now (recorded); else (HTTP status, message)."""
        now = time.monotonic()
        with self._lock:
            for key in list(self._ledger):
                entries = self._ledger[key]
                while entries and entries[0][0] < now - self.window_s:
                    entries.popleft()
                if not entries:
                    del self._ledger[key]
            used = sum(n for _, n in self._ledger.get(client, ()))
            cap = self.limits.max_client_total
            if used + nbytes > cap:
                return 429, (f"upload quota reached: {used:,} bytes uploaded from this address in the last "
                             f"{self.window_s:.0f} s (the limit is {cap:,}, set by --max-upload-per-client); "
                             "try again later")
            if self.cache is not None and not self._make_room(nbytes):
                return 507, "the server's upload space is full (--max-work-total); try again in a minute"
            self._ledger.setdefault(client, deque()).append((now, nbytes))
        return None

    def _make_room(self, nbytes: int) -> bool:
        files = sorted(_folder_bytes(self.cache)) if self.cache.is_dir() else []
        total = sum(size for _, size, _ in files)
        cap = self.limits.max_work_total
        cutoff = time.time() - self.min_age_s
        for mtime, size, path in files:
            if total + nbytes <= cap or mtime > cutoff:
                break
            try:
                path.unlink()
                total -= size
                logger.info("evicted %s (%d bytes) to make room for an upload", path.name, size)
            except OSError:
                continue
        return total + nbytes <= cap


def remote_file(data: Any) -> str | None:
    """The first file field in a JSON payload that names a URL instead of an uploaded file."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")             # what Gradio fetches (an input's "url" is not used)
            if isinstance(path, str) and _URL.match(path.strip()):
                return path
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _boundary(headers: dict[bytes, bytes]) -> bytes | None:
    ctype = headers.get(b"content-type", b"").decode("latin-1")
    found = re.search(r'boundary="?([^";]+)"?', ctype)
    return found.group(1).encode("latin-1") if found else None


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class LimitsMiddleware:
    """ASGI middleware enforcing :class:`RequestLimits` (see the module docstring)."""

    def __init__(self, app: Any, limits: RequestLimits | None = None, quota: UploadQuota | None = None,
                 arity: dict[str, int] | None = None) -> None:
        self.app = app
        self.limits = limits or RequestLimits()
        self.quota = quota
        self.arity = arity or {}          # values each API call takes, by api name and by fn_index

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        upload = scope.get("path", "").rstrip("/").endswith("/upload")
        cap = self.limits.max_upload_total if upload else self.limits.max_body
        what = "upload" if upload else "request body"
        body = bytearray()
        total, over, more = 0, False, True
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        over = declared > cap
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            more = message.get("more_body", False)
            if total > cap:
                over = True
            if over:
                body.clear()
                if total > cap + _DRAIN_EXTRA:
                    break
            else:
                body += chunk
        if over:
            logger.warning("refused a %s of %s bytes (limit %d)", what, f"{max(total, declared):,}", cap)
            await self._answer(send, 413, f"{what} too large: the limit is {cap:,} bytes")
            return
        if upload:
            boundary = _boundary(headers)
            files = body.count(b"--" + boundary) - 1 if boundary else 0
            if files > self.limits.max_files:
                await self._answer(send, 413, f"too many files in one upload: {files} (the limit is "
                                              f"{self.limits.max_files})")
                return
            if self.quota is not None:
                client = (scope.get("client") or ("unknown",))[0]
                refused = self.quota.admit(str(client), len(body))
                if refused is not None:
                    logger.warning("refused an upload of %d bytes from %s: %s", len(body), client, refused[1])
                    await self._answer(send, *refused)
                    return
        elif body.strip():
            # parsed, never sniffed (leading whitespace, a BOM or UTF-16 are JSON too), with the
            # parser Starlette hands Gradio, so both read the same value
            try:
                value = json.loads(bytes(body))
            except RecursionError:
                await self._answer(send, 400, "request body nested too deep")
                return
            except ValueError:      # not JSON: Gradio refuses it as well
                value = None
            url = remote_file(value)
            short = self._too_few_values(scope.get("path", ""), value)
            if short is not None:   # Gradio would answer {"error": null}
                await self._answer(send, 400, short)
                return
            if url is not None:
                await self._answer(send, 400, "files must be uploaded; the app does not fetch URLs "
                                              f"({url[:80]})")
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_few_values(self, path: str, value: Any) -> str | None:
        """What is wrong with an API call that sends fewer values than its function takes."""
        if not self.arity or not isinstance(value, dict) or not isinstance(value.get("data"), list):
            return None
        found = re.search(r"/(?:call|run)/([^/]+)/?$", path)
        key = found.group(1) if found else str(value.get("fn_index"))
        needed = self.arity.get(key)
        got = len(value["data"])
        if needed is None or got >= needed:
            return None
        name = f"/{key}" if found else f"fn_index {key}"
        return f"{name} takes {needed} values, got {got}: see the app's API page for their order"

    @staticmethod
    async def _answer(send: Send, status: int, message: str) -> None:
        payload = json.dumps({"detail": message, "error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay
