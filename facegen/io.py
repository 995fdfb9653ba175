"""Image input and output: the one door every image comes in by, and the one it leaves by.

:func:`load_image` turns a path, bytes, a file object, a ``PIL.Image`` or a numpy array into
a contiguous RGB ``uint8`` array (H, W, 3), upright per EXIF. It refuses formats outside an
allowlist, and images whose *header* declares more than ``max_pixels`` before any pixel is
decoded, so a few-KB decompression bomb costs nothing. Every failure is a
:class:`~facegen.errors.BadImageError` that names the image and says what was wrong.

:func:`save_image` writes PNG (or JPEG/WebP by suffix) atomically, marked as AI-generated:
PNG text chunks ``ai_generated``, ``Software``, ``DigitalSourceType`` (IPTC) and
``facegen`` (JSON of the caller's metadata), plus an XMP packet; JPEG/WebP carry the same in
EXIF (Software, ImageDescription, UserComment) and XMP. :func:`read_metadata` reads it back.
Both writers also apply :mod:`facegen.provenance`: the invisible watermark in the pixels, its
``provenance`` block in the metadata, and (``save_image``) a signed C2PA manifest.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import secrets
import stat
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Union
from xml.sax.saxutils import escape as _xml_escape

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from facegen import __version__
from facegen.errors import BadImageError, FacegenError, InvalidArgumentError
from facegen.limits import json_safe
from facegen.provenance import Provenance, mark, sign_encoded

logger = logging.getLogger(__name__)

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DIGITAL_SOURCE_TYPE",
    "MAX_PIXELS_ENV",
    "ImageSource",
    "load_image",
    "open_regular",
    "read_metadata",
    "resolve_max_pixels",
    "encode_png",
    "save_image",
]

#: Pillow format names :func:`load_image` decodes by default (MPO = multi-picture JPEG from
#: phones and cameras; APNG is Pillow's "PNG").
ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})
#: Largest image (width x height) accepted unless the caller or the environment says otherwise.
DEFAULT_MAX_PIXELS = 50_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_ENV = "FACEGEN_MAX_PIXELS"
#: IPTC digital source type of images made by a trained generative model.
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_AI_SOURCE_TYPES = frozenset({
    DIGITAL_SOURCE_TYPE,
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
})

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO,
                    Image.Image, np.ndarray]

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "APNG": "PNG"}
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_MAX_ARRAY_CHANNELS = (1, 3, 4)
_FLOAT_TOLERANCE = 1e-3
_HEAD_BYTES = 1024
# Keys the provenance block owns; metadata may not set them (case-insensitive).
_RESERVED_KEYS = frozenset({"ai_generated", "software", "digitalsourcetype", "facegen",
                            "xml:com.adobe.xmp", "provenance"})
_MAX_PNG_METADATA_BYTES = 512 * 1024  # Pillow refuses to read text chunks over 1 MiB
_ZIP_TEXT_OVER = 2048

_EXIF_IFD = 0x8769
_TAG_IMAGE_DESCRIPTION = 0x010E
_TAG_SOFTWARE = 0x0131
_TAG_USER_COMMENT = 0x9286

_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "facegen": "urn:facegen:xmp:1.0/",
}


# --------------------------------------------------------------------------- limits


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit to apply: ``max_pixels`` if given, else ``$FACEGEN_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`. Read at call time, so the environment can change it."""
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(raw.replace("_", ""))
        except ValueError:
            raise InvalidArgumentError(
                f"{MAX_PIXELS_ENV}={raw!r} is not an integer number of pixels") from None
        source = MAX_PIXELS_ENV
    else:
        source = "max_pixels"
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) \
            or max_pixels <= 0:
        raise InvalidArgumentError(f"{source} must be a positive integer, got {max_pixels!r}")
    return int(max_pixels)


def _normalise_formats(allowed_formats: Iterable[str]) -> frozenset[str]:
    if isinstance(allowed_formats, str):
        allowed_formats = (allowed_formats,)
    out = set()
    for fmt in allowed_formats:
        name = str(fmt).strip().upper().lstrip(".")
        out.add(_FORMAT_ALIASES.get(name, name))
    if not out:
        raise InvalidArgumentError("allowed_formats is empty: no image could be loaded")
    return frozenset(out)


