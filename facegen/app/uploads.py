"""Read uploaded photos through facegen's hardened loader, naming files by their own name.

Gradio has already stored the upload in the app's temporary folder (size-capped by
``max_file_size``); pixels are decoded only here, by :func:`facegen.io.load_image`
(format allowlist, pixel budget checked before decoding, EXIF-upright).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import BadImageError, InvalidArgumentError
from facegen.io import load_image

logger = logging.getLogger(__name__)

#: most reference photos accepted in one request
MAX_PHOTOS = 8


def _path_of(item: Any) -> str | None:
    """A file path from what Gradio passes: a str, a (path, caption) tuple, or a dict."""
    if item is None:
        return None
    if isinstance(item, (str, Path)):
        return str(item)
    if isinstance(item, (tuple, list)) and item:
        return _path_of(item[0])
    if isinstance(item, dict):
        return _path_of(item.get("path") or item.get("name") or item.get("image"))
    path = getattr(item, "path", None) or getattr(item, "name", None)
    return str(path) if path else None


def upload_paths(value: Any) -> list[str]:
    """The file paths in a Gallery / File value: ``None``, one path, or a list of paths or
    ``(path, caption)`` pairs."""
    if value is None:
        return []
    items = [value] if isinstance(value, (str, Path, dict)) else list(value)
    return [p for p in (_path_of(i) for i in items) if p]


def read_photo(path: str) -> np.ndarray:
    """Decode one uploaded photo; errors name the file, never the server's folder."""
    name = Path(path).name
    try:
        return load_image(path)
    except BadImageError as exc:
        raise BadImageError(str(exc).replace(str(path), name)) from None


def read_photos(value: Any, what: str = "photo", required: bool = True,
                max_photos: int = MAX_PHOTOS) -> list[np.ndarray]:
    """Decode every uploaded photo of ``value``; refuse none (when required) or too many."""
    paths = upload_paths(value)
    if not paths:
        if required:
            raise InvalidArgumentError(f"upload a {what} first")
        return []
    if len(paths) > max_photos:
        raise InvalidArgumentError(f"at most {max_photos} {what}s at a time, got {len(paths)}")
    return [read_photo(p) for p in paths]
