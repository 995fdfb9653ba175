"""Face restoration: a degraded face (blur, noise, JPEG, low resolution) re-drawn by
ID-conditioned img2img on its FFHQ-aligned crop (the layout restoration models use).

The identity comes from a reference photo of the same person when given (RestorerID-style:
a clean reference beats the degraded input), else from the input itself; the denoising
strength adapts to the measured degradation (``estimate_degradation``).  An optional
GFPGAN pass runs first on every image (photo or video frame) when the user has ``gfpgan`` and
its weights installed.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from facegen.choices import RESTORE_STRENGTH
from facegen.errors import MissingDependencyError, ModelNotFoundError
from facegen.faces.detect import FacePolicy
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding
from facegen.models.auxiliary import get_auxiliary
from facegen.paths import DEFAULT_ACCESS, ModelAccess, check_sha256
from facegen.pipelines._edit_base import (EditJob, EditSettings, EditSkeleton, FaceEditPipeline, FacePlan, ImageInput,
                                          RegeneratedCrop, require_consent)
from facegen.pipelines._roles import about_photo
from facegen.pipelines.degrade import estimate_degradation
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

RESTORE_PROMPT = "a sharp, high quality photo of a face, detailed skin"
GFPGAN = get_auxiliary("gfpgan-v1.4")
GFPGAN_WEIGHTS = GFPGAN.file("restorer").relpath


def restoration_strength(degradation: float, low: float = 0.2, high: float = 0.65) -> float:
    """More noise (more re-drawing) for worse inputs: linear in the degradation score in [0, 1]."""
    d = float(np.clip(degradation, 0.0, 1.0))
    return round(low + (high - low) * d, 4)


def gfpgan_pass(rgb: np.ndarray, access: ModelAccess = DEFAULT_ACCESS) -> np.ndarray:
    """GFPGAN v1.4 on the whole photo (faces only, upscale 1) when installed by the user."""
    package = GFPGAN.package or "gfpgan"
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(package, feature=f"the GFPGAN pre-pass (pip install {package})")
    root = access.root
    entry = GFPGAN.file("restorer")
    weights = entry.locate(root)
    if weights is None:
        raise ModelNotFoundError(f"{GFPGAN.name} ({GFPGAN.purpose})", [entry.relpath], root,
                                 hint=f"{GFPGAN.hint}; it is at {entry.url}" if entry.url else GFPGAN.hint)
    check_sha256(weights, entry.sha256)
    from gfpgan import GFPGANer  # noqa: PLC0415
    restorer = GFPGANer(model_path=str(weights), upscale=1, arch="clean", channel_multiplier=2)
    _, _, out_bgr = restorer.enhance(np.ascontiguousarray(rgb[..., ::-1]), has_aligned=False, paste_back=True)
    return np.ascontiguousarray(out_bgr[..., ::-1])


@dataclass(frozen=True)
class RestoreSettings(EditSettings):
    """Restoration: a fixed strength (None: each face's from its measured degradation), sampling,
    text, and the GFPGAN pre-pass of every image (photo or frame)."""

    strength: float | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    prompt: str | None = None
    gfpgan: bool = False

    def __post_init__(self) -> None:
        if self.strength is not None:
            RESTORE_STRENGTH.check(self.strength)


class RestoreJob(EditJob):
    """Restoration: each face keeps its own identity, except the face the reference photo shows
    (the only one, else the most similar), which gets the reference's; the strength follows each
    face's measured degradation unless fixed."""

    task = "restore"
    what = "restoration"

    def __init__(self, pipe: EditSkeleton, settings: RestoreSettings, *, consent: bool,
                 reference: ImageInput | None = None, target_face: "str | int | FacePolicy" = "largest") -> None:
        super().__init__(pipe, settings, consent=consent, target_face=target_face)
        self.settings: RestoreSettings = settings
        self.reference: tuple[IDEmbedding, np.ndarray | None] | None = None
        if reference is not None:
            with about_photo("reference", reference):
                self.reference = pipe.embed_reference(reference)

    def identities(self) -> list[IDEmbedding]:
        return [self.reference[0]] if self.reference is not None else []

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return gfpgan_pass(rgb, self.pipe.access) if self.settings.gfpgan else rgb

    def plan(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[FacePlan]:
        plans = [self.plan_face(rgb, f) for f in faces]
        if self.reference is not None and plans:
            k = reference_face_index(plans, self.reference[0])
            plans[k] = self.reference_plan(rgb, faces[k])
        return plans

    def plan_face(self, rgb: np.ndarray, face: Face, source: int = 0) -> FacePlan:
        return self._with_strength(rgb, FacePlan(face, self.pipe.embed_face(rgb, face), rgb, face,
                                                 {"identity": "input"}))

    def reference_plan(self, rgb: np.ndarray, face: Face) -> FacePlan:
        assert self.reference is not None
        ident, ref_rgb = self.reference
        return self._with_strength(rgb, FacePlan(face, ident, ref_rgb, ident.face, {"identity": "reference"}))

    def _with_strength(self, rgb: np.ndarray, plan: FacePlan) -> FacePlan:
        """How degraded the face is → how much to re-draw."""
        level = estimate_degradation(rgb, plan.face)
        fixed = self.settings.strength
        plan.info = {"degradation": round(float(level), 4),
                     "strength": restoration_strength(level) if fixed is None else float(fixed), **plan.info}
        return plan

    def known_plan(self, face: Face, info: dict[str, Any]) -> FacePlan | None:
        if info.get("identity") != "reference" or self.reference is None:
            return None
        ident, ref_rgb = self.reference
        return FacePlan(face, ident, ref_rgb, ident.face, dict(info))

    def record(self, plans: Sequence[FacePlan]) -> dict[str, Any]:
        return {"degradation": [p.info["degradation"] for p in plans],
                "strength": [p.info["strength"] for p in plans], **self.fields}


def reference_face_index(plans: Sequence[FacePlan], reference: IDEmbedding) -> int:
    """The face the reference photo shows: the only one, else the most similar to it."""
    if len(plans) == 1:
        return 0
    from facegen.id.encoders import similarity  # noqa: PLC0415
    return int(np.argmax([similarity(reference, p.identity) for p in plans]))


class FaceRestorationPipeline(FaceEditPipeline):
    task = "restore"

    def job(self, *, reference: ImageInput | None = None, consent: bool = False,
            face: "str | int | FacePolicy" = "largest", strength: float | None = None,
            num_inference_steps: int | None = None, guidance_scale: float | None = None, prompt: str | None = None,
            gfpgan: bool = False) -> RestoreJob:
        """The restoration job (photo: :meth:`__call__`; video: :class:`~facegen.video.pipeline.VideoEditPipeline`)."""
        require_consent(consent, RestoreJob.what)
        text = prompt if prompt is not None else (RESTORE_PROMPT if self.gen.adapter.supports_prompt else None)
        settings = RestoreSettings(strength=strength, steps=num_inference_steps, guidance_scale=guidance_scale,
                                   prompt=text, gfpgan=gfpgan)
        job = RestoreJob(self, settings, consent=consent, reference=reference, target_face=face)
        job.fields.update(reference=reference is not None, gfpgan=gfpgan, prompt=text)
        return job

    def __call__(self, image: ImageInput, *, reference: ImageInput | None = None, consent: bool = False,
                 face: "str | int | FacePolicy" = "largest", strength: float | None = None,
                 seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None, gfpgan: bool = False,
                 progress: bool = True, callback: Any = None) -> PipelineOutput:
        # 1. check inputs, the reference's identity (the job)
        job = self.job(reference=reference, consent=consent, face=face, strength=strength,
                       num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, prompt=prompt,
                       gfpgan=gfpgan)
        # 2. the GFPGAN pre-pass, faces, each with its identity; 3. how degraded each face is → how much
        # to re-draw; 4-6. regenerate each FFHQ crop, paste back, judge each face, record (the edit skeleton)
        return self.run_job(job, image, seed, progress=progress, callback=callback)

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], settings: EditSettings, *,
                  progress: bool = False, callback: Any = None) -> RegeneratedCrop:
        assert isinstance(settings, RestoreSettings)
        return self.regenerate(rgb, plan.face, plan.identity, strength=plan.info["strength"], seed=seeds[0],
                               steps=settings.steps, guidance_scale=settings.guidance_scale, prompt=settings.prompt,
                               source_crop=plan.init_crop, progress=progress, callback=callback)
