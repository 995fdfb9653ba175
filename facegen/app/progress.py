"""Tie Gradio's progress bar to the denoising steps a pipeline reports."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class StepProgress:
    """The ``callback(done_steps, total_steps)`` facegen pipelines call after every
    denoising step, moving a ``gr.Progress`` bar ("3/8 steps"). An edit job that runs
    several passes restarts the count for each pass.

    progress: a ``gr.Progress`` (or None: nothing is shown).
    """

    def __init__(self, progress: Any, desc: str = "denoising") -> None:
        self.progress = progress
        self.desc = desc

    def start(self, desc: str = "loading the model") -> None:
        """Show the bar before the first step (model loading, face detection, ...)."""
        self._show(None, desc)

    def __call__(self, done: int, total: int) -> None:
        self._show((int(done), int(total)) if total else None, self.desc)

    def _show(self, value: tuple[int, int] | None, desc: str) -> None:
        if self.progress is None:
            return
        try:
            self.progress(value, desc=desc, unit="steps")
        except Exception as exc:  # noqa: BLE001 - a progress bar never fails a job
            logger.debug("progress update failed: %s", exc)
