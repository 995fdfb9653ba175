"""Say which photo an error is about (source, target, reference, input) in the edit jobs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from facegen.errors import NoFaceError


@contextlib.contextmanager
def about_photo(role: str, src: Any) -> Iterator[None]:
    """Prefix a :class:`NoFaceError` raised inside with ``"<role> photo <path>: "`` (an outer
    role replaces an inner one: a swap's source is embedded as a generation "reference")."""
    try:
        yield
    except NoFaceError as exc:
        name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
        prefix = f"{role} photo {name}" if name else f"{role} photo"
        msg = getattr(exc, "bare_message", str(exc))
        if name and msg.startswith(name):
            msg = msg[len(name):].lstrip(": ")
        new = type(exc)(f"{prefix}: {msg}")
        new.bare_message = msg  # type: ignore[attr-defined]
        raise new from None
