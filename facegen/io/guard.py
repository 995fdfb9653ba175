"""What may be decoded: the format allowlist, the pixel limit, and the decompression-bomb guard.

The limit is checked on an image's *header* before any pixel is decoded
(:func:`check_pixels`), and Pillow's own bomb checks become :class:`BadImageError` too
(:func:`bomb_guard`), so a few-KB decompression bomb costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from facegen.errors import BadImageError, InvalidArgumentError

#: Pillow format names :func:`load_image` decodes by default (MPO = multi-picture JPEG from
#: phones and cameras; APNG is Pillow's "PNG").
ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})
#: Largest image (width x height) accepted unless the caller or the environment says otherwise.
DEFAULT_MAX_PIXELS = 50_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_ENV = "FACEGEN_MAX_PIXELS"

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "APNG": "PNG"}


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


def normalise_formats(allowed_formats: Iterable[str]) -> frozenset[str]:
    if isinstance(allowed_formats, str):
        allowed_formats = (allowed_formats,)
    out = set()
    for fmt in allowed_formats:
        name = str(fmt).strip().upper().lstrip(".")
        out.add(_FORMAT_ALIASES.get(name, name))
    if not out:
        raise InvalidArgumentError("allowed_formats is empty: no image could be loaded")
    return frozenset(out)


def check_pixels(size: tuple[int, int], max_pixels: int | None, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise BadImageError(f"{name}: the image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise BadImageError(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,} (possible decompression bomb); raise max_pixels or "
            f"{MAX_PIXELS_ENV} if the image is genuine")


@contextlib.contextmanager
def bomb_guard(max_pixels: int | None, name: str) -> Iterator[None]:
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
