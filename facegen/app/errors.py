"""Turn exceptions into short messages in the page, never a traceback.

A :class:`~facegen.errors.FacegenError` (no face, bad file, missing consent, missing
weights, ...) becomes ``gr.Error(<its message>)``; anything else is logged with its
traceback on the server and shown as a one-line "internal error".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from facegen.errors import FacegenError, ModelNotFoundError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: seconds an error toast stays up (None = until closed)
ERROR_DURATION: float | None = 15


def user_message(exc: BaseException) -> str:
    """The one line a user sees for ``exc`` (missing weights: a count and one example, the
    full list is in the Models tab and ``facegen doctor``)."""
    if isinstance(exc, ModelNotFoundError) and len(exc.files) > 2:
        where = f" in {exc.folder}" if exc.folder else ""
        return (f"{exc.what}: {len(exc.files)} model files not found{where} (e.g. {exc.files[0]}); "
                "see the Models tab or run `facegen doctor`")
    if isinstance(exc, FacegenError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"internal error ({type(exc).__name__}); the details are in the server log"


def as_ui_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if not isinstance(exc, FacegenError):
        logger.exception("internal failure in a web demo request", exc_info=exc)
    return gr.Error(user_message(exc), duration=ERROR_DURATION, print_exception=False)


def user_errors(fn: F) -> F:
    """Decorator for event handlers: every exception leaves as a short ``gr.Error``."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - the UI boundary
            raise as_ui_error(exc) from None
    return wrapper  # type: ignore[return-value]
