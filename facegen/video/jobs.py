"""What each edit job does to a face *track*: whether the track is edited, with which identity,
judged against whom, and the job's edit settings — decided once, when the track is born.

The rules are the image jobs' rules, applied to tracks:

- the first frame with faces is planned like a photo: ``target_face`` picks the faces (largest,
  all, index N left to right) and, for a swap, :func:`facegen.pipelines.swap.map_sources`
  maps the sources to them (reading order, or ``references``);
- a track born later is edited when ``references`` are given and its face is the same person as
  one of them (the dlib descriptor the tracker computed), or when ``target_face`` is ``all``.

The frame edit itself is the job's own :meth:`~facegen.pipelines._edit_base.FaceEditPipeline.edit_face`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from facegen.choices import AGE, GENDER, SWAP_STRENGTH
from facegen.errors import InvalidArgumentError
from facegen.faces.detect import FacePolicy, select_faces
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding
from facegen.pipelines._edit_base import FaceEditPipeline, FacePlan
from facegen.pipelines._roles import about_photo

logger = logging.getLogger(__name__)

TRACK_ENCODER = "dlib-resnet-v1"


@dataclass
class TrackPlan:
    """A track's edit, fixed at its birth (``source``: the swap source index)."""

    edit: bool
    identity: IDEmbedding | None = None
    source: int | None = None
    reference_rgb: np.ndarray | None = None
    reference_face: Face | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def face_plan(self, face: Face, init_crop: np.ndarray | None) -> FacePlan:
        assert self.identity is not None
        return FacePlan(face, self.identity, self.reference_rgb, self.reference_face, dict(self.info), init_crop)


class VideoJob:
    """Base: the job's pipeline, its edit settings and provenance fields, and the track plans."""

    task = "edit"

    def __init__(self, pipe: FaceEditPipeline, target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[Any] | None = None) -> None:
        self.pipe = pipe
        self.policy = FacePolicy.parse(target_face)
        self.settings: dict[str, Any] = {}
        self.fields: dict[str, Any] = {}
        self.references = list(references) if references else None
        self._ref_embs: list[IDEmbedding] | None = None
        self.planned_first = False

    def digest(self) -> str:
        """What identifies the job's identities (source and reference embeddings), for the run's
        fingerprint: a resumed run must use the same people."""
        import hashlib  # noqa: PLC0415
        h = hashlib.sha256(self.task.encode())
        for ident, _rgb in [*getattr(self, "sources", []), *([self.reference] if getattr(self, "reference", None)
                                                            else [])]:
            h.update(np.ascontiguousarray(ident.vector).tobytes())
        for ref in self.references or []:
            h.update(repr(ref if isinstance(ref, (str, os.PathLike)) else hashlib.sha256(
                np.ascontiguousarray(ref).tobytes()).hexdigest()).encode())
        return h.hexdigest()[:16]

    # -- the track encoder's view of the references (for tracks born later)
    def reference_embeddings(self) -> list[IDEmbedding]:
        if self._ref_embs is None:
            from facegen.id.encoders import embed_image, get_analyzer  # noqa: PLC0415
            from facegen.io import load_image  # noqa: PLC0415
            enc = get_analyzer(TRACK_ENCODER)
            self._ref_embs = []
            for ref in self.references or []:
                with about_photo("reference", ref):
                    self._ref_embs.append(embed_image(load_image(ref), enc)[0])
        return self._ref_embs

    def matching_reference(self, descriptor: np.ndarray | None) -> int | None:
        """The reference the track's face is the same person as (the most similar), else None."""
        if descriptor is None or not self.references:
            return None
        from facegen.id.encoders import same_person  # noqa: PLC0415
        probe = IDEmbedding(descriptor, TRACK_ENCODER)
        scores = [(same_person(r, probe)[1], i) for i, r in enumerate(self.reference_embeddings())
                  if same_person(r, probe)[0]]
        return max(scores)[1] if scores else None

    def plan_births(self, rgb: np.ndarray, frame_faces: Sequence[Face],
                    born: Sequence[tuple[Face, np.ndarray | None]]) -> list[TrackPlan]:
        """Plans for the tracks born in this frame (``born``: face, track descriptor)."""
        if not self.planned_first:
            self.planned_first = True
            selected = select_faces(frame_faces, self.policy) if frame_faces else []
            chosen = self.plan_first(rgb, selected)
            return [chosen.get(id(f), TrackPlan(False)) for f, _d in born]
        plans = []
        for face, desc in born:
            ref = self.matching_reference(desc)
            if ref is not None:
                plans.append(self.plan_face(rgb, face, ref))
            elif self.policy.kind == "all" and not self.references:
                plans.append(self.plan_face(rgb, face, 0))
            else:
                plans.append(TrackPlan(False))
        return plans

    def plan_first(self, rgb: np.ndarray, faces: list[Face]) -> dict[int, TrackPlan]:
        return {id(f): self.plan_face(rgb, f, 0) for f in faces}

    def plan_face(self, rgb: np.ndarray, face: Face, source: int) -> TrackPlan:
        raise NotImplementedError

    # -- resumable state: what cannot be recomputed from the sources
    def plan_state(self, plan: TrackPlan) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {"edit": plan.edit, "source": plan.source, "info": plan.info}
        arrays: dict[str, np.ndarray] = {}
        if plan.edit and plan.source is None:        # own identity and the input frame it came from
            assert plan.identity is not None
            meta["encoder"] = plan.identity.encoder
            arrays["identity"] = plan.identity.vector
            if plan.reference_rgb is not None and plan.reference_face is not None:
                arrays["reference_rgb"] = plan.reference_rgb
                arrays["reference_face"] = np.concatenate([plan.reference_face.bbox, plan.reference_face.kps.ravel()])
        return meta, arrays

    def plan_from_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TrackPlan:
        if not meta["edit"]:
            return TrackPlan(False)
        if meta["source"] is not None:
            plan = self.source_plan(int(meta["source"]))
            plan.info = dict(meta["info"])
            return plan
        face = None
        if "reference_face" in arrays:
            v = arrays["reference_face"].astype(np.float32)
            face = Face(v[:4], v[4:].reshape(-1, 2), 1.0)
        return TrackPlan(True, IDEmbedding(arrays["identity"], meta["encoder"], face), None,
                         arrays.get("reference_rgb"), face, dict(meta["info"]))

    def source_plan(self, i: int) -> TrackPlan:
        raise InvalidArgumentError(f"{self.task} has no sources")


