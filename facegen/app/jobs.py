"""Run a model job from a tab: cached pipeline, one job at a time, results as PNG files.

Shared by the Generate, Swap, Age and Restore tabs, which differ only in their inputs.
"""

from __future__ import annotations

import logging
from typing import Any

from facegen.app.context import AppContext
from facegen.app.progress import StepProgress
from facegen.app.results import SavedResult, save_results
from facegen.errors import ConsentRequiredError
from facegen.pipelines.generation import IDGenerationPipeline

logger = logging.getLogger(__name__)

GENERATION = IDGenerationPipeline


def require_consent(consent: Any, job: str) -> None:
    """Editing a real person's face needs the consent box ticked (like ``--consent``)."""
    if consent is not True:
        raise ConsentRequiredError(
            f"{job} edits a real person's face: tick the box confirming you have the right to "
            "edit this person's face (it is you, or they agreed)")


def load_job_pipeline(ctx: AppContext, job: str, target: type, preset: str) -> Any:
    """The pipeline class ``target`` on ``preset``, loaded once per app.

    The generation pipeline comes from ``Class.from_preset``; an edit pipeline (swap, age,
    restore) wraps the cached generation pipeline of the same preset, so every job of a
    preset shares one copy of the weights.
    """
    def _load() -> Any:
        if target is GENERATION:
            return target.from_preset(preset, access=ctx.access)
        return target(load_job_pipeline(ctx, "generate", GENERATION, preset))
    return ctx.pipelines.get(job, preset, _load)


def run_job(ctx: AppContext, job: str, target: type, preset: str, kwargs: dict[str, Any],
            progress: Any = None) -> list[SavedResult]:
    """Load (cached) and run one pipeline call under the GPU lock, the page's progress bar
    following its denoising steps; write its images (a :class:`PipelineOutput`) as PNGs."""
    reporter = StepProgress(progress, desc=job)
    reporter.start()
    pipe = load_job_pipeline(ctx, job, target, preset)
    with ctx.gpu_lock:
        out = pipe(**kwargs, progress=False, callback=reporter)
    return save_results(out.images, ctx.new_output_dir(job), job=job, preset=out.preset or preset,
                        seeds=out.seeds, similarities=out.id_similarity,
                        metadata=[out.provenance(i) for i in range(len(out.images))])
