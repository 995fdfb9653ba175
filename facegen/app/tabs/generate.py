"""Generate tab: photo(s) of a person → new images of that person.

Calls :class:`facegen.pipelines.generation.IDGenerationPipeline`, the same API as
``facegen generate``. The prompt box shows only for presets that take text (not the
Arc2Face family); seed, number of images, steps, guidance and adapter scales sit under
"Advanced". Each result is captioned with its seed, its ID similarity to the reference
and the preset; "Reuse this seed" puts the selected result's seed back in the form.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from facegen import limits
from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.jobs import GENERATION, load_job_pipeline, run_job
from facegen.app.presets import PresetInfo, preset_infos, takes_negative_prompt, takes_prompt
from facegen.app.results import ui_outputs
from facegen.app.uploads import read_photos
from facegen.app.values import float_value, int_value, run_seeds, text_value
from facegen.app.widgets import (
    CheckedSlider,
    add_examples,
    default_preset,
    model_picker,
    photo_input,
    preset_of,
    result_outputs,
    seed_input,
)
from facegen.models.registry import get_preset

logger = logging.getLogger(__name__)

TITLE = "Generate"
JOB = "generate"
PIPELINE = GENERATION


def load_pipeline(ctx: AppContext, preset: str) -> Any:
    """The generation pipeline of ``preset``, loaded once per app (thread-safe)."""
    return load_job_pipeline(ctx, JOB, PIPELINE, preset)


def generate(ctx: AppContext, infos: list[PresetInfo], photos: Any, preset: Any, prompt: str | None,
             negative_prompt: str | None, num_images: Any, seed: Any, steps: Any, guidance: Any,
             adapter_scale: Any, controlnet_scale: Any, progress: Any = None
             ) -> tuple[list[tuple[str, str]], list[str], str, list[dict[str, Any]], list[int], int]:
    """One Generate request: check, read the photos, run the pipeline, write PNGs."""
    # every value checked before any photo is decoded or model loaded
    prompt, negative_prompt = text_value("prompt", prompt), text_value("negative prompt", negative_prompt)
    name = preset_of(preset, infos)
    p = get_preset(name)
    n = int_value("number of images", num_images, 1, ctx.max_images, default=1)
    seeds = run_seeds(seed, n)
    steps_v = int_value("steps", steps, 0, limits.max_steps()) or None
    guidance_v = float_value("guidance scale", guidance, 0.0, limits.MAX_GUIDANCE)
    adapter_v = float_value("ID adapter scale", adapter_scale, 0.0, 5.0)
    control_v = float_value("ControlNet scale", controlnet_scale, 0.0, 5.0)
    id_images = read_photos(photos, what="photo of a person")
    kwargs: dict[str, Any] = {
        "id_images": id_images, "num_images": n, "seeds": seeds,
        "num_inference_steps": steps_v, "guidance_scale": guidance_v,
    }
    if takes_prompt(p):
        kwargs["prompt"] = prompt
    if takes_negative_prompt(p):
        kwargs["negative_prompt"] = negative_prompt
    if p.defaults.adapter_scale is not None and adapter_v is not None:
        kwargs["adapter_scale"] = adapter_v
    if p.defaults.controlnet_scale is not None and control_v is not None:
        kwargs["controlnet_scale"] = control_v
    results = run_job(ctx, JOB, PIPELINE, name, kwargs, progress)
    return (*ui_outputs(results), [r.seed for r in results], 0)


def preset_updates(name: str) -> tuple[Any, ...]:
    """Show/hide and reset the fields that depend on the preset."""
    p = get_preset(name)
    d = p.defaults
    text = takes_prompt(p)
    return (
        gr.update(visible=text, value=d.prompt or ""),
        gr.update(visible=takes_negative_prompt(p), value=d.negative_prompt or ""),
        gr.update(value=d.steps),
        gr.update(value=d.guidance),
        gr.update(visible=d.adapter_scale is not None, value=d.adapter_scale or 1.0),
        gr.update(visible=d.controlnet_scale is not None, value=d.controlnet_scale or 0.8),
    )


def build(ctx: AppContext) -> None:
    infos = preset_infos(ctx.access)
    first = default_preset(ctx, infos) or ctx.model
    d = get_preset(first).defaults
    text = takes_prompt(first)
    with gr.Row():
        with gr.Column(scale=1):
            photos = photo_input("Photo(s) of one person", "gen-photos")
            add_examples(photos)
            picker = model_picker(ctx, infos, "gen-model")
            prompt = gr.Textbox(label="Prompt", value=d.prompt or "", lines=2, visible=text, elem_id="gen-prompt")
            num_images = CheckedSlider(1, ctx.max_images, value=min(2, ctx.max_images), step=1,
                                   label="Number of images", elem_id="gen-num")
            with gr.Accordion("Advanced", open=False) as advanced:
                seed = seed_input("gen-seed")
                negative = gr.Textbox(label="Negative prompt", lines=2, visible=takes_negative_prompt(first),
                                      value=d.negative_prompt or "")
                steps = CheckedSlider(1, 100, value=d.steps, step=1, label="Steps")
                guidance = CheckedSlider(0.0, 20.0, value=d.guidance, step=0.1, label="Guidance scale")
                adapter = CheckedSlider(0.0, 2.0, step=0.05, label="ID adapter scale", value=d.adapter_scale or 1.0,
                                    visible=d.adapter_scale is not None)
                control = CheckedSlider(0.0, 2.0, step=0.05, label="ControlNet scale (the keypoint network's strength)",
                                    value=d.controlnet_scale or 0.8, visible=d.controlnet_scale is not None)
            run = gr.Button("Generate", variant="primary", elem_id="gen-run")
        with gr.Column(scale=1):
            res = result_outputs("gen", reuse_seed=True)
            gallery, picked, reuse = res.gallery, res.picked, res.reuse
    seeds_state = gr.State([])
    selected_state = gr.State(0)

    picker.dropdown.change(preset_updates, inputs=picker.dropdown,
                           outputs=[prompt, negative, steps, guidance, adapter, control],
                           queue=False, api_visibility="private")

    @user_errors
    def _generate(photos_v: Any, preset_v: Any, prompt_v: str, negative_v: str, n_v: Any, seed_v: Any,
                  steps_v: Any, guidance_v: Any, adapter_v: Any, control_v: Any,
                  progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return generate(ctx, infos, photos_v, preset_v, prompt_v, negative_v, n_v, seed_v, steps_v,
                        guidance_v, adapter_v, control_v, progress=progress)

    run.click(_generate,
              inputs=[photos, picker.dropdown, prompt, negative, num_images, seed, steps, guidance,
                      adapter, control],
              outputs=[*res.job_outputs, seeds_state, selected_state],
              api_name="generate", concurrency_limit=1, concurrency_id="gpu")

    def _select(seeds: list[int], evt: gr.SelectData) -> tuple[int, str]:
        i = int(evt.index) if isinstance(evt.index, int) else 0
        seed_txt = seeds[i] if 0 <= i < len(seeds) else "?"
        return i, f"Selected result {i} (seed {seed_txt})."

    gallery.select(_select, inputs=seeds_state, outputs=[selected_state, picked], queue=False,
                   api_visibility="private")

    def _reuse(seeds: list[int], index: int) -> tuple[Any, Any, str, Any]:
        if not seeds:
            raise gr.Error("generate something first, then pick the result whose seed you want",
                           duration=8, print_exception=False)
        i = index if 0 <= index < len(seeds) else 0
        return (gr.update(value=seeds[i]), gr.update(value=1),
                f"Seed {seeds[i]} of result {i} is in Advanced → Seed; Generate makes it again.",
                gr.update(open=True))

    reuse.click(_reuse, inputs=[seeds_state, selected_state], outputs=[seed, num_images, picked, advanced],
                queue=False, api_visibility="private")

    from facegen.app.people import build_people_mode   # the "Several people" mode (facegen/app/people.py)
    build_people_mode(ctx, infos)
