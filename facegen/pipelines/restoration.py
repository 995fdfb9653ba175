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
from typing import Any

import numpy as np
from PIL import Image

from facegen.errors import InvalidArgumentError, MissingDependencyError, ModelNotFoundError
from facegen.faces.detect import FacePolicy
from facegen.io import load_image
from facegen.models.auxiliary import get_auxiliary
from facegen.paths import check_sha256
from facegen.paths import models_dir as default_models_dir
from facegen.pipelines._edit_base import FaceEditPipeline, ImageInput, require_consent
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
        if strength is not None and not 0.0 < strength <= 1.0:
            raise InvalidArgumentError(f"strength must be in (0, 1], got {strength}")
        rgb = load_image(image)
        if gfpgan:
            rgb = gfpgan_pass(rgb, self.gen.models_dir)
        # 2. faces and identity: the reference's when given, else the input's
        faces = self.find_faces(rgb, face)
        if reference is not None:
            identity, ref_rgb = self.embed_reference(reference)
            ref_face = identity.face
        else:
            identity, ref_rgb, ref_face = self.embed_face(rgb, faces[0]), rgb, faces[0]
        text = prompt if prompt is not None else (RESTORE_PROMPT if self.gen.adapter.supports_prompt else None)
        seeds = self.seeds(len(faces), seed)
        out = rgb.copy()
        levels, strengths = [], []
        for f, s in zip(faces, seeds):
            # 3. how degraded is this face → how much to re-draw
            level = estimate_degradation(rgb, f)
            st = restoration_strength(level) if strength is None else float(strength)
            levels.append(round(float(level), 4))
            strengths.append(st)
            # 4. regenerate the FFHQ crop, 5. paste back
            regen = self.regenerate(out, f, identity, strength=st, seed=s, steps=num_inference_steps,
                                    guidance_scale=guidance_scale, prompt=text, progress=progress,
                                    callback=callback)
            out = self.paste(out, regen)
        # 6. measure and provenance
        sims, judge = self.judge(ref_rgb, ref_face, [(out, faces[0])])
        meta = self.provenance(degradation=levels, strength=strengths, reference=reference is not None,
                               gfpgan=gfpgan, seeds=seeds, id_judge=judge, prompt=text)
        return PipelineOutput(images=[Image.fromarray(out)], seeds=[seeds[0]], preset=self.preset.name,
                              adapter=self.preset.family, id_similarity=sims, metadata=[meta])
