"""The honest per-person report of a several-people image.

After generation, the faces in the result are detected, matched to the layout's face boxes
(:func:`match_faces`), and each matched face is compared with *every* person's reference by
an encoder independent of the conditioning one (:class:`~facegen.metrics.IDJudge`) — so the
report says whether person A's face came out where it should, how much it looks like A, and
how much it looks like B instead (``cross_similarity``).  A judge that cannot run gives
``None``, never a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facegen.errors import FacegenError, FaceTooSmallError, NoFaceError
from facegen.id.embedding import IDEmbedding, mean_embedding

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
PixelBox = tuple[int, int, int, int]
#: a face counts as "where it should be" when its centre lies within this fraction of the box's
#: size around the box (faces drift a little from the drawn box)
CENTRE_SLACK = 0.5


@dataclass(frozen=True)
class PersonReport:
    """One person in one image.

    box: their face box (fractions of the image); found: a face was detected there (None: not
    measured); face_box: that face's detected box (pixels); id_similarity: its similarity to
    this person's reference; similarity_to: its similarity to each person's reference, in
    order (``similarity_to[index] == id_similarity``); judge: the encoder that measured it.
    """

    index: int
    box: Box
    found: bool | None
    face_box: tuple[float, float, float, float] | None = None
    id_similarity: float | None = None
    similarity_to: tuple[float | None, ...] = ()
    judge: str | None = None

    @property
    def cross_similarity(self) -> float | None:
        """The highest similarity to anyone else's reference (did A end up looking like B?)."""
        others = [s for j, s in enumerate(self.similarity_to) if j != self.index and s is not None]
        return max(others) if others else None

    @property
    def looks_like_someone_else(self) -> bool | None:
        own, cross = self.id_similarity, self.cross_similarity
        return None if own is None or cross is None else cross > own

    def to_dict(self) -> dict[str, Any]:
        return {"person": self.index, "box": [round(float(v), 4) for v in self.box], "face_found": self.found,
                "face_box": None if self.face_box is None else [round(float(v), 1) for v in self.face_box],
                "id_similarity": self.id_similarity, "similarity_to": list(self.similarity_to),
                "cross_similarity": self.cross_similarity, "looks_like_someone_else": self.looks_like_someone_else,
                "judge": self.judge}


def unmeasured_people(boxes: Sequence[Box], pixel_boxes: Sequence[PixelBox]) -> list[PersonReport]:
    return [PersonReport(k, tuple(b), None) for k, b in enumerate(boxes)]  # type: ignore[arg-type]


def single_person(sim: float | None) -> list[PersonReport]:
    """The report of today's single-person call: the whole image is the person's place, the
    pipeline's own measure (largest face, independent judge) their similarity."""
    return [PersonReport(0, (0.0, 0.0, 1.0, 1.0), None if sim is None else True, None, sim,
                         (sim,) if sim is not None else ())]


def overall_similarity(reports: Sequence[PersonReport]) -> float | None:
    """An image's ID similarity: its worst-kept person's (None when any person was not measured)."""
    sims = [r.id_similarity for r in reports]
    return None if not sims or any(s is None for s in sims) else float(min(sims))  # type: ignore[type-var]


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_faces(boxes: Sequence[PixelBox], faces: Sequence[Sequence[float]]) -> list[int | None]:
    """For each face box, the index of the detected face placed there (None: none).  A face can
    go to a box when its centre lies within :data:`CENTRE_SLACK` of the box's size around it;
    pairs are taken by overlap (IoU) then centre distance, each face and box used once."""
    pairs = []
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        sx, sy = CENTRE_SLACK * (x1 - x0), CENTRE_SLACK * (y1 - y0)
        for f, fb in enumerate(faces):
            cx, cy = (fb[0] + fb[2]) / 2, (fb[1] + fb[3]) / 2
            if x0 - sx <= cx <= x1 + sx and y0 - sy <= cy <= y1 + sy:
                dist = float(np.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2))
                pairs.append((-_iou((x0, y0, x1, y1), fb), dist, k, f))
    match: list[int | None] = [None] * len(boxes)
    used: set[int] = set()
    for _, _, k, f in sorted(pairs):
        if match[k] is None and f not in used:
            match[k] = f
            used.add(f)
    return match


@dataclass
class PeopleJudge:
    """Detects and embeds the faces of a result with one encoder and scores them against each
    person's reference (``refs[k]``; None: that person's reference photo had no face)."""

    name: str
    encoder: Any
    refs: list[IDEmbedding | None]

    def report(self, rgb: np.ndarray, boxes: Sequence[Box], pixel_boxes: Sequence[PixelBox]) -> list[PersonReport]:
        try:
            try:
                faces = self.encoder.detect(rgb)
            except (NoFaceError, FaceTooSmallError):
                faces = []
            match = match_faces(pixel_boxes, [f.bbox for f in faces])
            out = []
            for k, (box, m) in enumerate(zip(boxes, match)):
                if m is None:
                    out.append(PersonReport(k, tuple(box), False, judge=self.name))  # type: ignore[arg-type]
                    continue
                emb = self.encoder.embed(rgb, faces[m])
                from facegen.id.encoders import similarity
                sims = tuple(None if r is None else similarity(r, emb) for r in self.refs)
                out.append(PersonReport(k, tuple(box), True, tuple(float(v) for v in faces[m].bbox),  # type: ignore[arg-type]
                                        sims[k], sims, self.name))
            return out
        except FacegenError as exc:
            logger.warning("per-person ID similarity not measured: %s", exc)
            return unmeasured_people(boxes, pixel_boxes)


def make_people_judge(pipe: Any, identities: Sequence[IDEmbedding],
                      photos: Sequence[Sequence[np.ndarray]]) -> PeopleJudge | None:
    """The judge, made once per call: with every person's photos, an encoder independent of the
    conditioning one (each reference = the mean of the person's photos); with embeddings, the
    identities' own encoder.  None when no judge can run (a warning says why)."""
    try:
        from facegen.id.encoders import get_analyzer
        from facegen.metrics import IDJudge
    except ImportError:
        return None
    try:
        if all(photos):
            judge = IDJudge.create(exclude=pipe.encoder, access=pipe.access)
            refs = []
            for rgbs in photos:
                found = [r for r in (judge.reference(rgb) for rgb in rgbs) if r is not None]
                refs.append(mean_embedding(found) if len(found) > 1 else found[0] if found else None)
            return PeopleJudge(judge.encoder_name, judge.encoder, refs)
        enc = get_analyzer(pipe.encoder, pipe.access)
        return PeopleJudge(pipe.encoder, enc, list(identities))
    except FacegenError as exc:
        logger.warning("per-person ID similarity not measured: %s", exc)
        return None
