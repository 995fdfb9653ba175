"""Restore tab: a degraded face (blur, noise, JPEG, low resolution) restored.

Calls :class:`facegen.pipelines.restoration.FaceRestorationPipeline` (as ``facegen
restore`` does); it edits a real person's face, so it needs the consent box like the other
edits. The identity comes from the optional reference photo of the same person, else from
the input itself; strength 0 lets the pipeline adapt it to the damage.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

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
from facegen.pipelines.restoration import FaceRestorationPipeline

TITLE = "Restore"
JOB = "restore"
PIPELINE = FaceRestorationPipeline


def restore(ctx: AppContext, infos: list[PresetInfo], photo: Any, reference: Any, preset: Any, consent: Any,
            seed: Any, strength: Any, steps: Any, progress: Any = None) -> tuple[Any, ...]:
    """One Restore request: the photo with its face restored; same size as the input."""
    name = preset_of(preset, infos)
    require_consent(consent, "restoration")
    seed_v = run_seeds(seed, 1)[0]
    strength_v = float_value("strength", strength, 0.0, 1.0) or None     # 0 = adapted to the photo
    steps_v = int_value("steps", steps, 0, limits.max_steps()) or None
    images = read_photos(photo, what="photo to restore", max_photos=1)
    refs = read_photos(reference, what="reference photo", required=False, max_photos=1)
    kwargs = {"image": images[0], "reference": refs[0] if refs else None, "consent": bool(consent),
              "seed": seed_v, "strength": strength_v, "num_inference_steps": steps_v}
    ref = "the reference photo" if refs else "the input photo"
    return ui_outputs(run_job(ctx, JOB, PIPELINE, name, kwargs, progress), ref)


def build(ctx: AppContext) -> None:
    infos = [i for i in preset_infos(ctx.access) if editable(i.name)]
    with gr.Row():
        with gr.Column():
            photo = photo_input("Degraded photo", "restore-photo")
            add_examples(photo)
            reference = photo_input("Reference photo of the same person (optional)", "restore-reference")
            picker = model_picker(ctx, infos, "restore-model")
            consent = consent_box("restore-consent")
            with gr.Accordion("Advanced", open=False):
                seed = seed_input()
                strength = CheckedSlider(0.0, 1.0, value=0.0, step=0.05, label="Strength (0 = adapt to the damage)")
                steps = steps_input()
            run = gr.Button("Restore", variant="primary", elem_id="restore-run")
            from facegen.app.video import add_restore_video  # noqa: PLC0415 - the video part of the tab
            add_restore_video(ctx, infos, reference, picker.dropdown, consent, seed, strength, steps)
        with gr.Column():
            res = result_outputs("restore")

    @user_errors
    def _restore(photo_v: Any, ref_v: Any, preset_v: Any, consent_v: Any, seed_v: Any, strength_v: Any,
                 steps_v: Any, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return restore(ctx, infos, photo_v, ref_v, preset_v, consent_v, seed_v, strength_v, steps_v, progress)

    run.click(_restore, inputs=[photo, reference, picker.dropdown, consent, seed, strength, steps],
              outputs=res.job_outputs, api_name="restore", concurrency_limit=1, concurrency_id="gpu")
