"""Face swap: a source identity onto the face(s) of a target photo.

Keeps the target's pose, expression, lighting and background: only the target's face region
is regenerated (ID-conditioned inpainting of its aligned crop, ``strength`` < 1 keeps the
target's structure), colour-matched, and pasted back with a feathered mask.

Stages of ``__call__``: 1 check inputs → 2 source identities (1-2: the job, :class:`SwapJob`)
→ 3 target faces by policy, sources mapped to them → 4 regenerate each face → 5 paste back
(the target's mouth kept with ``keep_mouth``) → 6 measure and provenance (3-6: the edit skeleton).
The same job runs on a video (:class:`facegen.video.pipeline.VideoEditPipeline`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from facegen.choices import SWAP_STRENGTH
from facegen.errors import InvalidArgumentError
from facegen.faces.detect import FacePolicy
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding
from facegen.io import load_image
from facegen.pipelines._edit_base import (EditJob, EditSettings, EditSkeleton, FaceEditPipeline, FacePlan, ImageInput,
                                          RegeneratedCrop, require_consent)
from facegen.pipelines._roles import about_photo
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

DEFAULT_SWAP_STRENGTH = SWAP_STRENGTH.default


def check_swap_choices(n_sources: int, references: Sequence[Any] | None = None,
                       target_face: "str | int | FacePolicy" = "largest") -> None:
    """The swap's choices that need no model: the face policy and one reference photo per source
    (the CLI calls this before loading anything)."""
    FacePolicy.parse(target_face)
    if references is not None and len(references) != n_sources:
        raise InvalidArgumentError(f"got {len(references)} reference photos for {n_sources} sources "
                                   "(one per source)")


def map_sources(target_rgb: np.ndarray, target_faces: list[Any], n_sources: int,
                references: Sequence[ImageInput] | None) -> list[tuple[Any, int]]:
    """(target face, source index) pairs of a swap (diffusion or inswapper).

    Without ``references``: one source → every selected face; several sources → the
    selected faces in reading order, one each.  With ``references`` (one photo per
    source, showing the person to replace), each source goes to the target face most
    similar to its reference (by the dlib descriptor, an encoder independent of the swap's).
    """
    if references is not None:
        check_swap_choices(n_sources, references)
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


@dataclass(frozen=True)
class SwapSettings(EditSettings):
    """The diffusion swap's settings: how much of the target face is re-drawn, sampling, text,
    ID scale, crop margin (and ``keep_mouth``)."""

    strength: float = DEFAULT_SWAP_STRENGTH
    steps: int | None = None
    guidance_scale: float | None = None
    prompt: str | None = None
    adapter_scale: float | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.strength) <= 1.0:
            raise InvalidArgumentError(f"strength must be in (0, 1], got {self.strength}")


class SwapJob(EditJob):
    """A swap: the sources' identities (embedded once, when the job is made) put on the target
    faces.  Rules: :func:`map_sources` maps the sources to the selected faces of a photo (or of a
    video's first frame with faces); a face that enters a video later gets the source it was
    matched to by reference."""

    task = "swap"
    what = "face swap"
    image_role = "target"

    def __init__(self, pipe: EditSkeleton, sources: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding],
                 settings: EditSettings, *, consent: bool, target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[ImageInput] | None = None) -> None:
        super().__init__(pipe, settings, consent=consent, target_face=target_face, references=references)
        items = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        if not items:
            raise InvalidArgumentError("give at least one source photo or embedding")
        if references is not None and len(references) != len(items):
            raise InvalidArgumentError(f"got {len(references)} reference photos for {len(items)} sources "
                                       "(one per source)")
        self.sources: list[tuple[IDEmbedding, np.ndarray | None]] = []
        for s in items:
            with about_photo("source", s):
                self.sources.append(pipe.embed_reference(s))

    def identities(self) -> list[IDEmbedding]:
        return [ident for ident, _rgb in self.sources]

    def plan(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[FacePlan]:
        pairs = map_sources(rgb, list(faces), len(self.sources), self.references)
        return [self.plan_face(rgb, face, i) for face, i in pairs]

    def record(self, plans: Sequence[FacePlan]) -> dict[str, Any]:
        return {**self.fields, "faces_swapped": len(plans)}

    def plan_face(self, rgb: np.ndarray, face: Face, source: int = 0) -> FacePlan:
        identity, src_rgb = self.sources[source]
        return FacePlan(face, identity, src_rgb, identity.face, {"source": source})

    def known_plan(self, face: Face, info: dict[str, Any]) -> FacePlan | None:
        return self.plan_face(np.zeros((1, 1, 3), np.uint8), face, int(info["source"])) if "source" in info \
            else None


class FaceSwapPipeline(FaceEditPipeline):
    """The diffusion swap engine (ID-conditioned inpainting of each target face)."""

    task = "swap"

    def job(self, source: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding], *, consent: bool = False,
            target_face: "str | int | FacePolicy" = "largest", references: Sequence[ImageInput] | None = None,
            strength: float = DEFAULT_SWAP_STRENGTH, num_inference_steps: int | None = None,
            guidance_scale: float | None = None, prompt: str | None = None, adapter_scale: float | None = None,
            margin: float = 0.0, keep_mouth: bool = False) -> SwapJob:
        """The swap job (photo: :meth:`__call__`; video: :class:`~facegen.video.pipeline.VideoEditPipeline`)."""
        require_consent(consent, SwapJob.what)                 # before any source is embedded
        settings = SwapSettings(keep_mouth=keep_mouth, strength=strength, steps=num_inference_steps,
                                guidance_scale=guidance_scale, prompt=prompt, adapter_scale=adapter_scale,
                                margin=margin)
        job = SwapJob(self, source, settings, consent=consent, target_face=target_face, references=references)
        job.fields.update(strength=strength, steps=num_inference_steps or self.preset.defaults.steps)
        if keep_mouth:
            job.fields["keep_mouth"] = True
        return job

    def __call__(self, source: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding], target: ImageInput, *,
                 consent: bool = False, target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[ImageInput] | None = None, strength: float = DEFAULT_SWAP_STRENGTH,
                 seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None,
                 adapter_scale: float | None = None, margin: float = 0.0, keep_mouth: bool = False,
                 progress: bool = True, callback: Any = None) -> PipelineOutput:
        # 1. check inputs, 2. source identities (the job)
        job = self.job(source, consent=consent, target_face=target_face, references=references, strength=strength,
                       num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, prompt=prompt,
                       adapter_scale=adapter_scale, margin=margin, keep_mouth=keep_mouth)
        # 3. target faces, sources mapped to them → 4-6. regenerate, paste back, judge, record (the skeleton)
        return self.run_job(job, target, seed, progress=progress, callback=callback)

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], settings: EditSettings, *,
                  progress: bool = False, callback: Any = None) -> RegeneratedCrop:
        assert isinstance(settings, SwapSettings)
        return self.regenerate(rgb, plan.face, plan.identity, strength=settings.strength, seed=seeds[0],
                               steps=settings.steps, guidance_scale=settings.guidance_scale, prompt=settings.prompt,
                               adapter_scale=settings.adapter_scale, margin=settings.margin,
                               source_crop=plan.init_crop, progress=progress, callback=callback)
