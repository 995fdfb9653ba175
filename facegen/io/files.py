"""The one door for every file that is not an image: certificates, seals, sidecars, saved
embeddings, references, lock files, container tags and text chunks.

Every reader here

- opens the path non-blocking and checks the *open descriptor* (``fstat``): a FIFO, a device,
  a socket or a directory is refused at once, never read (``mkfifo x.json``, ``/dev/zero``);
- can refuse to follow a link (``follow_links=False`` opens with ``O_NOFOLLOW``), and can
  require the file to stay inside a folder (``within=``: no link out of the dataset it
  belongs to);
- reads at most a size cap (never ``read_bytes()`` whole): JSON, text and PEM files
  ``$FACEGEN_MAX_JSON_BYTES``; arrays, seals and whole files read for their credentials
  ``$FACEGEN_MAX_FILE_BYTES``;
- parses JSON strictly (no ``NaN``), refuses nesting deeper than :data:`MAX_JSON_DEPTH`
  without recursing, and checks its *shape* against a small schema (:func:`check_shape`);
- (:mod:`facegen.io.arrays`) reads ``.npy`` / ``.npz`` after checking the header: the dtype (no
  objects), the declared shape against the bytes actually there and the cap, all before anything
  is allocated; ``.npz`` members and other zip members are inflated with a bound.

Every failure is a :class:`~facegen.errors.BadFileError` (or the caller's ``error`` class)
with a one-line message that names the file, what is wrong, and the environment variable
that governs a limit.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping


from facegen.errors import BadFileError, FacegenError
from facegen.limits import env_limit

MAX_JSON_BYTES_ENV = "FACEGEN_MAX_JSON_BYTES"
MAX_FILE_BYTES_ENV = "FACEGEN_MAX_FILE_BYTES"
DEFAULT_MAX_JSON_BYTES = 16 * 2**20
DEFAULT_MAX_FILE_BYTES = 2 * 2**30
#: deepest nesting of objects and arrays any JSON facegen reads may have (fixed)
MAX_JSON_DEPTH = 64

ErrorType = Callable[[str], FacegenError]


def max_json_bytes() -> int:
    """The most bytes a JSON, text or PEM file may have (``$FACEGEN_MAX_JSON_BYTES``)."""
    return env_limit(MAX_JSON_BYTES_ENV, DEFAULT_MAX_JSON_BYTES)


def max_file_bytes() -> int:
    """The most bytes an array, a seal, an inflated zip member or a whole file read for its
    credentials may have (``$FACEGEN_MAX_FILE_BYTES``)."""
    return env_limit(MAX_FILE_BYTES_ENV, DEFAULT_MAX_FILE_BYTES)


def name_of(what: str, path: Any) -> str:
    """How a file is named in a message: ``what path`` (the path alone when ``what`` is empty)."""
    return f"{what} {path}" if what else str(path)


def cap_text(cap: int, env: str | None) -> str:
    """How a limit is described: the environment variable is named only when it set the cap."""
    return f"the limit is {cap:,} bytes, set by {env}" if env else f"the limit is {cap:,} bytes"


# --------------------------------------------------------------------------- opening

def inside(root: str | os.PathLike[str], path: str | os.PathLike[str], *, what: str = "file",
           error: ErrorType = BadFileError) -> Path:
    """``path`` resolved, if it stays inside ``root`` (links followed); else ``error``.

    ``path`` may be relative to ``root``. An absolute path, ``..`` or a link that leads out of
    ``root`` is refused.
    """
    base = Path(root).resolve()
    p = Path(path)
    target = (p if p.is_absolute() else base / p).resolve()
    if target != base and base not in target.parents:
        raise error(f"{what} {path}: leads out of {root} (absolute path, '..' or a link); refused")
    return target


def open_file(path: str | os.PathLike[str], *, what: str = "file", follow_links: bool = True,
              within: str | os.PathLike[str] | None = None, error: ErrorType = BadFileError) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file (see the module docstring).

    ``follow_links=False``: a link at ``path`` itself is refused (``O_NOFOLLOW``).
    ``within``: the file (links resolved) must lie inside that folder.
    """
    name = name_of(what, path)
    if within is not None:
        inside(within, path, what=what, error=error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
        if not hasattr(os, "O_NOFOLLOW") and os.path.islink(path):  # pragma: no cover - Windows
            raise error(f"{name}: is a symbolic link; refused")
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except IsADirectoryError:
        raise error(f"{name}: is a directory, not a file") from None
    except PermissionError:
        raise error(f"{name}: permission denied") from None
    except OSError as exc:
        if not follow_links and os.path.islink(path):
            raise error(f"{name}: is a symbolic link; refused") from None
        raise error(f"{name}: cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{name}: is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{name}: not a regular file (a FIFO, device or socket); refused")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_capped(fh: BinaryIO, cap: int, env: str | None, name: str, error: ErrorType) -> bytes:
    size = os.fstat(fh.fileno()).st_size
    if size > cap:
        raise error(f"{name}: {size:,} bytes is too large ({cap_text(cap, env)})")
    data = fh.read(cap + 1)                     # the file may grow between fstat and read
    if len(data) > cap:
        raise error(f"{name}: more than {cap:,} bytes is too large ({cap_text(cap, env)})")
    return data


def check_size(fh: BinaryIO, name: str, *, cap: int | None = None, error: ErrorType = BadFileError) -> int:
    """The size of the open file ``fh``, if within ``cap`` (default ``$FACEGEN_MAX_FILE_BYTES``)."""
    env = None if cap is not None else MAX_FILE_BYTES_ENV
    cap = cap if cap is not None else max_file_bytes()
    size = os.fstat(fh.fileno()).st_size
    if size > cap:
        raise error(f"{name}: {size:,} bytes is too large ({cap_text(cap, env)})")
    return size


def read_bytes(path: str | os.PathLike[str], *, what: str = "file", max_bytes: int | None = None,
               text: bool = True, follow_links: bool = True, within: str | os.PathLike[str] | None = None,
               error: ErrorType = BadFileError, governed_by: str | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (default: ``$FACEGEN_MAX_JSON_BYTES``
    when ``text``, else ``$FACEGEN_MAX_FILE_BYTES``); ``governed_by`` names what sets a given
    ``max_bytes`` in the message."""
    env = governed_by if max_bytes is not None else (MAX_JSON_BYTES_ENV if text else MAX_FILE_BYTES_ENV)
    cap = max_bytes if max_bytes is not None else (max_json_bytes() if text else max_file_bytes())
    with open_file(path, what=what, follow_links=follow_links, within=within, error=error) as fh:
        try:
            return _read_capped(fh, cap, env, name_of(what, path), error)
        except OSError as exc:
            raise error(f"{name_of(what, path)}: cannot read: {exc.strerror or exc}") from None


def read_text(path: str | os.PathLike[str], *, what: str = "file", error: ErrorType = BadFileError,
              **kwargs: Any) -> str:
    """A UTF-8 text file through :func:`read_bytes` (``$FACEGEN_MAX_JSON_BYTES``)."""
    data = read_bytes(path, what=what, error=error, text=True, **kwargs)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{name_of(what, path)}: not UTF-8 text") from None


# --------------------------------------------------------------------------- JSON

class Opt:
    """A schema entry for a key that may be missing: ``{"names": Opt([str])}``."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema


class AnyKey:
    """A schema for a mapping with any string keys: ``AnyKey(str)`` is ``{str: str}``."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "text", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _matches_type(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_shape(value: Any, schema: Any, name: str = "JSON", error: ErrorType = BadFileError,
                where: str = "") -> Any:
    """``value`` if it has ``schema``'s shape, else ``error`` naming the first place that differs.

    A schema is a type (``str``, ``int``, ``float`` (any number), ``bool``, ``dict``, ``list``,
    ``type(None)``), a tuple of schemas (any one), ``[schema]`` (an array of those),
    ``{"key": schema}`` (an object: listed keys required unless wrapped in :class:`Opt`, other
    keys allowed) or :class:`AnyKey` (an object whose every value has that schema). Checked
    without recursion, so any depth is safe.
    """
    stack = [(value, schema, where)]
    while stack:
        val, sch, at = stack.pop()
        if isinstance(sch, Opt):
            sch = sch.schema
        if sch is Any:
            continue
        if isinstance(sch, tuple):
            if not any(_shape_ok(val, s) for s in sch):
                raise error(f"{name}: {at or 'the top level'} has the wrong shape ({_type_name(val)})")
            continue
        if isinstance(sch, type):
            if not _matches_type(val, sch):
                raise error(f"{name}: {at or 'the top level'} must be {_type_name(sch())}, "
                            f"got {_type_name(val)}")
            continue
        if isinstance(sch, list):
            if not isinstance(val, list):
                raise error(f"{name}: {at or 'the top level'} must be an array, got {_type_name(val)}")
            stack.extend((v, sch[0], f"{at}[{i}]") for i, v in enumerate(val))
            continue
        if isinstance(sch, AnyKey):
            if not isinstance(val, dict):
                raise error(f"{name}: {at or 'the top level'} must be an object, got {_type_name(val)}")
            stack.extend((v, sch.schema, f"{at}.{k}" if at else str(k)) for k, v in val.items())
            continue
        if isinstance(sch, Mapping):
            if not isinstance(val, dict):
                raise error(f"{name}: {at or 'the top level'} must be an object, got {_type_name(val)}")
            for key, sub in sch.items():
                if key not in val:
                    if isinstance(sub, Opt):
                        continue
                    raise error(f"{name}: {at + '.' if at else ''}{key} is missing")
                stack.append((val[key], sub, f"{at}.{key}" if at else str(key)))
            continue
        raise TypeError(f"not a schema: {sch!r}")
    return value


def _shape_ok(value: Any, schema: Any) -> bool:
    try:
        check_shape(value, schema)
    except FacegenError:
        return False
    return True


def _depth(value: Any) -> int:
    """The deepest nesting of objects and arrays in a parsed value (no recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        val, depth = stack.pop()
        if isinstance(val, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((v, depth + 1) for v in (val.values() if isinstance(val, dict) else val))
    return deepest


_TOO_DEEP = object()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes | str, *, name: str = "JSON", schema: Any = Any, error: ErrorType = BadFileError,
               max_bytes: int | None = None) -> Any:
    """Strict JSON from ``data``: at most ``max_bytes`` (``$FACEGEN_MAX_JSON_BYTES``), nested at
    most :data:`MAX_JSON_DEPTH` deep, with ``schema``'s shape (:func:`check_shape`)."""
    env = None if max_bytes is not None else MAX_JSON_BYTES_ENV
    cap = max_bytes if max_bytes is not None else max_json_bytes()
    if len(data) > cap:
        raise error(f"{name}: {len(data):,} bytes of JSON is too large ({cap_text(cap, env)})")
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise error(f"{name}: not UTF-8 JSON") from None
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except RecursionError:      # the C decoder stops at the interpreter's recursion limit, quickly
        value = _TOO_DEEP
    except ValueError as exc:
        raise error(f"{name}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    if value is _TOO_DEEP or _depth(value) > MAX_JSON_DEPTH:
        raise error(f"{name}: JSON nested more than {MAX_JSON_DEPTH} levels deep; refused")
    return check_shape(value, schema, name, error)


def read_json(path: str | os.PathLike[str], *, what: str = "JSON file", schema: Any = Any,
              error: ErrorType = BadFileError, **kwargs: Any) -> Any:
    """A JSON file through :func:`read_bytes` and :func:`parse_json`."""
    data = read_bytes(path, what=what, error=error, text=True, **kwargs)
    return parse_json(data, name=name_of(what, path), schema=schema, error=error, max_bytes=len(data) + 1)


# --------------------------------------------------------------------------- lock files

def open_lock_file(path: str | os.PathLike[str], *, what: str = "lock file",
                   error: ErrorType = BadFileError) -> int:
    """A read-write descriptor on the lock file ``path`` (created 0644 if missing): never through
    a link (a planted ``.lock`` link would make the owner's record overwrite its target), and only
    a regular file (a FIFO ``.lock`` is refused at once, not waited on)."""
    flags = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_BINARY", 0))
    if not hasattr(os, "O_NOFOLLOW") and os.path.islink(path):  # pragma: no cover - Windows
        raise error(f"{what} {path}: is a symbolic link; remove it")
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if os.path.islink(path):
            raise error(f"{what} {path}: is a symbolic link (planted?); remove it") from None
        raise error(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path}: not a regular file (a FIFO, device or socket); remove it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_json_lines(path: str | os.PathLike[str], *, what: str = "JSON-lines file", schema: Any = Any,
                    error: ErrorType = BadFileError, **kwargs: Any) -> list[Any]:
    """Every non-blank line of a JSON-lines file (``$FACEGEN_MAX_FILE_BYTES`` in all, each line
    ``$FACEGEN_MAX_JSON_BYTES``), each parsed by :func:`parse_json` with ``schema``."""
    data = read_bytes(path, what=what, text=False, error=error, **kwargs)
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            out.append(parse_json(line, name=f"{name_of(what, path)} line {n}", schema=schema, error=error))
    return out