def _check_pixels(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise BadImageError(f"{name}: the image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise BadImageError(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,} (possible decompression bomb); raise max_pixels or "
            f"{MAX_PIXELS_ENV} if the image is genuine")


@contextlib.contextmanager
def _bomb_guard(max_pixels: int | None, name: str) -> Iterator[None]:
    """Turn Pillow's own decompression-bomb checks into :class:`BadImageError`.

    When our limit is at or below Pillow's ``MAX_IMAGE_PIXELS``, Pillow's warning can only
    fire for an image we refuse anyway, so it is raised as an error (before decoding);
    when the caller raised the limit above Pillow's, the warning is silenced. Pillow's hard
    error (twice its limit) always applies. ``warnings.catch_warnings`` is process-global;
    the filter it sets only concerns ``DecompressionBombWarning``.
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    # max_pixels None (saving, reading metadata): no limit of ours, so no warning either.
    refuse = pil_limit is not None and max_pixels is not None and max_pixels <= pil_limit
    action = "error" if refuse else "ignore"
    with warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else None
            if pixels is not None and max_pixels is not None and pixels > max_pixels:
                raise BadImageError(
                    f"{name}: {pixels:,} pixels is over the limit of {max_pixels:,} "
                    f"(possible decompression bomb); raise max_pixels or {MAX_PIXELS_ENV} "
                    "if the image is genuine") from exc
            raise BadImageError(
                f"{name}: refused as a possible decompression bomb by Pillow "
                f"(PIL.Image.MAX_IMAGE_PIXELS={pil_limit}): {exc}") from exc


# --------------------------------------------------------------------------- load


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
    formats = _normalise_formats(allowed_formats)
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src, limit, "<array>")
    if isinstance(src, Image.Image):
        name = str(getattr(src, "filename", "") or "<PIL image>")
        return _pil_to_rgb(src, limit, formats, name, restore_frame=True)
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
    """Open ``path`` for reading only if it is a regular file.

    Opened non-blocking, then checked with ``fstat`` on the open descriptor, so a FIFO, a
    device or a socket is refused at once instead of blocking forever (``mkfifo f.jpg``), and
    nothing can swap the file between the check and the read.
    """
    name = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BadImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise BadImageError(f"{name}: is a directory, not an image file") from None
    except PermissionError:
        raise BadImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise BadImageError(f"{name}: cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BadImageError(f"{name}: is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise BadImageError(f"{name}: not a regular file (a FIFO, device or socket); "
                                "give an image file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _load_path(path: Path, max_pixels: int, formats: frozenset[str]) -> np.ndarray:
    fh = open_regular(path)
    with fh:
        return _load_stream(fh, max_pixels, formats, str(path), suffix=path.suffix.lower())


def _load_stream(fp: BinaryIO, max_pixels: int, formats: frozenset[str], name: str,
                 suffix: str = "") -> np.ndarray:
    try:
        start = fp.tell()
        head = fp.read(_HEAD_BYTES)
        fp.seek(start)
    except (OSError, ValueError) as exc:
        raise BadImageError(f"{name}: cannot read: {exc}") from exc
    if not head:
        raise BadImageError(f"{name}: empty file (0 bytes)")
    with _bomb_guard(max_pixels, name):
        try:
            im = Image.open(fp)
        except UnidentifiedImageError:
            raise BadImageError(_explain_unidentified(head, suffix, name)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as exc:  # noqa: BLE001 - any plugin failure is a bad file
            raise BadImageError(f"{name}: corrupt or unreadable image: {exc}") from exc
        with im:
            return _pil_to_rgb(im, max_pixels, formats, name, restore_frame=False)


def _pil_to_rgb(im: Image.Image, max_pixels: int | None, formats: frozenset[str] | None,
                name: str, *, restore_frame: bool) -> np.ndarray:
    """Check a (possibly still lazy) PIL image's format and size, then decode frame 0."""
    fmt = im.format
    if formats is not None and fmt is not None and fmt.upper() not in formats:
        raise BadImageError(
            f"{name}: image format {fmt} is not allowed (allowed: {', '.join(sorted(formats))})")
    _check_pixels(im.size, max_pixels, name)
    what = f"{fmt} image" if fmt else "image"
    frame = im.tell()
    with _bomb_guard(max_pixels, name):
        try:
            if frame != 0:
                im.seek(0)
            im.load()
            upright = _exif_upright(im, name)
            _check_pixels(upright.size, max_pixels, name)
            rgb = _mode_to_rgb(upright, name)
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
def _pillow_warnings_logged(name: str) -> Iterator[None]:
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
        with _pillow_warnings_logged(name):
            return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - pixels decoded fine, only EXIF is bad
        logger.warning("%s: unreadable EXIF orientation (%s); using the stored orientation",
                       name, " ".join(str(exc).split())[:120])
        return im.copy()


def _mode_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return np.array(im, dtype=np.uint8, order="C")
    if mode.startswith("I;16"):
        return _grey_to_rgb(_scale16(np.asarray(im)))
    if mode == "I":
        values = np.asarray(im).astype(np.int64)
        if values.min() >= 0 and values.max() <= 65535:
            return _grey_to_rgb(_scale16(values))
        logger.warning("%s: 32-bit integer image outside 0..65535, stretched min-max", name)
        return _grey_to_rgb(_stretch(values.astype(np.float64)))
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        values = np.where(np.isfinite(values), values, 0.0)
        if values.min() >= -_FLOAT_TOLERANCE and values.max() <= 1 + _FLOAT_TOLERANCE:
            return _grey_to_rgb(_float01_to_uint8(values))
        logger.warning("%s: float image outside [0, 1], stretched min-max", name)
        return _grey_to_rgb(_stretch(values))
    if mode == "CMYK":
        return np.array(_cmyk_to_rgb(im), dtype=np.uint8, order="C")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("LA").convert("RGBA") if mode == "La" else im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8,
                        order="C")
    try:
        return np.array(im.convert("RGB"), dtype=np.uint8, order="C")
    except ValueError as exc:
        raise BadImageError(f"{name}: cannot convert colour mode {mode} to RGB") from exc


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one, else Pillow's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"),
                                            outputMode="RGB")
            if out is not None:
                return out
        except Exception as exc:  # noqa: BLE001 - bad profile: fall back, don't fail
            logger.debug("ICC conversion failed (%s); using plain CMYK->RGB", exc)
    return im.convert("RGB")


