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
from PIL import Image

from facegen.errors import InvalidArgumentError
from facegen.faces.detect import FacePolicy
from facegen.id.embedding import IDEmbedding
from facegen.io import load_image
from facegen.pipelines._edit_base import FaceEditPipeline, ImageInput, require_consent
from facegen.pipelines._roles import about_photo
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

DEFAULT_SWAP_STRENGTH = 0.85


class FaceSwapPipeline(FaceEditPipeline):
    task = "swap"

    def map_sources(self, target_rgb: np.ndarray, target_faces: list[Any], identities: list[IDEmbedding],
                    references: Sequence[ImageInput] | None) -> list[tuple[Any, int]]:
        """(target face, source index) pairs.

        Without ``references``: one source → every selected face; several sources → the
        selected faces in reading order, one each.  With ``references`` (one photo per
        source, showing the person to replace), each source goes to the target face most
        similar to its reference.
        """
        if references is not None:
            if len(references) != len(identities):
                raise InvalidArgumentError(f"got {len(references)} reference photos for {len(identities)} sources "
                                           "(one per source)")
            from facegen.id.encoders import embed_image, get_encoder, similarity  # noqa: PLC0415
            enc = get_encoder("dlib-resnet-v1")
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
        if len(identities) == 1:
            return [(f, 0) for f in target_faces]
        if len(identities) != len(target_faces):
            raise InvalidArgumentError(
                f"{len(identities)} sources for {len(target_faces)} selected target faces: give one source per "
                "face (reading order), or reference photos to map them")
        return [(f, i) for i, f in enumerate(target_faces)]

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
        # 3. map
        pairs = self.map_sources(target_rgb, faces, identities, references)
        seeds = self.seeds(len(pairs), seed)
        # 4-5. regenerate and paste back, face by face
        out = target_rgb.copy()
        for k, ((face, src_idx), s) in enumerate(zip(pairs, seeds)):
            logger.info("swap: face %d/%d (source %d, seed %d)", k + 1, len(pairs), src_idx, s)
            regen = self.regenerate(out, face, identities[src_idx], strength=strength, seed=s,
                                    steps=num_inference_steps, guidance_scale=guidance_scale, prompt=prompt,
                                    adapter_scale=adapter_scale, margin=margin, progress=progress,
                                    callback=callback)
            out = self.paste(out, regen)
        # 6. measure and provenance
        sims: list[float | None] = [None] * len(pairs)
        judge_name = None
        for src_idx in sorted({i for _, i in pairs}):   # each source's reference embedded once
            mine = [k for k, (_, i) in enumerate(pairs) if i == src_idx]
            scores, judge_name = self.judge(refs[src_idx][1], identities[src_idx].face,
                                            [(out, pairs[k][0]) for k in mine])
            for k, score in zip(mine, scores):
                sims[k] = score
        meta = self.provenance(strength=strength, seeds=seeds, faces_swapped=len(pairs), id_judge=judge_name,
                               id_similarity_per_face=sims, steps=num_inference_steps or self.preset.defaults.steps)
        valid = [x for x in sims if x is not None]
        return PipelineOutput(images=[Image.fromarray(out)], seeds=[seeds[0]], preset=self.preset.name,
                              adapter=self.preset.family,
                              id_similarity=[min(valid) if len(valid) == len(sims) and valid else None],
                              metadata=[meta])
