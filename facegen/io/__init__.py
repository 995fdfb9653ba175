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

:func:`atomic_write` / :func:`atomic_write_bytes` are the one atomic file writer of facegen
(temporary file beside the target, fsync, ``os.replace``, fsync of the folder).

Every other file (certificates, seals, sidecars, saved arrays, lock files, specs) comes in by
:mod:`facegen.io.files` (regular files only, size caps, no links out, shaped JSON with a depth
cap) and :mod:`facegen.io.arrays` (``.npy``/``.npz`` checked before allocation, bounded zip
inflation).

Modules: ``images`` (load_image, open_regular), ``guard`` (allowlist, pixel limit, bomb
guard), ``pixels`` (colour modes and arrays to RGB), ``metadata`` (the marks: build and
read back), ``save`` (save_image(s), encode_png(s)), ``atomic`` (the writer), ``files`` and
``arrays`` (the safe readers of everything that is not an image), ``location`` (where a
dataset lives: a folder or an fsspec URL, :func:`~facegen.io.location.open_location`) and
``store`` (the object-store side: whole-object writes, retries, the lock object).
"""

from __future__ import annotations

from facegen.io.atomic import atomic_write, atomic_write_bytes
from facegen.io.guard import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, resolve_max_pixels
from facegen.io.images import ImageSource, load_image, open_regular
from facegen.io.metadata import DIGITAL_SOURCE_TYPE, read_metadata
from facegen.io.save import SavedImage, encode_png, encode_pngs, save_image, save_images

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DIGITAL_SOURCE_TYPE",
    "MAX_PIXELS_ENV",
    "ImageSource",
    "atomic_write",
    "atomic_write_bytes",
    "load_image",
    "open_regular",
    "read_metadata",
    "resolve_max_pixels",
    "encode_png",
    "encode_pngs",
    "save_image",
    "save_images",
    "SavedImage",
]