def _scale16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (x / 257)."""
    wide = values.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _float01_to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return _float01_to_uint8((values - lo) / (hi - lo))


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _array_to_rgb(arr: np.ndarray, max_pixels: int | None, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _MAX_ARRAY_CHANNELS:
        raise BadImageError(
            f"{name}: an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
            f"got shape {tuple(arr.shape)}")
    height, width, channels = arr.shape
    _check_pixels((width, height), max_pixels, name)
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        out = _scale16(arr)
    elif np.issubdtype(arr.dtype, np.floating):
        values = arr.astype(np.float64)
        if not np.isfinite(values).all():
            raise BadImageError(f"{name}: the float image contains NaN or infinity")
        lo, hi = float(values.min()), float(values.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
            raise BadImageError(
                f"{name}: float images must hold values in [0, 1], got [{lo:g}, {hi:g}]"
                + ("; divide by 255 first" if hi <= 255 and lo >= 0 else ""))
        out = _float01_to_uint8(values)
    else:
        raise BadImageError(
            f"{name}: unsupported array dtype {arr.dtype}; use uint8, uint16, bool or float "
            "in [0, 1] (e.g. arr.astype(np.uint8) for 0..255 integers)")
    if channels == 1:
        out = np.repeat(out, 3, axis=2)
    elif channels == 4:
        alpha = out[:, :, 3:4].astype(np.uint32)
        colour = out[:, :, :3].astype(np.uint32)
        out = ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.array(out, dtype=np.uint8, order="C", copy=True)


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _explain_unidentified(head: bytes, suffix: str, name: str) -> str:
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


# --------------------------------------------------------------------------- save


def save_image(path: str | os.PathLike[str], rgb: np.ndarray | Image.Image,
               metadata: Mapping[str, Any] | None = None, *,
               provenance: Provenance | None = None) -> Path:
    """Write ``rgb`` to ``path`` atomically, marked as AI-generated; return the path.

    The format follows the suffix: ``.png`` (primary), ``.jpg``/``.jpeg`` (quality 95) or
    ``.webp`` (quality 95). ``rgb`` is anything :func:`load_image` accepts as an array or
    PIL image (alpha is composited on white). ``metadata`` (preset, adapter, seed, ...) must
    be JSON-serialisable (numpy scalars/arrays and paths are converted); it is stored as the
    ``facegen`` JSON text chunk and each str/number/bool value also as its own chunk. The
    ``ai_generated``, ``Software`` and ``DigitalSourceType`` fields are always written and
    cannot be overridden. Missing parent folders are created.

    ``provenance`` (:class:`facegen.provenance.Provenance`; default: everything on, the
    installation's signing identity) says which marks to add: the invisible watermark and the
    signed C2PA manifest; the metadata's ``provenance`` block records what was done.

    Raises:
        InvalidArgumentError: unsupported suffix, reserved or unserialisable metadata, or
            metadata too large for the format.
        BadImageError: ``rgb`` is not a usable image.
        FacegenError: the file cannot be written (permissions, disk full, ...).
    """
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidArgumentError(
            f"cannot save {path}: unsupported suffix {path.suffix or '(none)'!r}; use "
            f"{', '.join(sorted(_SAVE_FORMATS))}")
    if path.is_dir():
        raise InvalidArgumentError(f"cannot save to {path}: it is a directory")
    image, meta, payload, software, xmp = _prepare(rgb, metadata, "save_image", provenance)

    if fmt == "PNG":
        options: dict[str, Any] = {"pnginfo": _png_options(meta, payload, software, xmp)}
    else:
        options = {"quality": 95, "exif": _exif_bytes(software, payload),
                   "xmp": xmp.encode("utf-8")}

    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **options)
    except ValueError as exc:  # e.g. "EXIF data is too long" for JPEG segments
        raise InvalidArgumentError(
            f"cannot save {path.name} as {fmt}: {exc}; metadata this large needs PNG"
        ) from exc
    data = sign_encoded(buf.getvalue(), fmt, meta, provenance, title=path.name)
    _atomic_write(path, lambda fh: fh.write(data))
    logger.debug("saved %s (%s, %dx%d) with provenance metadata", path, fmt,
                 image.width, image.height)
    return path


def _prepare(rgb: np.ndarray | Image.Image, metadata: Mapping[str, Any] | None,
             caller: str, provenance: Provenance | None
             ) -> tuple[Image.Image, dict[str, Any], str, str, str]:
    """Pixels and provenance fields shared by :func:`save_image` and :func:`encode_png`."""
    if isinstance(rgb, Image.Image):
        pixels = _pil_to_rgb(rgb, None, None, "<PIL image>", restore_frame=True)
    elif isinstance(rgb, np.ndarray):
        pixels = _array_to_rgb(rgb, None, "<array>")
    else:
        raise InvalidArgumentError(
            f"{caller} needs a numpy array or PIL.Image, got {type(rgb).__name__}")
    pixels, meta = mark(pixels, _check_metadata(metadata), provenance)
    payload = json.dumps(json_safe(meta), ensure_ascii=False, sort_keys=True, default=_json_default,
                         allow_nan=False)
    software = f"facegen {__version__}"
    return Image.fromarray(pixels), meta, payload, software, _build_xmp(software, payload)


def _png_options(meta: dict[str, Any], payload: str, software: str, xmp: str) -> Any:
    if len(payload.encode("utf-8")) > _MAX_PNG_METADATA_BYTES:
        raise InvalidArgumentError(
            f"metadata is too large ({len(payload):,} characters of JSON; the limit is "
            f"{_MAX_PNG_METADATA_BYTES:,} bytes): store large data next to the image")
    return _png_info(meta, software, payload, xmp)


def encode_png(rgb: np.ndarray | Image.Image, metadata: Mapping[str, Any] | None = None, *,
               provenance: Provenance | None = None, title: str = "image.png") -> bytes:
    """PNG bytes with the same AI-generated provenance :func:`save_image` writes (for
    archive members such as WebDataset shards; ``title`` names it in a C2PA manifest)."""
    image, meta, payload, software, xmp = _prepare(rgb, metadata, "encode_png", provenance)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=_png_options(meta, payload, software, xmp))
    return sign_encoded(buf.getvalue(), "PNG", meta, provenance, title=title)


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(
            f"metadata must be a mapping of str keys, got {type(metadata).__name__}")
    meta = json_safe(dict(metadata))  # NaN/inf become null: the metadata is strict JSON
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"metadata keys must be non-empty strings, got {key!r}")
        if key.lower() in _RESERVED_KEYS:
            raise InvalidArgumentError(
                f"metadata key {key!r} is reserved for the provenance fields save_image writes")
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"metadata[{key!r}] is not JSON-serialisable ({type(value).__name__}): {exc}"
            ) from None
    return meta


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _simple_text(value: Any) -> str | None:
    """The text of a value that gets its own chunk (str, bool, int, float), else None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def _valid_png_keyword(key: str) -> bool:
    # PNG keywords: 1-79 Latin-1 printable characters, no leading/trailing/double spaces.
    if not 1 <= len(key) <= 79 or key != key.strip() or "  " in key:
        return False
    return all(32 <= ord(c) <= 126 or 161 <= ord(c) <= 255 for c in key)


def _png_info(meta: Mapping[str, Any], software: str, payload: str, xmp: str
              ) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("ai_generated", "true")
    info.add_text("Software", software)
    info.add_text("DigitalSourceType", DIGITAL_SOURCE_TYPE)
    info.add_text("facegen", payload, zip=len(payload) > _ZIP_TEXT_OVER)
    for key, value in meta.items():
        text = _simple_text(value)
        if text is None:
            continue
        if not _valid_png_keyword(key):
            logger.debug("metadata key %r is not a valid PNG keyword; kept in the JSON only",
                         key)
            continue
        info.add_text(key, text, zip=len(text) > _ZIP_TEXT_OVER)
    info.add_itxt("XML:com.adobe.xmp", xmp)
    return info


def _exif_bytes(software: str, payload: str) -> bytes:
    exif = Image.Exif()
    exif[_TAG_SOFTWARE] = software
    exif[_TAG_IMAGE_DESCRIPTION] = (
        f"AI-generated image ({DIGITAL_SOURCE_TYPE.rsplit('/', 1)[-1]}) made with {software}")
    ascii_payload = json.dumps(json.loads(payload), ensure_ascii=True, sort_keys=True)
    exif.get_ifd(_EXIF_IFD)[_TAG_USER_COMMENT] = b"ASCII\x00\x00\x00" + ascii_payload.encode()
    return exif.tobytes()


def _build_xmp(software: str, payload: str) -> str:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{_NS["x"]}">\n'
        f' <rdf:RDF xmlns:rdf="{_NS["rdf"]}">\n'
        '  <rdf:Description rdf:about=""'
        f' xmlns:Iptc4xmpExt="{_NS["Iptc4xmpExt"]}"'
        f' xmlns:xmp="{_NS["xmp"]}" xmlns:facegen="{_NS["facegen"]}">\n'
        f'   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}'
        '</Iptc4xmpExt:DigitalSourceType>\n'
        f'   <xmp:CreatorTool>{_xml_escape(software)}</xmp:CreatorTool>\n'
        '   <facegen:ai_generated>true</facegen:ai_generated>\n'
        f'   <facegen:metadata>{_xml_escape(payload)}</facegen:metadata>\n'
        '  </rdf:Description>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="w"?>'
    )


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as exc:
        raise FacegenError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
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


