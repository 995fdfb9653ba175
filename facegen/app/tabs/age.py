"""Age tab: the same person at a target age.

Calls :class:`facegen.pipelines.aging.FaceAgingPipeline` (as ``facegen age`` does); needs
the consent box. Aging is told the age in words, so only presets whose adapter takes text
are offered (FaceID family; ``tiny-faceid`` offline): Arc2Face has no text input. No age
model is bundled, so the current age is asked for.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from facegen.choices import AGE, GENDER
from facegen.adapters.registry import presets_that
from facegen import limits
from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.jobs import require_consent, run_job
from facegen.app.presets import PresetInfo, editable, preset_infos, takes_prompt
from facegen.app.results import ui_outputs
from facegen.app.uploads import read_photos
from facegen.app.values import int_value, run_seeds
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
from facegen.errors import InvalidArgumentError
from facegen.pipelines.aging import FaceAgingPipeline

TITLE = "Age"
JOB = "age"
PIPELINE = FaceAgingPipeline
MIN_AGE, MAX_AGE = int(AGE.lo), int(AGE.hi)


def age(ctx: AppContext, infos: list[PresetInfo], photo: Any, preset: Any, target_age: Any, from_age: Any,
        gender: Any, consent: Any, seed: Any, steps: Any, progress: Any = None) -> tuple[Any, ...]:
    """One Age request: the photo with its face redrawn at ``target_age``."""
    name = preset_of(preset, infos)
    require_consent(consent, "aging")
    ages = []
    for label, value in (("target age", target_age), ("current age", from_age)):
        if value is None:
            raise InvalidArgumentError(f"{label} must be between {MIN_AGE} and {MAX_AGE}, got {value}")
        ages.append(int_value(label, value, MIN_AGE, MAX_AGE))
    GENDER.check(gender, "'describe as'")
    seed_v = run_seeds(seed, 1)[0]
    steps_v = int_value("steps", steps, 0, limits.max_steps()) or None
    images = read_photos(photo, what="photo", max_photos=1)
    kwargs = {"image": images[0], "target_age": ages[0], "from_age": ages[1], "gender": gender,
              "consent": bool(consent), "seed": seed_v, "num_inference_steps": steps_v}
    return ui_outputs(run_job(ctx, JOB, PIPELINE, name, kwargs, progress), "the input photo")


def build(ctx: AppContext) -> None:
    infos = [i for i in preset_infos(ctx.access)
             if editable(i.name) and takes_prompt(i.name)]
    with gr.Row():
        with gr.Column():
            photo = photo_input("Photo", "age-photo")
            add_examples(photo)
            with gr.Row():
                from_age = CheckedSlider(MIN_AGE, MAX_AGE, value=30, step=1, label="Age in the photo",
                                     elem_id="age-from")
                target_age = CheckedSlider(MIN_AGE, MAX_AGE, value=70, step=1, label="Target age",
                                       elem_id="age-target")
            gender = gr.Radio(list(GENDER.values), value=GENDER.default, label="Describe as (for the age prompt)")
            picker = model_picker(ctx, infos, "age-model")
            gr.Markdown("Aging needs a preset that takes text: "
                        + ", ".join(presets_that(lambda a: a.supports_prompt)) + ".")
            consent = consent_box("age-consent")
            with gr.Accordion("Advanced", open=False):
                seed = seed_input()
                steps = steps_input()
            run = gr.Button("Age", variant="primary", elem_id="age-run")
        with gr.Column():
            res = result_outputs("age")

    @user_errors
    def _age(photo_v: Any, preset_v: Any, target_v: Any, from_v: Any, gender_v: Any, consent_v: Any,
             seed_v: Any, steps_v: Any, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return age(ctx, infos, photo_v, preset_v, target_v, from_v, gender_v, consent_v, seed_v, steps_v,
                   progress)

    run.click(_age, inputs=[photo, picker.dropdown, target_age, from_age, gender, consent, seed, steps],
              outputs=res.job_outputs, api_name="age", concurrency_limit=1, concurrency_id="gpu")
