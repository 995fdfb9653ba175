"""Swap tab: the identity of the source photo(s) onto the face in a target photo.

Calls :class:`facegen.pipelines.swap.FaceSwapPipeline` (as ``facegen swap`` does); needs
the consent box, like ``--consent``. Only the face region of the target changes. InstantID
presets are not offered (the swap pipeline has no inpainting path for them yet).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from facegen.choices import FACE, SWAP_STRENGTH
from facegen import limits
from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.jobs import require_consent, run_job
from facegen.app.presets import PresetInfo, editable, preset_infos
from facegen.app.results import ui_outputs
from facegen.app.uploads import read_photos
from facegen.app.values import float_value, int_value, run_seeds
from facegen.app.widgets import (
    CheckedSlider,
    add_examples,
    consent_box,
    model_picker,
    photo_input,
    preset_of,
    result_outputs,
    seed_input,
    steps_input,
)
from facegen.pipelines.swap import FaceSwapPipeline

TITLE = "Swap"
JOB = "swap"
PIPELINE = FaceSwapPipeline


def swap(ctx: AppContext, infos: list[PresetInfo], source: Any, target: Any, preset: Any, consent: Any,
         target_face: Any, seed: Any, strength: Any, steps: Any, progress: Any = None) -> tuple[Any, ...]:
    """One Swap request: the source identity onto the target's face(s); same size as the target."""
    name = preset_of(preset, infos)
    require_consent(consent, "face swap")
    FACE.check(target_face, "faces to replace")
    seed_v = run_seeds(seed, 1)[0]
    strength_v = float_value("strength", strength, SWAP_STRENGTH.lo, SWAP_STRENGTH.hi, default=SWAP_STRENGTH.default,
                             lo_open=SWAP_STRENGTH.lo_open)
    steps_v = int_value("steps", steps, 0, limits.max_steps()) or None
    sources = read_photos(source, what="source photo", max_photos=1)
    targets = read_photos(target, what="target photo", max_photos=1)
    kwargs = {"source": sources, "target": targets[0], "consent": bool(consent), "target_face": target_face,
              "seed": seed_v, "strength": strength_v, "num_inference_steps": steps_v}
    return ui_outputs(run_job(ctx, JOB, PIPELINE, name, kwargs, progress), "the source photo")


def build(ctx: AppContext) -> None:
    infos = [i for i in preset_infos(ctx.access) if editable(i.name)]
    with gr.Row():
        with gr.Column():
            source = photo_input("Source: a photo of the person to put in", "swap-source")
            add_examples(source, "Example source photo")
            target = photo_input("Target: the photo whose face is replaced", "swap-target")
            picker = model_picker(ctx, infos, "swap-model")
            consent = consent_box("swap-consent")
            target_face = gr.Radio(list(FACE.values), value=FACE.default, label="Faces to replace in the target")
            with gr.Accordion("Advanced", open=False):
                seed = seed_input()
                strength = CheckedSlider(0.1, SWAP_STRENGTH.hi, value=SWAP_STRENGTH.default, step=0.05,
                                     label="Strength (how much of the face is redrawn)")
                steps = steps_input()
            run = gr.Button("Swap", variant="primary", elem_id="swap-run")
            from facegen.app.video import add_swap_video  # noqa: PLC0415 - the video part of the tab
            add_swap_video(ctx, infos, source, picker.dropdown, consent, target_face, seed, strength, steps)
        with gr.Column():
            res = result_outputs("swap")

    @user_errors
    def _swap(source_v: Any, target_v: Any, preset_v: Any, consent_v: Any, faces_v: Any, seed_v: Any,
              strength_v: Any, steps_v: Any, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return swap(ctx, infos, source_v, target_v, preset_v, consent_v, faces_v, seed_v, strength_v, steps_v,
                    progress)

    run.click(_swap, inputs=[source, target, picker.dropdown, consent, target_face, seed, strength, steps],
              outputs=res.job_outputs, api_name="swap",
              concurrency_limit=1, concurrency_id="gpu")
