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
from typing import Any, Mapping, Sequence

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
    A batch of images: :func:`save_images` (one watermark call for all).

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
    return save_images([(path, rgb, metadata)], provenance=provenance, caller="save_image")[0]


def save_images(items: Sequence[tuple[str | os.PathLike[str], np.ndarray | Image.Image,
                                      Mapping[str, Any] | None]], *,
                provenance: Provenance | None = None, caller: str = "save_images") -> list[SavedImage]:
    """:func:`save_image` for a batch of ``(path, rgb, metadata)``: every path and metadata is
    checked first, the batch is watermarked in one call on ``provenance.device`` (the
    pipeline's), then each file is encoded, signed and written atomically, in order."""
    paths: list[tuple[Path, str]] = []
    for item in items:
        path = Path(item[0])
        fmt = _SAVE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InvalidArgumentError(
                f"cannot save {path}: unsupported suffix {path.suffix or '(none)'!r}; use "
                f"{', '.join(sorted(_SAVE_FORMATS))}")
        if path.is_dir():
            raise InvalidArgumentError(f"cannot save to {path}: it is a directory")
        paths.append((path, fmt))
    prepared = _prepare([it[1] for it in items], [it[2] for it in items], caller, provenance)
    saved = []
    for (path, fmt), (image, meta, payload, software, xmp) in zip(paths, prepared):
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
        saved.append(SavedImage(path, fmt, json.loads(payload)))
    return saved


def _prepare(rgbs: Sequence[np.ndarray | Image.Image], metadatas: Sequence[Mapping[str, Any] | None],
             caller: str, provenance: Provenance | None
             ) -> list[tuple[Image.Image, dict[str, Any], str, str, str]]:
    """Pixels and provenance fields shared by :func:`save_images` and :func:`encode_pngs`: the
    whole batch marked in one :func:`facegen.provenance.mark` call."""
    pixels = []
    for rgb in rgbs:
        if isinstance(rgb, Image.Image):
            pixels.append(pil_to_rgb(rgb, None, None, "<PIL image>", restore_frame=True))
        elif isinstance(rgb, np.ndarray):
            pixels.append(array_to_rgb(rgb, None, "<array>"))
        else:
            raise InvalidArgumentError(
                f"{caller} needs a numpy array or PIL.Image, got {type(rgb).__name__}")
    metas = [check_metadata(m) for m in metadatas]
    software = f"facegen {__version__}"
    out = []
    for marked, meta in mark(pixels, metas, provenance):
        payload = json.dumps(json_safe(meta), ensure_ascii=False, sort_keys=True, default=json_default,
                             allow_nan=False)
        out.append((Image.fromarray(marked), meta, payload, software, build_xmp(software, payload)))
    return out


def encode_png(rgb: np.ndarray | Image.Image, metadata: Mapping[str, Any] | None = None, *,
               provenance: Provenance | None = None, title: str = "image.png") -> bytes:
    """PNG bytes with the same AI-generated provenance :func:`save_image` writes (for
    archive members such as WebDataset shards; ``title`` names it in a C2PA manifest).
    A batch: :func:`encode_pngs`."""
    return encode_pngs([(rgb, metadata, title)], provenance=provenance, caller="encode_png")[0]


def encode_pngs(items: Sequence[tuple[np.ndarray | Image.Image, Mapping[str, Any] | None, str]], *,
                provenance: Provenance | None = None, caller: str = "encode_pngs") -> list[bytes]:
    """:func:`encode_png` for a batch of ``(rgb, metadata, title)``, watermarked in one call."""
    out = []
    for (_, _, title), (image, meta, payload, software, xmp) in zip(
            items, _prepare([it[0] for it in items], [it[1] for it in items], caller, provenance)):
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=png_options(meta, payload, software, xmp))
        out.append(sign_encoded(buf.getvalue(), "PNG", meta, provenance, title=title))
    return out
