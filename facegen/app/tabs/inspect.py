"""Inspect tab: the provenance report of an image file (what ``facegen inspect`` prints).

The upload is a plain file, not an image widget: an image widget re-encodes the picture,
which would strip the very C2PA manifest the tab is asked to check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.uploads import MAX_PHOTOS, upload_paths
from facegen.errors import BadImageError, FacegenError, InvalidArgumentError

TITLE = "Inspect"
#: most files one inspection takes (the upload itself is capped by ``--max-images``)
MAX_FILES = MAX_PHOTOS


def inspect(files: Any) -> tuple[str, list[dict[str, Any]]]:
    """Markdown (one verdict and its details per file) and the JSON reports."""
    from facegen.provenance.inspect import inspect_file, summary_lines  # noqa: PLC0415

    paths = upload_paths(files)
    if not paths:
        raise BadImageError("upload an image file to inspect")
    if len(paths) > MAX_FILES:                      # one call may not hold the server for minutes
        raise InvalidArgumentError(f"at most {MAX_FILES} files per inspection, got {len(paths)}")
    blocks, reports = [], []
    for path in paths:
        name = Path(path).name                      # never show the server's folder
        try:
            rep = inspect_file(path)
        except FacegenError as exc:
            raise BadImageError(str(exc).replace(str(path), name)) from None
        rep["file"] = name
        reports.append(rep)
        lines = summary_lines(rep)
        blocks.append(f"**{name}: {rep['verdict']}**\n\n```\n" + "\n".join(lines[1:]) + "\n```")
    return "\n\n".join(blocks), reports


def build(ctx: AppContext) -> None:  # noqa: ARG001 - the tab needs no app state
    gr.Markdown(
        "Check an image for facegen's marks: the C2PA Content Credentials (signed manifest), the "
        "invisible watermark (survives re-encoding, resizing and crops) and the file metadata. "
        "Upload the file itself (a screenshot or a re-saved copy keeps only the watermark).")
    with gr.Row():
        with gr.Column():
            files = gr.File(label="Image file(s)", file_count="multiple", file_types=["image"],
                            elem_id="inspect-files")
            run = gr.Button("Inspect", variant="primary", elem_id="inspect-run")
        with gr.Column():
            report = gr.Markdown(elem_id="inspect-report")
            details = gr.JSON(label="Details", elem_id="inspect-details")

    @user_errors
    def _inspect(files_v: Any) -> tuple[str, list[dict[str, Any]]]:
        return inspect(files_v)

    run.click(_inspect, inputs=[files], outputs=[report, details], api_name="inspect")
