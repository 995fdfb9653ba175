"""Models tab: every preset, whether it can run here, and why not (never hidden)."""

from __future__ import annotations

import gradio as gr

from facegen.app.context import AppContext
from facegen.app.presets import preset_infos, status_table

TITLE = "Models"


def build(ctx: AppContext) -> None:
    infos = preset_infos(ctx.access)
    gr.Markdown(
        "Presets whose weights are missing stay listed with the reason. Put the files in the "
        "models folder in the hub layout (`<models-dir>/<owner>/<repo>/<path>`), or run "
        "`facegen doctor` for the full list, then restart the app. `tiny` presets need no download "
        "(random weights: they test the plumbing, they do not draw faces).")
    gr.Markdown(status_table(infos), elem_id="models-table")
    loaded = gr.Markdown(elem_id="models-loaded")
    refresh = gr.Button("Show loaded pipelines", size="sm")

    def _loaded() -> str:
        items = ctx.pipelines.loaded()
        return "Loaded: " + (", ".join(f"{job}/{preset}" for job, preset in items) or "none yet")

    refresh.click(_loaded, outputs=loaded, queue=False, api_visibility="private")
