"""Face aging in two passes, in the spirit of Cradle2Cane (NeurIPS 2025).

Pass 1 re-draws the aligned face crop toward the target age with a noise level that grows
with |target − current age| and a reduced ID scale, prompted "photo of a N year old ...".
Pass 2 re-noises the result a little and denoises it at full ID scale from the *source*
embedding, restoring identity.  Only the face region is pasted back.

What is supported: presets whose adapter takes text (faceid-*, tiny-faceid).  Arc2Face is
conditioned on the identity alone (no text, no age input), so it cannot be told an age:
aging refuses it with a clear error instead of producing an un-aged face.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


from facegen.choices import AGE, AGE_NOUNS, GENDER
from facegen.adapters.registry import refusal
from facegen.errors import InvalidArgumentError
from facegen.faces.detect import FacePolicy
from facegen.faces.types import Face
from facegen.pipelines._edit_base import (EditJob, EditSettings, FaceEditPipeline, FacePlan, ImageInput,
                                          RegeneratedCrop, require_consent)
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)



def age_prompt(age: int, gender: str = GENDER.default) -> str:
    """FADING-style prompt: 'photo of a 70 year old woman' (boy/girl/child up to 15)."""
    young, adult = AGE_NOUNS[GENDER.check(gender)]
    return f"photo of a {age} year old {young if age <= 15 else adult}, high quality, detailed skin"


def aging_strength(current_age: float, target_age: float, low: float = 0.45, high: float = 0.85,
                   span: float = 60.0) -> float:
    """Pass-1 noise level: ``low`` for a small age gap, rising linearly to ``high`` at ``span`` years."""
    gap = min(abs(float(target_age) - float(current_age)), span)
    return round(low + (high - low) * gap / span, 4)


@dataclass(frozen=True)
class AgeSettings(EditSettings):
    """Aging's two passes: the prompt, each pass's strength and ID scale, sampling."""

    prompt: str = ""
    strength1: float = 0.45
    strength2: float = 0.3
    steps: int | None = None
    guidance_scale: float | None = None
    scale1: float | None = None
    scale2: float | None = None


class AgeJob(EditJob):
    """Aging: every selected face keeps its own identity (embedded from the image itself)."""

    task = "age"
    what = "aging"

    def plan_face(self, rgb: np.ndarray, face: Face, source: int = 0) -> FacePlan:
        return FacePlan(face, self.pipe.embed_face(rgb, face), rgb, face)


class FaceAgingPipeline(FaceEditPipeline):
    task = "age"
    seeds_per_face = 2

    @classmethod
    def check_capabilities(cls, adapter: Any, preset_name: str) -> None:
        super().check_capabilities(adapter, preset_name)
        if not adapter.supports_prompt:
            raise InvalidArgumentError(refusal(preset_name, "takes no text, so it cannot be told a target age",
                                               lambda a: a.supports_prompt))

    def job(self, target_age: int, *, from_age: int | None = None, consent: bool = False, gender: str = GENDER.default,
            face: "str | int | FacePolicy" = "largest", num_inference_steps: int | None = None,
            guidance_scale: float | None = None, id_scale: float | None = None, pass1_id_factor: float = 0.5,
            pass2_strength: float = 0.3) -> AgeJob:
        """The aging job (photo: :meth:`__call__`; video: :class:`~facegen.video.pipeline.VideoEditPipeline`)."""
        require_consent(consent, AgeJob.what)
        AGE.check(target_age, "target age")
        if from_age is None:
            raise InvalidArgumentError(
                "the current age is needed: give --from-age N (no age-estimation model is installed)")
        AGE.check(from_age, "current age")
        full_scale = self.preset.defaults.adapter_scale if id_scale is None else float(id_scale)
        prompt = age_prompt(int(target_age), gender)
        strength1 = aging_strength(from_age, target_age)
        settings = AgeSettings(prompt=prompt, strength1=strength1, strength2=pass2_strength,
                               steps=num_inference_steps, guidance_scale=guidance_scale,
                               scale1=(full_scale or 1.0) * pass1_id_factor, scale2=full_scale)
        job = AgeJob(self, settings, consent=consent, target_face=face)
        job.fields.update(target_age=int(target_age), from_age=int(from_age), prompt=prompt,
                          pass1_strength=strength1, pass2_strength=pass2_strength,
                          pass1_adapter_scale=settings.scale1, pass2_adapter_scale=full_scale)
        return job

    def __call__(self, image: ImageInput, target_age: int, *, from_age: int | None = None,
                 consent: bool = False, gender: str = GENDER.default, face: "str | int | FacePolicy" = "largest",
                 seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, id_scale: float | None = None,
                 pass1_id_factor: float = 0.5, pass2_strength: float = 0.3, progress: bool = True,
                 callback: Any = None) -> PipelineOutput:
        # 1. check inputs (the job)
        job = self.job(target_age, from_age=from_age, consent=consent, gender=gender, face=face,
                       num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, id_scale=id_scale,
                       pass1_id_factor=pass1_id_factor, pass2_strength=pass2_strength)
        # 2. faces, each with its own identity → 3-6. two passes per face, paste back, judge each face
        # against itself, record (the edit skeleton)
        return self.run_job(job, image, seed, progress=progress, callback=callback)

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], settings: EditSettings, *,
                  progress: bool = False, callback: Any = None) -> RegeneratedCrop:
        """Pass 1 toward the target age at reduced ID scale; pass 2, low strength at full ID scale,
        from the pass-1 crop (seeds: one per pass)."""
        assert isinstance(settings, AgeSettings)
        s = settings
        p1 = self.regenerate(rgb, plan.face, plan.identity, strength=s.strength1, seed=seeds[0], steps=s.steps,
                             guidance_scale=s.guidance_scale, prompt=s.prompt, adapter_scale=s.scale1,
                             source_crop=plan.init_crop, progress=progress, callback=callback)
        return self.regenerate(rgb, plan.face, plan.identity, strength=s.strength2, seed=seeds[1], steps=s.steps,
                               guidance_scale=s.guidance_scale, prompt=s.prompt, adapter_scale=s.scale2,
                               source_crop=p1.crop, progress=progress, callback=callback)
