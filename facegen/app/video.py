"""The video part of the Swap and Restore tabs: upload a clip (bounded: 60 s, 100 MB, Full HD),
get the edited MP4 back to watch and download, with the sound, the tracks' ID similarity and
the temporal-stability figure. Runs the tab's job (the photo's own, made by the cached edit
pipeline's ``job(...)``, consent checked there too) in
:class:`facegen.video.pipeline.VideoEditPipeline`, under the GPU lock, like every job of the app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from facegen.choices import FACE, SWAP_STRENGTH
from facegen.app.context import AppContext
from facegen.app.errors import user_errors
from facegen.app.jobs import load_job_pipeline
from facegen.pipelines.restoration import FaceRestorationPipeline
from facegen.pipelines.swap import FaceSwapPipeline
from facegen.errors import FacegenError, InvalidArgumentError

logger = logging.getLogger(__name__)

MAX_SECONDS = 60
MAX_MB = 100


@dataclass
class VideoWidgets:
    clip: Any
    run: Any
    result: Any
    download: Any
    report: Any


def video_inputs(tab: str) -> VideoWidgets:
    """The widgets: an input clip, a button, the result clip, its file and the report."""
    with gr.Accordion(f"Video: a clip instead of a photo (up to {MAX_SECONDS} s, {MAX_MB} MB)", open=False):
        clip = gr.Video(label="Video (MP4, MOV, MKV, WebM)", sources=["upload"], elem_id=f"{tab}-video")
        run = gr.Button("Process the video", elem_id=f"{tab}-video-run")
        result = gr.Video(label="Result (MP4, sound kept)", interactive=False, elem_id=f"{tab}-video-result")
        download = gr.File(label="Download", interactive=False, elem_id=f"{tab}-video-file")
        report = gr.Markdown(elem_id=f"{tab}-video-report")
    return VideoWidgets(clip, run, result, download, report)


def _clip_path(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("video") or value.get("path")
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if not value:
        raise InvalidArgumentError("upload a video first")
    return str(value)


def run_video(ctx: AppContext, job: str, pipeline: type, preset: str, clip: Any,
              make_job: Callable[[Any], Any], progress: Any = None, seed: int | None = None) -> tuple[str, str, str]:
    """One video request: checked against the demo's bounds, edited, written under the
    request's output folder; returns (video, file, report markdown)."""
    from facegen.video.container import probe  # noqa: PLC0415
    from facegen.video.limits import APP_LIMITS, check_video  # noqa: PLC0415
    from facegen.video.pipeline import VideoEditPipeline  # noqa: PLC0415

    path = _clip_path(clip)
    try:
        info = probe(path, APP_LIMITS)                      # the frame size before any decoding
        check_video(info, APP_LIMITS)                       # frames, frames x pixels, length, bytes
        pipe = load_job_pipeline(ctx, job, pipeline, preset)
        out = ctx.new_output_dir(f"{job}-video") / f"{job}.mp4"
        if progress is not None:
            progress(0.0, desc=f"{job}: {info.frames} frames")
        with ctx.gpu_lock:
            result = VideoEditPipeline(make_job(pipe), limits=APP_LIMITS)(path, out, seed=seed, progress=False)
    except FacegenError as exc:                             # never show the server's folders
        raise _without_paths(exc, path, ctx) from None
    return str(out), str(out), report_markdown(result)


def _without_paths(exc: FacegenError, path: str, ctx: AppContext) -> FacegenError:
    """``exc`` (same class and fields) with the upload's path cut to its file name and the work
    folder's path removed from its message, as the photo tabs do."""
    import os  # noqa: PLC0415

    message = str(exc).replace(str(path), os.path.basename(str(path)))
    work = str(getattr(ctx, "work_dir", "") or "")
    if work:
        message = message.replace(work + os.sep, "").replace(work, "<work folder>")
    if message == str(exc):
        return exc
    out = type(exc).__new__(type(exc))
    out.__dict__.update(exc.__dict__)
    Exception.__init__(out, message)
    return out


def report_markdown(result: Any) -> str:
    s = result.stability
    lines = [f"**{result.frames} frames** at {result.fps} fps, seed {result.seed}."]
    if s.get("ratio") is not None:
        lines.append(f"Face-region change per frame: {s['output']} (input {s['input']}, **{s['ratio']:.2f}×**).")
    for t in result.tracks:
        sim = t.get("id_similarity")
        state = "edited" if t["edited"] else "left as it is"
        sim_text = f", ID similarity {sim:.3f}" if sim is not None else ""
        lines.append(f"- track {t['track']} (frames {t['first_frame']}–{t['last_frame']}): {state}{sim_text}")
    return "\n".join(lines)


