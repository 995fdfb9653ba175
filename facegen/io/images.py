"""Image input: the one door every image comes in by.

:func:`load_image` turns a path, bytes, a file object, a ``PIL.Image`` or a numpy array into
a contiguous RGB ``uint8`` array (H, W, 3), upright per EXIF. It refuses formats outside an
allowlist, and images whose *header* declares more than ``max_pixels`` before any pixel is
decoded (:mod:`facegen.io.guard`). Every failure is a :class:`~facegen.errors.BadImageError`
that names the image and says what was wrong.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facegen.io.files import open_file
from facegen.errors import BadImageError, InvalidArgumentError
from facegen.io.guard import (
    ALLOWED_FORMATS,
    bomb_guard,
    check_pixels,
    normalise_formats,
    resolve_max_pixels,
)
from facegen.io.pixels import array_to_rgb, mode_to_rgb

logger = logging.getLogger(__name__)

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO,
                    Image.Image, np.ndarray]

HEAD_BYTES = 1024


def load_image(src: ImageSource, *, max_pixels: int | None = None,
               allowed_formats: Iterable[str] = ALLOWED_FORMATS) -> np.ndarray:
    """Load any image as a contiguous RGB ``uint8`` array of shape (H, W, 3).

    Args:
        src: a path (``str``/``PathLike``), encoded bytes, a binary file object, a
            ``PIL.Image.Image``, or a numpy array taken as RGB(A) or grey: (H, W),
            (H, W, 1), (H, W, 3) or (H, W, 4) of ``uint8``, ``uint16``, ``bool`` or float
            in [0, 1]. Arrays from OpenCV are BGR: convert them first.
        max_pixels: refuse images with more than this many pixels, checked on the header
            before decoding. ``None``: ``$FACEGEN_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`.
        allowed_formats: Pillow format names that may be decoded (files and PIL images).

    EXIF orientation is applied; animations give their first frame; transparency is
    composited on white; CMYK, palette, 1-bit, grey and 16-bit/32-bit/float images are
    converted to 8-bit RGB (16-bit scaled by 255/65535, not clipped).

    Raises:
        BadImageError: unreadable, empty, truncated, not allowed, or too large; the
            message names the image and what was wrong.
        InvalidArgumentError: ``max_pixels``/``allowed_formats`` are unusable.
    """
    limit = resolve_max_pixels(max_pixels)
    formats = normalise_formats(allowed_formats)
    if isinstance(src, np.ndarray):
        return array_to_rgb(src, limit, "<array>")
    if isinstance(src, Image.Image):
        name = str(getattr(src, "filename", "") or "<PIL image>")
        return pil_to_rgb(src, limit, formats, name, restore_frame=True)
    if isinstance(src, (str, os.PathLike)):
        return _load_path(Path(src), limit, formats)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise BadImageError("<bytes>: empty input (0 bytes)")
        return _load_stream(io.BytesIO(data), limit, formats, "<bytes>")
    if hasattr(src, "read"):
        name = getattr(src, "name", None)
        name = str(name) if isinstance(name, (str, os.PathLike)) else "<file object>"
        return _load_stream(_seekable(src, name), limit, formats, name)
    raise InvalidArgumentError(
        f"load_image cannot read a {type(src).__name__}: give a path, bytes, a binary file "
        "object, a PIL.Image or a numpy array")


def _seekable(fp: Any, name: str) -> BinaryIO:
    try:
        if fp.seekable():
            return fp
    except (AttributeError, OSError, ValueError):
        pass
    try:
        data = fp.read()
    except (OSError, ValueError) as exc:
        raise BadImageError(f"{name}: cannot read: {exc}") from exc
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidArgumentError(f"{name}: open the file in binary mode ('rb')")
    return io.BytesIO(data)


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (:func:`facegen.io.files.open_file`:
    opened non-blocking and checked on the open descriptor, so a FIFO, a device or a socket is
    refused at once instead of blocking forever, and nothing can swap the file between the check
    and the read); a failure is a :class:`BadImageError`."""
    return open_file(path, what="", error=BadImageError)


def _load_path(path: Path, max_pixels: int, formats: frozenset[str]) -> np.ndarray:
    fh = open_regular(path)
    with fh:
        return _load_stream(fh, max_pixels, formats, str(path), suffix=path.suffix.lower())


def _load_stream(fp: BinaryIO, max_pixels: int, formats: frozenset[str], name: str,
                 suffix: str = "") -> np.ndarray:
    try:
        start = fp.tell()
        head = fp.read(HEAD_BYTES)
        fp.seek(start)
    except (OSError, ValueError) as exc:
        raise BadImageError(f"{name}: cannot read: {exc}") from exc
    if not head:
        raise BadImageError(f"{name}: empty file (0 bytes)")
    with bomb_guard(max_pixels, name):
        try:
            im = Image.open(fp)
        except UnidentifiedImageError:
            raise BadImageError(explain_unidentified(head, suffix, name)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as exc:  # noqa: BLE001 - any plugin failure is a bad file
            raise BadImageError(f"{name}: corrupt or unreadable image: {exc}") from exc
        with im:
            return pil_to_rgb(im, max_pixels, formats, name, restore_frame=False)


def pil_to_rgb(im: Image.Image, max_pixels: int | None, formats: frozenset[str] | None,
                name: str, *, restore_frame: bool) -> np.ndarray:
    """Check a (possibly still lazy) PIL image's format and size, then decode frame 0."""
    fmt = im.format
    if formats is not None and fmt is not None and fmt.upper() not in formats:
        raise BadImageError(
            f"{name}: image format {fmt} is not allowed (allowed: {', '.join(sorted(formats))})")
    check_pixels(im.size, max_pixels, name)
    what = f"{fmt} image" if fmt else "image"
    frame = im.tell()
    with bomb_guard(max_pixels, name):
        try:
            if frame != 0:
                im.seek(0)
            im.load()
            upright = _exif_upright(im, name)
            check_pixels(upright.size, max_pixels, name)
            rgb = mode_to_rgb(upright, name)
        except (BadImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
            raise BadImageError(
                f"{name}: cannot decode the {what} (truncated or corrupt?): {exc}") from exc
        finally:
            if restore_frame and frame != 0:
                with contextlib.suppress(Exception):
                    im.seek(frame)
    logger.debug("loaded %s: %s mode %s -> %dx%d RGB", name, fmt, im.mode,
                 rgb.shape[1], rgb.shape[0])
    return rgb


@contextlib.contextmanager
def pillow_warnings_logged(name: str) -> Iterator[None]:
    """Pillow's ``UserWarning``s about damaged metadata ("Corrupt EXIF data ...") become one
    short log line naming the image, instead of a raw warning quoting Pillow's source path.
    Other warnings (decompression bombs are ``RuntimeWarning``s) are left to their filters."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", category=UserWarning)
        yield
    seen = set()
    for w in caught:
        if issubclass(w.category, UserWarning) and not issubclass(w.category, RuntimeWarning):
            text = " ".join(str(w.message).split())
            if text not in seen:
                seen.add(text)
                logger.warning("%s: damaged image metadata ignored (%s)", name, text[:120])
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _exif_upright(im: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is logged, not fatal."""
    try:
        with pillow_warnings_logged(name):
            return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - pixels decoded fine, only EXIF is bad
        logger.warning("%s: unreadable EXIF orientation (%s); using the stored orientation",
                       name, " ".join(str(exc).split())[:120])
        return im.copy()


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def explain_unidentified(head: bytes, suffix: str, name: str) -> str:
    """A message for bytes Pillow could not identify, naming what they look like."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if suffix in (".svg", ".svgz") or (text.startswith(b"<") and b"<svg" in text):
        return f"{name}: SVG is not supported (vector image); export it to PNG first"
    if text.startswith((b"<!doctype html", b"<html")):
        return f"{name}: this is an HTML page, not an image (a failed download?)"
    if head.startswith(b"%PDF"):
        return f"{name}: this is a PDF document, not an image"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        if brand in ("heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"):
            return f"{name}: HEIC/HEIF is not supported; convert it to JPEG or PNG"
        if brand in ("avif", "avis"):
            return f"{name}: AVIF is not supported; convert it to JPEG or PNG"
    looks = next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)
    if looks is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        looks = "WEBP"
    if looks:
        return f"{name}: starts like a {looks} file but cannot be read (truncated or corrupt)"
    return f"{name}: not a recognised image file (starts with {head[:16]!r})"