class SwapJob(VideoJob):
    task = "swap"

    def __init__(self, pipe: FaceEditPipeline, sources: Sequence[Any], *,
                 target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[Any] | None = None, strength: float = SWAP_STRENGTH.default, steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None, adapter_scale: float | None = None,
                 margin: float = 0.0) -> None:
        super().__init__(pipe, target_face, references)
        if not sources:
            raise InvalidArgumentError("give at least one source photo or embedding")
        if references is not None and len(references) != len(sources):
            raise InvalidArgumentError(f"got {len(references)} reference photos for {len(sources)} sources "
                                       "(one per source)")
        self.sources = []
        for s in sources:
            with about_photo("source", s):
                self.sources.append(pipe.embed_reference(s))
        self.settings = dict(strength=strength, steps=steps, guidance_scale=guidance_scale, prompt=prompt,
                             adapter_scale=adapter_scale, margin=margin)
        self.fields = {"strength": strength, "steps": steps or pipe.preset.defaults.steps}

    def source_plan(self, i: int) -> TrackPlan:
        identity, rgb = self.sources[i]
        return TrackPlan(True, identity, i, rgb, identity.face, {"source": i})

    def plan_face(self, rgb: np.ndarray, face: Face, source: int) -> TrackPlan:
        return self.source_plan(source)

    def plan_first(self, rgb: np.ndarray, faces: list[Face]) -> dict[int, TrackPlan]:
        from facegen.pipelines.swap import map_sources  # noqa: PLC0415
        if not faces:
            return {}
        pairs = map_sources(rgb, faces, len(self.sources), self.references)
        return {id(f): self.source_plan(i) for f, i in pairs}