def wire(widgets: VideoWidgets, job: str, inputs: list[Any],
         handler: Callable[..., tuple[str, str, str]]) -> None:
    """Connect the button: ``handler(clip, *inputs, progress)`` -> (video, file, report)."""
    @user_errors
    def _run(clip: Any, *values: Any, progress: gr.Progress = gr.Progress()) -> tuple[str, str, str]:  # noqa: B008
        return handler(clip, *values, progress=progress)

    widgets.run.click(_run, inputs=[widgets.clip, *inputs],
                      outputs=[widgets.result, widgets.download, widgets.report], api_name=f"{job}_video",
                      concurrency_limit=1, concurrency_id="gpu")


def add_swap_video(ctx: AppContext, infos: list[Any], source: Any, preset: Any, consent: Any, target_face: Any,
                   seed: Any, strength: Any, steps: Any) -> VideoWidgets:
    """The Swap tab's video part: the tab's source photo, model, consent and settings."""
    from facegen import limits  # noqa: PLC0415
    from facegen.app.jobs import require_consent  # noqa: PLC0415
    from facegen.app.values import run_seeds  # noqa: PLC0415
    from facegen.app.uploads import read_photos  # noqa: PLC0415
    from facegen.app.values import float_value, int_value  # noqa: PLC0415
    from facegen.app.widgets import preset_of  # noqa: PLC0415

    widgets = video_inputs("swap")

    def handler(clip: Any, source_v: Any, preset_v: Any, consent_v: Any, faces_v: Any, seed_v: Any,
                strength_v: Any, steps_v: Any, progress: Any = None) -> tuple[str, str, str]:
        name = preset_of(preset_v, infos)
        require_consent(consent_v, "face swap")
        sources = read_photos(source_v, what="source photo", max_photos=1)
        s = float_value("strength", strength_v, SWAP_STRENGTH.lo, SWAP_STRENGTH.hi, default=SWAP_STRENGTH.default,
                        lo_open=SWAP_STRENGTH.lo_open)
        n = int_value("steps", steps_v, 0, limits.max_steps()) or None
        seed_run = run_seeds(seed_v, 1)[0]

        def make(pipe: Any) -> Any:
            return pipe.job(sources, consent=consent_v, target_face=faces_v or FACE.default, strength=s,
                            num_inference_steps=n)
        return _seeded(run_video, seed_run)(ctx, "swap", FaceSwapPipeline, name, clip,
                                            make, progress)

    wire(widgets, "swap", [source, preset, consent, target_face, seed, strength, steps], handler)
    return widgets


def add_restore_video(ctx: AppContext, infos: list[Any], reference: Any, preset: Any, consent: Any, seed: Any,
                      strength: Any, steps: Any) -> VideoWidgets:
    """The Restore tab's video part: the tab's optional reference photo, model, consent, settings."""
    from facegen import limits  # noqa: PLC0415
    from facegen.app.jobs import require_consent  # noqa: PLC0415
    from facegen.app.values import run_seeds  # noqa: PLC0415
    from facegen.app.uploads import read_photos  # noqa: PLC0415
    from facegen.app.values import float_value, int_value  # noqa: PLC0415
    from facegen.app.widgets import preset_of  # noqa: PLC0415

    widgets = video_inputs("restore")

    def handler(clip: Any, ref_v: Any, preset_v: Any, consent_v: Any, seed_v: Any, strength_v: Any, steps_v: Any,
                progress: Any = None) -> tuple[str, str, str]:
        name = preset_of(preset_v, infos)
        require_consent(consent_v, "restoration")
        refs = read_photos(ref_v, what="reference photo", required=False, max_photos=1)
        s = float_value("strength", strength_v, 0.0, 1.0) or None
        n = int_value("steps", steps_v, 0, limits.max_steps()) or None
        seed_run = run_seeds(seed_v, 1)[0]

        def make(pipe: Any) -> Any:
            return pipe.job(reference=refs[0] if refs else None, consent=consent_v, strength=s, num_inference_steps=n)
        return _seeded(run_video, seed_run)(ctx, "restore", FaceRestorationPipeline,
                                            name, clip, make, progress)

    wire(widgets, "restore", [reference, preset, consent, seed, strength, steps], handler)
    return widgets


def _seeded(fn: Callable[..., tuple[str, str, str]], seed: int) -> Callable[..., tuple[str, str, str]]:
    def call(*args: Any, **kwargs: Any) -> tuple[str, str, str]:
        return fn(*args, seed=seed, **kwargs)
    return call
