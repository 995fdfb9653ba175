"""Widgets several tabs share: photo upload, model picker, example photo, result outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from facegen import limits
from facegen.app.context import AppContext
from facegen.app.errors import ERROR_DURATION
from facegen.app.presets import PresetInfo, choices, note_for
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.models.registry import get_preset

logger = logging.getLogger(__name__)


def _checked(component: Any, payload: Any) -> Any:
    """The value of a number widget checked on the server: gr.Slider/gr.Number compare it with
    their bounds unchecked, so "nan" or "abc" from an API client ended as an unexplained error
    and NaN passed; here it is a message naming the field."""
    if payload is None:
        return None
    try:
        value = limits.finite(component.label or "value", payload, component.minimum, component.maximum)
    except InvalidArgumentError as exc:
        raise gr.Error(str(exc), duration=ERROR_DURATION, print_exception=False) from None
    return gr.Number.round_to_precision(value, component.precision)


class CheckedSlider(gr.Slider):
    """A ``gr.Slider`` (same front end) whose value is checked as :func:`_checked` says."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _checked(self, payload)


class CheckedNumber(gr.Number):
    """A ``gr.Number`` (same front end) whose value is checked as :func:`_checked` says."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _checked(self, payload)


def photo_input(label: str, elem_id: str) -> gr.Gallery:
    """An upload area that hands the raw files to facegen's hardened loader: Gradio neither
    decodes nor filters them, so every bad file gets facegen's own message. A Gallery, so
    several photos of one person can be given."""
    return gr.Gallery(label=label, type="filepath", interactive=True,
                      sources=["upload", "clipboard"], columns=3, height=220,
                      object_fit="contain", fit_columns=False, allow_preview=False, elem_id=elem_id)


def example_photo_path() -> str | None:
    """The insightface wheel's Tom_Hanks_54745.png, used in place (never copied to the repo)."""
    try:
        from facegen.examples import example_photo
        return str(example_photo("tom_hanks"))
    except FacegenError as exc:
        logger.info("no example photo: %s", exc)
        return None


def add_examples(photos: gr.Gallery, label: str = "Example photo") -> None:
    """The example photo, one click away, for a photo input (nothing when it is absent)."""
    path = example_photo_path()
    if path is None:
        return
    gr.Examples(examples=[[[path]]], inputs=[photos], label=f"{label} (Tom Hanks, insightface wheel)",
                cache_examples=False)


@dataclass
class ModelPicker:
    dropdown: gr.Dropdown
    note: gr.Markdown


def default_preset(ctx: AppContext, infos: list[PresetInfo]) -> str | None:
    """The app's model when the list has it, else the first ready preset of the same kind
    (tiny for tiny, real for real), else the first listed."""
    names = [i.name for i in infos]
    if ctx.model in names:
        return ctx.model
    tiny = get_preset(ctx.model).tiny
    for info in infos:
        if info.ready and info.tiny == tiny:
            return info.name
    return names[0] if names else None


def model_picker(ctx: AppContext, infos: list[PresetInfo], elem_id: str) -> ModelPicker:
    """Every preset in ``infos``, unavailable ones labelled, with the selected one's
    description or the reason it cannot run."""
    value = default_preset(ctx, infos)
    dropdown = gr.Dropdown(choices=choices(infos), value=value, label="Model preset",
                           elem_id=elem_id, interactive=True)
    note = gr.Markdown(note_for(value, infos) if value else "", elem_id=f"{elem_id}-note")
    dropdown.change(lambda name: note_for(name, infos), inputs=dropdown, outputs=note,
                    queue=False, api_visibility="private")
    return ModelPicker(dropdown, note)


def seed_input(elem_id: str | None = None) -> CheckedNumber:
    """The seed box every job shares (-1 draws a random seed, which the result records)."""
    return CheckedNumber(value=-1, precision=0, label="Seed (-1 = random)", elem_id=elem_id)


def steps_input() -> CheckedSlider:
    """Denoising steps (0 keeps the preset's default)."""
    return CheckedSlider(0, 100, value=0, step=1, label="Steps (0 = preset default)")


def consent_box(elem_id: str) -> gr.Checkbox:
    return gr.Checkbox(value=False, elem_id=elem_id, label="I have the right to edit this face",
                       info="It is my face, or the person agreed; I will not use the result to deceive.")


@dataclass
class ResultOutputs:
    gallery: gr.Gallery
    info: gr.Markdown
    files: gr.File
    details: gr.JSON
    picked: gr.Markdown | None = None
    reuse: gr.Button | None = None

    @property
    def job_outputs(self) -> list[gr.components.Component]:
        """The outputs a job handler returns, in order."""
        return [self.gallery, self.files, self.info, self.details]


def result_outputs(prefix: str, label: str = "Results", reuse_seed: bool = False) -> ResultOutputs:
    """Gallery of the written PNGs (captioned), optionally a "Reuse this seed" row, a table of
    seed / ID similarity / preset, the same files for download, and the details as JSON."""
    gallery = gr.Gallery(label=label, type="filepath", interactive=False, columns=2, height=380,
                         object_fit="contain", buttons=["download", "fullscreen"],
                         elem_id=f"{prefix}-gallery")
    picked = reuse = None
    if reuse_seed:
        with gr.Row(equal_height=True):
            picked = gr.Markdown("Select a result to reuse its seed.", elem_id=f"{prefix}-picked")
            reuse = gr.Button("Reuse this seed", size="sm", scale=0, min_width=160, elem_id=f"{prefix}-reuse")
    info = gr.Markdown(elem_id=f"{prefix}-info")
    files = gr.File(label="Download (PNG files with their provenance metadata)", file_count="multiple",
                    interactive=False, elem_id=f"{prefix}-files")
    with gr.Accordion("Details (JSON)", open=False):
        details = gr.JSON(elem_id=f"{prefix}-details")
    return ResultOutputs(gallery, info, files, details, picked, reuse)


def preset_of(name: Any, infos: list[PresetInfo]) -> str:
    """The chosen preset name, checked against the list the page was built with."""
    names = [i.name for i in infos]
    if not isinstance(name, str) or name not in names:
        raise InvalidArgumentError(f"unknown model preset {name!r}; choose one of: {', '.join(names)}")
    return name
