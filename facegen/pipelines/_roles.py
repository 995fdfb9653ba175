"""Say which photo an error is about (source, target, reference, input) in the edit jobs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from facegen.errors import NoFaceError


@contextlib.contextmanager
def about_photo(role: str, src: Any) -> Iterator[None]:
    """Prefix a :class:`NoFaceError` raised inside with ``"<role> photo <path>: "``."""
    try:
        yield
    except NoFaceError as exc:
        name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
        prefix = f"{role} photo {name}" if name else f"{role} photo"
        msg = str(exc)
        if msg.startswith(prefix):
            raise
        if name and msg.startswith(name):
            msg = msg[len(name):].lstrip(": ")
        raise type(exc)(f"{prefix}: {msg}") from None
