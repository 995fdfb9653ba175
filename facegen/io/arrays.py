"""Plain arrays and zip members from files someone else wrote: ``.npy`` and ``.npz`` read
without pickle after their header is checked (dtype: plain real numbers or text, never objects or
complex numbers; the declared shape against the bytes actually there and against
``$FACEGEN_MAX_FILE_BYTES``), all before anything is allocated; zip members inflated with a bound
(the declared size is not trusted). Files are opened by :func:`facegen.io.files.open_file`.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any, BinaryIO

import numpy as np

from facegen.errors import BadFileError
from facegen.io.files import (MAX_FILE_BYTES_ENV, ErrorType, cap_text, name_of, check_size, max_file_bytes,
                              open_file)


#: bool, signed, unsigned, float, fixed-width text and bytes: never objects, never complex numbers
_NPY_KINDS = "biufUS"


def _npy_header(fh: BinaryIO, name: str, error: ErrorType) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise error(f"{name}: is not a plain .npy array ({' '.join(str(exc).split())[:100]})") from None
    if dtype.hasobject or dtype.kind not in _NPY_KINDS or dtype.fields is not None or dtype.subdtype:
        raise error(f"{name}: holds {dtype} values; only plain real numbers and text are read "
                    "(never Python objects)")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _array_from(fh: BinaryIO, available: int, name: str, cap: int, error: ErrorType,
                env: str | None = MAX_FILE_BYTES_ENV) -> np.ndarray:
    shape, fortran, dtype = _npy_header(fh, name, error)
    count = 1
    for s in shape:
        count *= s
    need = count * dtype.itemsize
    if need > cap:
        raise error(f"{name}: the header declares a {shape} {dtype} array ({need:,} bytes); "
                    f"{cap_text(cap, env)}")
    left = available - fh.tell()
    if need > left:
        raise error(f"{name}: the header declares {need:,} bytes of data but the file holds {max(left, 0):,} "
                    "(truncated or forged header)")
    data = fh.read(need)
    if len(data) != need:
        raise error(f"{name}: truncated array data")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    arr = arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)
    return arr.copy()


def parse_npy(data: bytes, *, name: str = "array", error: ErrorType = BadFileError) -> np.ndarray:
    """:func:`load_npy` of bytes already read (an object from a store)."""
    import io

    return _array_from(io.BytesIO(data), len(data), name, max_file_bytes(), error)


def load_npy(path: str | os.PathLike[str], *, what: str = "array", error: ErrorType = BadFileError,
             max_bytes: int | None = None, **kwargs: Any) -> np.ndarray:
    """A plain numeric ``.npy`` array (see the module docstring): never pickles, never allocates
    more than the file holds or ``$FACEGEN_MAX_FILE_BYTES``."""
    env = None if max_bytes is not None else MAX_FILE_BYTES_ENV
    cap = max_bytes if max_bytes is not None else max_file_bytes()
    name = name_of(what, path)
    with open_file(path, what=what, error=error, **kwargs) as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            return _array_from(fh, size, name, cap, error, env)
        except OSError as exc:
            raise error(f"{name}: cannot read: {exc.strerror or exc}") from None


def read_zip_member(zf: zipfile.ZipFile, member: str, *, name: str, cap: int,
                    env: str | None = MAX_FILE_BYTES_ENV, error: ErrorType = BadFileError) -> bytes:
    """One member of an open zip, inflated to at most ``cap`` bytes (the declared size is not
    trusted: inflation stops at the cap)."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise error(f"{name}: has no {member}") from None
    if info.file_size > cap:
        raise error(f"{name}: {member} inflates to {info.file_size:,} bytes ({cap_text(cap, env)})")
    try:
        with zf.open(info) as fh:
            data = fh.read(cap + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise error(f"{name}: {member} is unreadable ({' '.join(str(exc).split())[:100]})") from None
    if len(data) > cap:
        raise error(f"{name}: {member} inflates to more than {cap:,} bytes ({cap_text(cap, env)})")
    return data


def open_zip(data: bytes | BinaryIO, *, name: str, error: ErrorType = BadFileError) -> zipfile.ZipFile:
    """A zip archive from bytes or a seekable file, or ``error`` (one line)."""
    try:
        return zipfile.ZipFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise error(f"{name}: not a readable zip archive ({' '.join(str(exc).split())[:100]})") from None


def load_npz(path: str | os.PathLike[str], *, what: str = "arrays", error: ErrorType = BadFileError,
             max_bytes: int | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
    """The arrays of a plain ``.npz`` (see :func:`load_npy`); the total inflated size is bounded by
    ``$FACEGEN_MAX_FILE_BYTES`` before anything is inflated, and again while inflating."""
    env = None if max_bytes is not None else MAX_FILE_BYTES_ENV
    cap = max_bytes if max_bytes is not None else max_file_bytes()
    name = name_of(what, path)
    out: dict[str, np.ndarray] = {}
    with open_file(path, what=what, error=error, **kwargs) as fh:
        check_size(fh, name, cap=cap if env is None else None, error=error)
        with open_zip(fh, name=name, error=error) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > cap:
                raise error(f"{name}: inflates to {total:,} bytes ({cap_text(cap, env)})")
            left = cap
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise error(f"{name}: {info.filename} is not an .npy member")
                raw = read_zip_member(zf, info.filename, name=name, cap=left, env=env, error=error)
                left -= len(raw)
                out[info.filename[:-4]] = _array_from(io.BytesIO(raw), len(raw), f"{name}: {info.filename}",
                                                      cap, error, env)
    return out
