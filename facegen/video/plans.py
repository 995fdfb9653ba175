"""Which tracks a video's edit job edits, and with which plan: the job's own plans, applied
to tracks (decided once, when a track is born), and what of them a resumed run needs.

- the first frame with faces is planned like a photo: the job's policy picks the faces and the
  job's :meth:`~facegen.pipelines._edit_base.EditJob.plan` plans them (a swap maps its sources
  to them: reading order, or references);
- a track born later is edited when the job has ``references`` and its face is the same person
  as one of them (the tracker's dlib descriptor), or when the policy is ``all``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegen.faces.detect import select_faces
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding
from facegen.pipelines._edit_base import EditJob, FacePlan
from facegen.pipelines._roles import about_photo

#: the tracker's identity descriptor (tracks are matched to reference photos with it)
TRACK_ENCODER = "dlib-resnet-v1"


def _face_vector(face: Face) -> np.ndarray:
    return np.concatenate([np.asarray(face.bbox, np.float32).ravel(), np.asarray(face.kps, np.float32).ravel()])


def _face_from(v: np.ndarray) -> Face:
    v = v.astype(np.float32)
    return Face(v[:4], v[4:].reshape(-1, 2), 1.0)


class TrackPlanner:
    """The job's plans for the tracks of one run."""

    def __init__(self, job: EditJob) -> None:
        self.job = job
        self._ref_embs: list[IDEmbedding] | None = None
        self.planned_first = False

    def plan_births(self, rgb: np.ndarray, frame_faces: list[Face],
                    born: list[tuple[Face, np.ndarray | None]]) -> list[FacePlan | None]:
        """The job's plans for the tracks born in this frame (``born``: face, track descriptor).

        The first frame with faces is planned like a photo (the job's policy picks the faces, the
        job's :meth:`~facegen.pipelines._edit_base.EditJob.plan` plans them); a track born later
        is edited when the job has ``references`` and its face is one of them (the tracker's
        descriptor), or when the policy is ``all``."""
        if not self.planned_first:
            self.planned_first = True
            selected = select_faces(frame_faces, self.job.policy) if frame_faces else []
            chosen = {id(p.face): p for p in (self.job.plan(rgb, selected) if selected else [])}
            return [chosen.get(id(f)) for f, _d in born]
        plans: list[FacePlan | None] = []
        for face, desc in born:
            ref = self.matching_reference(desc)
            if ref is not None:
                plans.append(self.job.plan_face(rgb, face, ref))
            elif self.job.policy.kind == "all" and not self.job.references:
                plans.append(self.job.plan_face(rgb, face, 0))
            else:
                plans.append(None)
        return plans

    def matching_reference(self, descriptor: np.ndarray | None) -> int | None:
        """The job's reference photo the track's face is the same person as (the most similar), else None."""
        if descriptor is None or not self.job.references:
            return None
        from facegen.id.encoders import same_person  # noqa: PLC0415
        if self._ref_embs is None:
            from facegen.id.encoders import embed_image, get_analyzer  # noqa: PLC0415
            from facegen.io import load_image  # noqa: PLC0415
            enc = get_analyzer(TRACK_ENCODER)
            self._ref_embs = []
            for ref in self.job.references:
                with about_photo("reference", ref):
                    self._ref_embs.append(embed_image(load_image(ref), enc)[0])
        probe = IDEmbedding(descriptor, TRACK_ENCODER)
        scores = [(same_person(r, probe)[1], i) for i, r in enumerate(self._ref_embs) if same_person(r, probe)[0]]
        return max(scores)[1] if scores else None

    # ------------------------------------------------------------------ resumable plans
    def plan_state(self, plan: FacePlan | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What of a track's plan cannot be rebuilt from the job's inputs (an identity taken from a frame)."""
        if plan is None:
            return {"edit": False}, {}
        meta: dict[str, Any] = {"edit": True, "info": plan.info, "encoder": plan.identity.encoder}
        arrays = {"face": _face_vector(plan.face)}
        if self.job.known_plan(plan.face, plan.info) is None:      # its own identity and the frame it came from
            arrays["identity"] = plan.identity.vector
            if plan.reference_rgb is not None and plan.reference_face is not None:
                arrays["reference_rgb"] = plan.reference_rgb
                arrays["reference_face"] = _face_vector(plan.reference_face)
        return meta, arrays

    def plan_from_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> FacePlan | None:
        if not meta["edit"]:
            return None
        face = _face_from(arrays["face"])
        known = self.job.known_plan(face, dict(meta["info"]))
        if known is not None:
            return known
        ref_face = _face_from(arrays["reference_face"]) if "reference_face" in arrays else None
        return FacePlan(face, IDEmbedding(arrays["identity"], meta["encoder"], ref_face), arrays.get("reference_rgb"),
                        ref_face, dict(meta["info"]))
