"""Assemble the demo: a header, then one tab per available job (see :mod:`facegen.app.tabs`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from facegen import __version__
from facegen.app.context import AppContext, prepare_work_dir
from facegen.models.registry import get_preset
from facegen.paths import DEFAULT_ACCESS, ModelAccess

logger = logging.getLogger(__name__)

HEADER = """# facegen {version}
Generate new photos of a person from their photo, and more, with face-identity–conditioned
diffusion models. Every image the app writes is marked **AI-generated** in its file metadata
(with the model and seed). Use photos of yourself, or of people who agreed."""


def _preload(ctx: AppContext) -> None:
    """Load the default preset's generation pipeline in the background (first click faster)."""
    from facegen.app.tabs.generate import load_pipeline

    try:
        load_pipeline(ctx, ctx.model)
    except Exception as exc:  # noqa: BLE001 - the page reports it when the preset is used
        logger.warning("preloading preset '%s' failed: %s", ctx.model, exc)


def build_blocks(model: str = "tiny", access: ModelAccess = DEFAULT_ACCESS, *, work_dir: Path | None = None,
                 preload: bool = False, max_images: int = 8):
    """Build the (not yet launched) ``gr.Blocks`` app.

    model: preset selected when the page opens (checked against the registry).
    access: the models folder, the licence acceptance and the device every tab loads with.
    work_dir: the app's own temporary folder (uploads, results, Gradio's cache); a fresh
        private one by default, removed at exit.
    preload: load ``model``'s generation pipeline in a background thread now.
    """
    get_preset(model)                                      # an unknown preset fails here
    root = prepare_work_dir(work_dir)                      # before any gr.Blocks exists
    import gradio as gr

    from facegen.app.tabs import available_tabs

    ctx = AppContext(model=model, work_dir=root, access=access, max_images=max_images)
    tabs = available_tabs()
    logger.info("web demo tabs: %s", ", ".join(t.title for t in tabs))
    with gr.Blocks(title="facegen", analytics_enabled=False,
                   delete_cache=(1800, 7200)) as demo:
        gr.Markdown(HEADER.format(version=__version__), elem_id="header")
        with gr.Tabs():
            for spec in tabs:
                with gr.Tab(spec.title, id=spec.key, elem_id=f"tab-{spec.key}"):
                    spec.load().build(ctx)
    demo.facegen_context = ctx  # type: ignore[attr-defined]  # for tests and launch()
    if preload and any(t.key == "generate" for t in tabs):
        threading.Thread(target=_preload, args=(ctx,), name="facegen-preload", daemon=True).start()
    return demo
