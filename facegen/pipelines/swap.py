"""Face swap: a source identity onto the face(s) of a target photo.

Keeps the target's pose, expression, lighting and background: only the target's face region
is regenerated (ID-conditioned inpainting of its aligned crop, ``strength`` < 1 keeps the
target's structure), colour-matched, and pasted back with a feathered mask.

Stages of ``__call__``: 1 check inputs → 2 faces (target faces by policy, source identities)
→ 3 map sources to target faces → 4 regenerate each face → 5 paste back → 6 measure and
provenance.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from facegen.choices import SWAP_STRENGTH
from facegen.errors import InvalidArgumentError
from facegen.faces.detect import FacePolicy
from facegen.id.embedding import IDEmbedding
from facegen.io import load_image
from facegen.pipelines._edit_base import FaceEditPipeline, FacePlan, ImageInput, RegeneratedCrop, require_consent
from facegen.pipelines._roles import about_photo
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

DEFAULT_SWAP_STRENGTH = SWAP_STRENGTH.default


def map_sources(target_rgb: np.ndarray, target_faces: list[Any], n_sources: int,
                references: Sequence[ImageInput] | None) -> list[tuple[Any, int]]:
    """(target face, source index) pairs of a swap (diffusion or inswapper).

    Without ``references``: one source → every selected face; several sources → the
    selected faces in reading order, one each.  With ``references`` (one photo per
    source, showing the person to replace), each source goes to the target face most
    similar to its reference (by the dlib descriptor, an encoder independent of the swap's).
    """
    if references is not None:
        if len(references) != n_sources:
            raise InvalidArgumentError(f"got {len(references)} reference photos for {n_sources} sources "
                                       "(one per source)")
        from facegen.id.encoders import embed_image, get_analyzer, similarity  # noqa: PLC0415
        enc = get_analyzer("dlib-resnet-v1")
        faces_emb = [enc.embed(target_rgb, f) for f in target_faces]
        pairs, used = [], set()
        for i, ref in enumerate(references):
            with about_photo("reference", ref):
                ref_emb = embed_image(load_image(ref), enc)[0]
            order = np.argsort([-similarity(ref_emb, e) for e in faces_emb])
            j = next((int(k) for k in order if int(k) not in used), None)
            if j is None:
                raise InvalidArgumentError("more references than faces in the target photo")
            used.add(j)
            pairs.append((target_faces[j], i))
        return pairs
    if n_sources == 1:
        return [(f, 0) for f in target_faces]
    if n_sources != len(target_faces):
        raise InvalidArgumentError(
            f"{n_sources} sources for {len(target_faces)} selected target faces: give one source per "
            "face (reading order), or reference photos to map them")
    return [(f, i) for i, f in enumerate(target_faces)]


class FaceSwapPipeline(FaceEditPipeline):
    task = "swap"

    def map_sources(self, target_rgb: np.ndarray, target_faces: list[Any], identities: list[IDEmbedding],
                    references: Sequence[ImageInput] | None) -> list[tuple[Any, int]]:
        """(target face, source index) pairs: :func:`map_sources`."""
        return map_sources(target_rgb, target_faces, len(identities), references)

    def __call__(self, source: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding], target: ImageInput, *,
                 consent: bool = False, target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[ImageInput] | None = None, strength: float = DEFAULT_SWAP_STRENGTH,
                 seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None,
                 adapter_scale: float | None = None, margin: float = 0.0, progress: bool = True,
                 callback: Any = None) -> PipelineOutput:
        # 1. check inputs
        require_consent(consent, "face swap")
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if not sources:
            raise InvalidArgumentError("give at least one source photo or embedding")
        # 2. faces
        with about_photo("target", target):
            target_rgb = load_image(target)
            faces = self.find_faces(target_rgb, target_face)
        refs = []
        for s in sources:
            with about_photo("source", s):
                refs.append(self.embed_reference(s))
        identities = [r[0] for r in refs]
        # 3. map sources to faces: one plan per face
        pairs = self.map_sources(target_rgb, faces, identities, references)
        plans = [FacePlan(face, identities[i], refs[i][1], identities[i].face, {"source": i}) for face, i in pairs]
        # 4-6. regenerate, paste back, judge and record each face (the edit skeleton)
        settings = dict(strength=strength, steps=num_inference_steps, guidance_scale=guidance_scale,
                        prompt=prompt, adapter_scale=adapter_scale, margin=margin)
        return self.run_plans(target_rgb, plans, seed, settings=settings, progress=progress, callback=callback,
                              strength=strength, faces_swapped=len(plans),
                              steps=num_inference_steps or self.preset.defaults.steps)

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], *, progress: bool,
                  callback: Any, **settings: Any) -> RegeneratedCrop:
        return self.regenerate(rgb, plan.face, plan.identity, seed=seeds[0], progress=progress, callback=callback,
                               source_crop=plan.init_crop, **settings)
