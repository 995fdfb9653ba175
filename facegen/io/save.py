"""Image output: the one door every image leaves by, marked as AI-generated.

:func:`save_image` writes PNG (or JPEG/WebP by suffix) atomically (:mod:`facegen.io.atomic`);
:func:`encode_png` gives the same PNG as bytes (archive members). Both carry the metadata of
:mod:`facegen.io.metadata` and apply :mod:`facegen.provenance`: the invisible watermark in the
pixels, its ``provenance`` block in the metadata, and a signed C2PA manifest.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from facegen import __version__
from facegen.errors import InvalidArgumentError
from facegen.io.atomic import atomic_write_bytes
from facegen.io.images import pil_to_rgb
from facegen.io.metadata import build_xmp, check_metadata, exif_bytes, json_default, png_options
from facegen.io.pixels import array_to_rgb
from facegen.limits import json_safe
from facegen.provenance import Provenance, mark, sign_encoded

logger = logging.getLogger(__name__)

_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


@dataclass(frozen=True)
class SavedImage:
    """What :func:`save_image` wrote: the file, its format and the ``facegen`` metadata it
    carries (the ``provenance`` block of the marks made included) — what a reader of the file
    would get back, without reading it.  Usable wherever a path is (``os.fspath``)."""

    path: Path
    format: str
    metadata: dict[str, Any]

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)


def save_image(path: str | os.PathLike[str], rgb: np.ndarray | Image.Image,
               metadata: Mapping[str, Any] | None = None, *,
               provenance: Provenance | None = None) -> SavedImage:
    """Write ``rgb`` to ``path`` atomically, marked as AI-generated; return what was written
    (:class:`SavedImage`: the path, the format, the metadata stored with its provenance block).

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
        options: dict[str, Any] = {"pnginfo": png_options(meta, payload, software, xmp)}
    else:
        options = {"quality": 95, "exif": exif_bytes(software, payload),
                   "xmp": xmp.encode("utf-8")}

    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **options)
    except ValueError as exc:  # e.g. "EXIF data is too long" for JPEG segments
        raise InvalidArgumentError(
            f"cannot save {path.name} as {fmt}: {exc}; metadata this large needs PNG"
        ) from exc
    data = sign_encoded(buf.getvalue(), fmt, meta, provenance, title=path.name)
    atomic_write_bytes(path, data)
    logger.debug("saved %s (%s, %dx%d) with provenance metadata", path, fmt,
                 image.width, image.height)
    return SavedImage(path, fmt, json.loads(payload))


def _prepare(rgb: np.ndarray | Image.Image, metadata: Mapping[str, Any] | None,
             caller: str, provenance: Provenance | None
             ) -> tuple[Image.Image, dict[str, Any], str, str, str]:
    """Pixels and provenance fields shared by :func:`save_image` and :func:`encode_png`."""
    if isinstance(rgb, Image.Image):
        pixels = pil_to_rgb(rgb, None, None, "<PIL image>", restore_frame=True)
    elif isinstance(rgb, np.ndarray):
        pixels = array_to_rgb(rgb, None, "<array>")
    else:
        raise InvalidArgumentError(
            f"{caller} needs a numpy array or PIL.Image, got {type(rgb).__name__}")
    pixels, meta = mark(pixels, check_metadata(metadata), provenance)
    payload = json.dumps(json_safe(meta), ensure_ascii=False, sort_keys=True, default=json_default,
                         allow_nan=False)
    software = f"facegen {__version__}"
    return Image.fromarray(pixels), meta, payload, software, build_xmp(software, payload)


def encode_png(rgb: np.ndarray | Image.Image, metadata: Mapping[str, Any] | None = None, *,
               provenance: Provenance | None = None, title: str = "image.png") -> bytes:
    """PNG bytes with the same AI-generated provenance :func:`save_image` writes (for
    archive members such as WebDataset shards; ``title`` names it in a C2PA manifest)."""
    image, meta, payload, software, xmp = _prepare(rgb, metadata, "encode_png", provenance)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_options(meta, payload, software, xmp))
    return sign_encoded(buf.getvalue(), "PNG", meta, provenance, title=title)