class RestoreJob(VideoJob):
    task = "restore"

    def __init__(self, pipe: FaceEditPipeline, *, reference: Any = None,
                 target_face: "str | int | FacePolicy" = "largest",
                 strength: float | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 prompt: str | None = None) -> None:
        from facegen.pipelines.restoration import RESTORE_PROMPT  # noqa: PLC0415
        super().__init__(pipe, target_face, None)
        if strength is not None and not 0.0 < strength <= 1.0:
            raise InvalidArgumentError(f"strength must be in (0, 1], got {strength}")
        self.strength = strength
        self.reference = None
        if reference is not None:
            with about_photo("reference", reference):
                self.reference = pipe.embed_reference(reference)
        text = prompt if prompt is not None else (RESTORE_PROMPT if pipe.gen.adapter.supports_prompt else None)
        self.settings = dict(steps=steps, guidance_scale=guidance_scale, prompt=text)
        self.fields = {"reference": reference is not None, "prompt": text}

    def plan_face(self, rgb: np.ndarray, face: Face, source: int, identity: Any = None) -> TrackPlan:
        from facegen.pipelines.degrade import estimate_degradation  # noqa: PLC0415
        from facegen.pipelines.restoration import restoration_strength  # noqa: PLC0415
        level = float(estimate_degradation(rgb, face))
        info = {"degradation": round(level, 4),
                "strength": restoration_strength(level) if self.strength is None else float(self.strength),
                "identity": "input" if identity is None else "reference"}
        if identity is not None:
            return TrackPlan(True, identity[0], None, identity[1], identity[0].face, info)
        return TrackPlan(True, self.pipe.embed_face(rgb, face), None, rgb.copy(), face, info)

    def plan_first(self, rgb: np.ndarray, faces: list[Face]) -> dict[int, TrackPlan]:
        plans = {id(f): self.plan_face(rgb, f, 0) for f in faces}
        if self.reference is not None and faces:
            from facegen.pipelines.restoration import FaceRestorationPipeline  # noqa: PLC0415
            own = [FacePlan(f, plans[id(f)].identity, rgb, f) for f in faces]  # type: ignore[arg-type]
            k = FaceRestorationPipeline.reference_face_index(own, self.reference[0])
            plans[id(faces[k])] = self.plan_face(rgb, faces[k], 0, identity=self.reference)
        return plans

    def plan_state(self, plan: TrackPlan) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = super().plan_state(plan)
        if plan.info.get("identity") == "reference":      # the reference photo is an input: not stored
            arrays = {"identity": arrays["identity"]}
        return meta, arrays

    def plan_from_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TrackPlan:
        if meta["edit"] and meta["info"].get("identity") == "reference" and self.reference is not None:
            return TrackPlan(True, self.reference[0], None, self.reference[1], self.reference[0].face,
                             dict(meta["info"]))
        return super().plan_from_state(meta, arrays)


class AgeJob(VideoJob):
    task = "age"

    def __init__(self, pipe: Any, target_age: int, *, from_age: int | None, gender: str = GENDER.default,
                 target_face: "str | int | FacePolicy" = "largest", steps: int | None = None,
                 guidance_scale: float | None = None, id_scale: float | None = None, pass1_id_factor: float = 0.5,
                 pass2_strength: float = 0.3) -> None:
        from facegen.pipelines.aging import age_prompt, aging_strength  # noqa: PLC0415
        super().__init__(pipe, target_face, None)
        pipe.check_supported()
        if from_age is None:
            raise InvalidArgumentError("the current age is needed: give --from-age N "
                                       "(no age-estimation model is installed)")
        for name, v in (("target age", target_age), ("current age", from_age)):
            AGE.check(v, name)
        full = pipe.preset.defaults.adapter_scale if id_scale is None else float(id_scale)
        prompt = age_prompt(int(target_age), gender)
        s1 = aging_strength(from_age, target_age)
        self.settings = dict(prompt=prompt, strength1=s1, strength2=pass2_strength, steps=steps,
                             guidance_scale=guidance_scale, scale1=(full or 1.0) * pass1_id_factor, scale2=full)
        self.fields = {"target_age": int(target_age), "from_age": int(from_age), "prompt": prompt,
                       "pass1_strength": s1, "pass2_strength": pass2_strength}

    def plan_face(self, rgb: np.ndarray, face: Face, source: int) -> TrackPlan:
        return TrackPlan(True, self.pipe.embed_face(rgb, face), None, rgb.copy(), face, {})
