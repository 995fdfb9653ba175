"""Face restoration: a degraded face (blur, noise, JPEG, low resolution) re-drawn by
ID-conditioned img2img on its FFHQ-aligned crop (the layout restoration models use).

The identity comes from a reference photo of the same person when given (RestorerID-style:
a clean reference beats the degraded input), else from the input itself; the denoising
strength adapts to the measured degradation (``estimate_degradation``).  An optional
GFPGAN pass runs first when the user has ``gfpgan`` and its weights installed.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facegen.choices import RESTORE_STRENGTH
from facegen.errors import MissingDependencyError, ModelNotFoundError
from facegen.faces.detect import FacePolicy
from facegen.id.embedding import IDEmbedding
from facegen.io import load_image
from facegen.models.auxiliary import get_auxiliary
from facegen.paths import check_sha256
from facegen.paths import models_dir as default_models_dir
from facegen.pipelines._edit_base import FaceEditPipeline, FacePlan, ImageInput, RegeneratedCrop, require_consent
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


def gfpgan_pass(rgb: np.ndarray, models_dir: str | Path | None = None) -> np.ndarray:
    """GFPGAN v1.4 on the whole photo (faces only, upscale 1) when installed by the user."""
    package = GFPGAN.package or "gfpgan"
    if importlib.util.find_spec(package) is None:
        raise MissingDependencyError(package, feature=f"the GFPGAN pre-pass (pip install {package})")
    root = default_models_dir(models_dir)
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


class FaceRestorationPipeline(FaceEditPipeline):
    task = "restore"

    def __call__(self, image: ImageInput, *, reference: ImageInput | None = None, consent: bool = False,
                 face: "str | int | FacePolicy" = "largest", strength: float | None = None,
                 seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None, gfpgan: bool = False,
                 progress: bool = True, callback: Any = None) -> PipelineOutput:
        # 1. check inputs
        require_consent(consent, "restoration")
        if strength is not None:
            RESTORE_STRENGTH.check(strength)
        rgb = load_image(image)
        if gfpgan:
            rgb = gfpgan_pass(rgb, self.gen.models_dir)
        # 2. faces, each with its identity: its own, or the reference's for the face that is that person
        with about_photo("input", image):
            faces = self.find_faces(rgb, face)
        plans = [FacePlan(f, self.embed_face(rgb, f), rgb, f) for f in faces]
        if reference is not None:
            with about_photo("reference", reference):
                ref_identity, ref_rgb = self.embed_reference(reference)
            k = self.reference_face_index(plans, ref_identity)
            plans[k] = FacePlan(faces[k], ref_identity, ref_rgb, ref_identity.face)
        # 3. how degraded each face is → how much to re-draw
        for p in plans:
            level = estimate_degradation(rgb, p.face)
            p.info.update(degradation=round(float(level), 4),
                          strength=restoration_strength(level) if strength is None else float(strength),
                          identity="reference" if p.reference_rgb is not rgb else "input")
        text = prompt if prompt is not None else (RESTORE_PROMPT if self.gen.adapter.supports_prompt else None)
        # 4-6. regenerate each FFHQ crop, paste back, judge each face, record (the edit skeleton)
        settings = dict(steps=num_inference_steps, guidance_scale=guidance_scale, prompt=text)
        return self.run_plans(rgb, plans, seed, settings=settings, progress=progress, callback=callback,
                              degradation=[p.info["degradation"] for p in plans],
                              strength=[p.info["strength"] for p in plans], reference=reference is not None,
                              gfpgan=gfpgan, prompt=text)

    @staticmethod
    def reference_face_index(plans: Sequence[FacePlan], reference: IDEmbedding) -> int:
        """The face the reference photo shows: the only one, else the most similar to it."""
        if len(plans) == 1:
            return 0
        from facegen.id.encoders import similarity  # noqa: PLC0415
        return int(np.argmax([similarity(reference, p.identity) for p in plans]))

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], *, progress: bool, callback: Any,
                  **settings: Any) -> RegeneratedCrop:
        return self.regenerate(rgb, plan.face, plan.identity, strength=plan.info["strength"], seed=seeds[0],
                               source_crop=plan.init_crop, progress=progress, callback=callback, **settings)
