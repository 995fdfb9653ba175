"""The Generate tab's "Several people" mode: one upload per person, the layout shown as boxes.

Calls the same API as ``facegen generate --people``:
``IDGenerationPipeline(people=[photos of person 1, photos of person 2, ...], layout=...)``.
Only presets whose adapter places several people (``max_people``) are offered; the result
table says, per image and person, whether their face was found in their box, its ID
similarity and its similarity to the others.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import numpy as np

from facegen.adapters.registry import adapter_class
from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.jobs import GENERATION, load_job_pipeline
from facegen.app.presets import PresetInfo, takes_prompt
from facegen.app.progress import StepProgress
from facegen.app.results import save_results, ui_outputs
from facegen.app.uploads import read_photos, upload_paths
from facegen.app.values import text_value
from facegen.app.widgets import model_picker, photo_input, preset_of, result_outputs, seed_input
from facegen.choices import PEOPLE_LAYOUT
from facegen.errors import InvalidArgumentError
from facegen.models.registry import get_preset

logger = logging.getLogger(__name__)

SLOTS = 3                     # upload areas shown (the handlers below take exactly this many)
JOB = "generate"
BOX_COLOURS = ((230, 60, 60), (60, 120, 230), (60, 180, 90), (220, 170, 40))


def people_infos(infos: list[PresetInfo]) -> list[PresetInfo]:
    """The presets whose adapter places at least two people in one image."""
    return [i for i in infos if adapter_class(get_preset(i.name).family).max_people >= 2]


def layout_preview(layout: Any, n: int, preset: Any = None) -> np.ndarray:
    """The layout's face boxes drawn on a blank frame of the preset's aspect ratio, numbered."""
    from PIL import Image, ImageDraw

    from facegen.pipelines.people import parse_layout

    d = get_preset(preset).defaults if isinstance(preset, str) and preset else None
    w, h = (256, round(256 * d.height / d.width)) if d else (256, 256)
    boxes = parse_layout(text_value("layout", layout) or None, max(n, 2))
    img = Image.new("RGB", (w, h), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        colour = BOX_COLOURS[k % len(BOX_COLOURS)]
        draw.rectangle([x0 * w, y0 * h, x1 * w, y1 * h], outline=colour, width=3)
        draw.text((x0 * w + 4, y0 * h + 2), str(k + 1), fill=colour)
    return np.asarray(img)


def people_markdown(people: list[list[Any]] | None) -> str:
    """Per image and person: face found in their box, ID similarity, similarity to the others."""
    if not people:
        return ""
    rows = ["| image | person | face in its box | ID similarity | most similar other |", "|---|---|---|---|---|"]

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"
    for i, reports in enumerate(people):
        for r in reports:
            found = {True: "yes", False: "no", None: "not measured"}[r.found]
            rows.append(f"| {i} | person {r.index + 1} | {found} | {num(r.id_similarity)} | {num(r.cross_similarity)} |")
    return "\n".join(rows)


def generate_people(ctx: AppContext, infos: list[PresetInfo], slots: list[Any], preset: Any, layout: Any,
                    prompt: Any, seed: Any, progress: Any = None) -> tuple[Any, ...]:
    """One "Several people" request: check, read each person's photos, run, write PNGs."""
    from facegen.app.values import run_seeds

    name = preset_of(preset, infos)
    prompt = text_value("prompt", prompt)
    filled = [s for s in slots if upload_paths(s)]
    if len(filled) < 2:
        raise InvalidArgumentError("upload photos of at least two people (one upload area per person)")
    layout_v = text_value("layout", layout) or None
    from facegen.pipelines.people import parse_layout
    parse_layout(layout_v, len(filled))                       # a bad layout fails before any photo is read
    people = [read_photos(s, what=f"photo of person {k + 1}") for k, s in enumerate(filled)]
    kwargs: dict[str, Any] = {"people": people, "layout": layout_v,
                              "seeds": run_seeds(seed, 1)}
    if takes_prompt(name) and prompt:
        kwargs["prompt"] = prompt
    reporter = StepProgress(progress, desc="several people")
    reporter.start()
    pipe = load_job_pipeline(ctx, JOB, GENERATION, name)
    with ctx.gpu_lock:
        out = pipe(**kwargs, progress=False, callback=reporter)
    results = save_results(out.images, ctx.new_output_dir("people"), job="people", preset=out.preset,
                           seeds=out.seeds, similarities=out.id_similarity,
                           metadata=[out.provenance(i) for i in range(len(out.images))])
    gallery, files, table, details = ui_outputs(results, reference="the people (worst kept)")
    return gallery, files, table + "\n\n" + people_markdown(out.people), details


def build_people_mode(ctx: AppContext, infos: list[PresetInfo]) -> None:
    """The "Several people" accordion (nothing when no preset can place several people)."""
    pinfos = people_infos(infos)
    if not pinfos:
        return
    with gr.Accordion("Several people", open=False, elem_id="people-mode"):
        gr.Markdown("One upload per person (several photos of the same person are averaged). Each person's "
                    "identity acts only in their region of the layout; the table says whether each face came "
                    "out where it should and how much it looks like that person — and like the others.")
        with gr.Row():
            with gr.Column(scale=1):
                slots = [photo_input(f"Person {k + 1}", f"people-photos-{k}") for k in range(SLOTS)]
                picker = model_picker(ctx, pinfos, "people-model")
                layout = gr.Dropdown(list(PEOPLE_LAYOUT.values), value=PEOPLE_LAYOUT.default, allow_custom_value=True,
                                     label="Layout (or face boxes x0,y0,x1,y1;… in fractions)", elem_id="people-layout")
                preview = gr.Image(value=layout_preview(PEOPLE_LAYOUT.default, 2, picker.dropdown.value), label="Layout",
                                   interactive=False, height=200, elem_id="people-preview")
                prompt = gr.Textbox(label="Prompt (the scene)", lines=2, elem_id="people-prompt",
                                    value="photo of two people together, best quality")
                seed = seed_input("people-seed")
                run = gr.Button("Generate several people", variant="primary", elem_id="people-run")
            with gr.Column(scale=1):
                res = result_outputs("people")

    @user_errors
    def _preview(layout_v: Any, preset_v: Any, s0: Any, s1: Any, s2: Any) -> Any:
        return layout_preview(layout_v, sum(1 for s in (s0, s1, s2) if upload_paths(s)), preset_v)

    for trigger in (layout.change, picker.dropdown.change, *(s.change for s in slots)):
        trigger(_preview, inputs=[layout, picker.dropdown, *slots], outputs=preview, queue=False,
                api_visibility="private")

    @user_errors
    def _run(preset_v: Any, layout_v: Any, prompt_v: Any, seed_v: Any, s0: Any, s1: Any, s2: Any,
             progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return generate_people(ctx, pinfos, [s0, s1, s2], preset_v, layout_v, prompt_v, seed_v, progress)

    run.click(_run, inputs=[picker.dropdown, layout, prompt, seed, *slots], outputs=res.job_outputs,
              api_name="generate_people", concurrency_limit=1, concurrency_id="gpu")