# --------------------------------------------------------------------------- read back


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the provenance metadata of an image file without decoding its pixels.

    Returns a dict with:
        ``format`` (Pillow format name); ``ai_generated`` (True when marked so by facegen
        or by an IPTC AI digital source type); ``software``; ``digital_source_type``;
        ``metadata`` (the dict given to :func:`save_image`, ``{}`` if none); ``text`` (every
        raw text field found: PNG text chunks, or EXIF Software/ImageDescription/UserComment).

    Works on any readable image, not only facegen's. PNG text placed after the pixel data
    is not read. Raises :class:`BadImageError` when the file cannot be opened as an image.
    """
    path = Path(path)
    name = str(path)
    fh = open_regular(path)
    with fh, _bomb_guard(None, name), _pillow_warnings_logged(name):
        head = fh.read(_HEAD_BYTES)
        fh.seek(0)
        if not head:
            raise BadImageError(f"{name}: empty file (0 bytes)")
        try:
            im = Image.open(fh)
        except UnidentifiedImageError:
            raise BadImageError(_explain_unidentified(head, path.suffix.lower(), name)) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as exc:  # noqa: BLE001
            raise BadImageError(f"{name}: corrupt or unreadable image: {exc}") from exc
        with im:
            return _collect_metadata(im, name)


def _collect_metadata(im: Image.Image, name: str) -> dict[str, Any]:
    text: dict[str, str] = {}
    marker: str | None = None
    software: str | None = None
    source_type: str | None = None
    payload: str | None = None

    if im.format == "PNG":
        text = {k: str(v) for k, v in im.info.items() if isinstance(v, str)}
        marker = text.get("ai_generated")
        software = text.get("Software")
        source_type = text.get("DigitalSourceType")
        payload = text.get("facegen")
    else:
        try:
            exif = im.getexif()
            user_comment = exif.get_ifd(_EXIF_IFD).get(_TAG_USER_COMMENT)
        except Exception as exc:  # noqa: BLE001 - broken EXIF: report what else we have
            logger.warning("%s: unreadable EXIF (%s)", name, exc)
            exif, user_comment = Image.Exif(), None
        for tag, key in ((_TAG_SOFTWARE, "Software"),
                         (_TAG_IMAGE_DESCRIPTION, "ImageDescription")):
            if isinstance(exif.get(tag), str):
                text[key] = exif[tag].rstrip("\x00")
        if isinstance(user_comment, bytes):
            text["UserComment"] = _decode_user_comment(user_comment)
        software = text.get("Software")
        payload = text.get("UserComment")

    xmp = _parse_xmp(im.info.get("xmp"), name)
    marker = marker or xmp.get("ai_generated")
    software = software or xmp.get("CreatorTool")
    source_type = source_type or xmp.get("DigitalSourceType")
    metadata = _parse_payload(payload, name)
    if not metadata and xmp.get("metadata"):
        metadata = _parse_payload(xmp["metadata"], name)

    return {
        "format": im.format,
        "ai_generated": (marker or "").strip().lower() == "true"
        or source_type in _AI_SOURCE_TYPES,
        "software": software,
        "digital_source_type": source_type,
        "metadata": metadata,
        "text": text,
    }


def _decode_user_comment(raw: bytes) -> str:
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":  # UCS-2, byte order unstated: use the BOM or guess
        little = body[:2] == b"\xff\xfe" or (body[:2] != b"\xfe\xff" and body[1:2] == b"\x00")
        return body.decode("utf-16-le" if little else "utf-16-be", "replace").lstrip(
            "\ufeff").rstrip("\x00")
    if prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", "replace").rstrip("\x00")
    return raw.decode("utf-8", "replace").rstrip("\x00")


def _parse_payload(payload: str | None, name: str) -> dict[str, Any]:
    if not payload:
        return {}
    try:
        value = json.loads(payload)
    except ValueError:
        logger.debug("%s: metadata field is not JSON; ignored", name)
        return {}
    return value if isinstance(value, dict) else {}


def _parse_xmp(raw: Any, name: str) -> dict[str, str]:
    """DigitalSourceType, CreatorTool and facegen fields from an XMP packet (elements or
    attributes of rdf:Description)."""
    if not raw:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    start = raw.find("<x:xmpmeta")
    end = raw.rfind("</x:xmpmeta>")
    xml_text = raw[start:end + len("</x:xmpmeta>")] if start >= 0 and end > start else raw
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        logger.debug("%s: unreadable XMP (%s)", name, exc)
        return {}
    wanted = {
        f"{{{_NS['Iptc4xmpExt']}}}DigitalSourceType": "DigitalSourceType",
        f"{{{_NS['xmp']}}}CreatorTool": "CreatorTool",
        f"{{{_NS['facegen']}}}ai_generated": "ai_generated",
        f"{{{_NS['facegen']}}}metadata": "metadata",
    }
    found: dict[str, str] = {}
    for desc in root.iter(f"{{{_NS['rdf']}}}Description"):
        for attr, value in desc.attrib.items():
            if attr in wanted:
                found.setdefault(wanted[attr], value)
        for child in desc:
            if child.tag in wanted and child.text:
                found.setdefault(wanted[child.tag], child.text.strip())
    return found
