"""The Gradio web demo: every available job on one's own photos, in one app.

A thin layer over the Python API (the same calls the CLI makes). Each job is a tab in
its own module under :mod:`facegen.app.tabs`; a tab is shown only when the pipeline it
needs is installed (see :data:`facegen.app.tabs.TABS`).

Importing this package does not import gradio; :func:`build_app` and :func:`launch_app` do,
and raise :class:`~facegen.errors.MissingDependencyError` (``pip install 'facegen[app]'``)
when it is absent.

    from facegen.app import build_app, launch_app
    demo = build_app(model="tiny")
    launch_app(demo)                      # http://127.0.0.1:7860, one job at a time
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegen.errors import MissingDependencyError
from facegen.paths import DEFAULT_ACCESS, ModelAccess

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

__all__ = ["build_app", "launch_app", "require_gradio"]


def require_gradio() -> None:
    """Raise MissingDependencyError naming the ``app`` extra when gradio cannot be imported."""
    import importlib

    try:
        importlib.import_module("gradio")
    except ImportError:
        raise MissingDependencyError("gradio", "app", "the web demo") from None


def build_app(model: str = "tiny", access: ModelAccess = DEFAULT_ACCESS, *,
              work_dir: str | os.PathLike[str] | None = None, preload: bool = False,
              max_images: int = 8) -> gr.Blocks:
    """Build the demo (not launched). See :func:`facegen.app.blocks.build_blocks`."""
    require_gradio()
    from facegen.app.blocks import build_blocks

    return build_blocks(model=model, access=access, work_dir=Path(work_dir) if work_dir else None,
                        preload=preload, max_images=max_images)


def launch_app(app: gr.Blocks, **kwargs: Any) -> Any:
    """Launch with the hardened defaults of :func:`facegen.app.server.launch`."""
    require_gradio()
    from facegen.app.server import launch

    return launch(app, **kwargs)
