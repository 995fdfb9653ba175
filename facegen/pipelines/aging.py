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
from typing import Any

from PIL import Image

from facegen.errors import InvalidArgumentError
from facegen.faces.detect import FacePolicy
from facegen.io import load_image
from facegen.pipelines._edit_base import FaceEditPipeline, ImageInput, require_consent
from facegen.pipelines._roles import about_photo
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

GENDER_WORDS = {"person": ("child", "person"), "woman": ("girl", "woman"), "man": ("boy", "man")}


def age_prompt(age: int, gender: str = "person") -> str:
    """FADING-style prompt: 'photo of a 70 year old woman' (boy/girl/child up to 15)."""
    if gender not in GENDER_WORDS:
        raise InvalidArgumentError(f"gender must be one of {', '.join(GENDER_WORDS)}, got '{gender}'")
    young, adult = GENDER_WORDS[gender]
    return f"photo of a {age} year old {young if age <= 15 else adult}, high quality, detailed skin"


def aging_strength(current_age: float, target_age: float, low: float = 0.45, high: float = 0.85,
                   span: float = 60.0) -> float:
    """Pass-1 noise level: ``low`` for a small age gap, rising linearly to ``high`` at ``span`` years."""
    gap = min(abs(float(target_age) - float(current_age)), span)
    return round(low + (high - low) * gap / span, 4)


class FaceAgingPipeline(FaceEditPipeline):
    task = "age"

    def check_supported(self) -> None:
        if not self.gen.adapter.supports_prompt:
            raise InvalidArgumentError(
                f"preset '{self.preset.name}' ({self.preset.family}) takes no text, so it cannot be told a target "
                "age; aging needs a text-capable preset: faceid-sd15, faceid-sdxl (or tiny-faceid offline)")

    def __call__(self, image: ImageInput, target_age: int, *, from_age: int | None = None,
                 consent: bool = False, gender: str = "person", face: "str | int | FacePolicy" = "largest",
                 seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, id_scale: float | None = None,
                 pass1_id_factor: float = 0.5, pass2_strength: float = 0.3, progress: bool = True,
                 callback: Any = None) -> PipelineOutput:
        # 1. check inputs
        require_consent(consent, "aging")
        self.check_supported()
        if not 0 <= int(target_age) <= 110:
            raise InvalidArgumentError(f"target age must be in 0..110, got {target_age}")
        if from_age is None:
            raise InvalidArgumentError(
                "the current age is needed: give --from-age N (no age-estimation model is installed)")
        if not 0 <= int(from_age) <= 110:
            raise InvalidArgumentError(f"current age must be in 0..110, got {from_age}")
        rgb = load_image(image)
        # 2. faces and identity (the source embedding, from the photo itself)
        with about_photo("input", image):
            faces = self.find_faces(rgb, face)
        full_scale = self.preset.defaults.adapter_scale if id_scale is None else float(id_scale)
        seeds = self.seeds(2 * len(faces), seed)
        prompt = age_prompt(int(target_age), gender)
        strength1 = aging_strength(from_age, target_age)
        out = rgb.copy()
        for k, f in enumerate(faces):
            identity = self.embed_face(rgb, f)
            # 3. pass 1: toward the target age, reduced ID scale
            p1 = self.regenerate(out, f, identity, strength=strength1, seed=seeds[2 * k],
                                 steps=num_inference_steps, guidance_scale=guidance_scale, prompt=prompt,
                                 adapter_scale=(full_scale or 1.0) * pass1_id_factor, progress=progress,
                                 callback=callback)
            # 4. pass 2: low strength, full ID scale, from the pass-1 crop
            p2 = self.regenerate(out, f, identity, strength=pass2_strength, seed=seeds[2 * k + 1],
                                 steps=num_inference_steps, guidance_scale=guidance_scale, prompt=prompt,
                                 adapter_scale=full_scale, source_crop=p1.crop, progress=progress,
                                 callback=callback)
            # 5. paste back
            out = self.paste(out, p2)
        # 6. measure and provenance
        sims, judge = self.judge(rgb, faces[0], [(out, faces[0])])
        meta = self.provenance(target_age=int(target_age), from_age=int(from_age), prompt=prompt,
                               pass1_strength=strength1, pass2_strength=pass2_strength,
                               pass1_adapter_scale=(full_scale or 1.0) * pass1_id_factor,
                               pass2_adapter_scale=full_scale, seeds=seeds, id_judge=judge)
        return PipelineOutput(images=[Image.fromarray(out)], seeds=[seeds[0]], preset=self.preset.name,
                              adapter=self.preset.family, id_similarity=sims, metadata=[meta])
