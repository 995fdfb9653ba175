"""Face tracks: detections associated over time, so a person keeps one track through a clip.

Association per frame (:meth:`Tracker.update`):

1. box overlap: a detection and a recently seen track whose boxes overlap (IoU >= ``iou_min``)
   and that no other detection or track competes for are the same face;
2. identity: every other detection (two faces crossing, a face back after a gap, a new face)
   is embedded with the dlib descriptor (an encoder independent of the edit's) and joins the
   most similar unmatched track if the encoder says "same person" (its registry threshold) —
   also a track lost for longer than ``max_gap`` frames, so a person who leaves and comes back
   keeps their track;
3. otherwise it starts a new track.

Embeddings are computed only for new faces and for detections the overlap cannot settle, so a
steady face costs one embedding for the whole clip beyond the detector. The tracker's state is
plain data (:meth:`Tracker.state`, :meth:`Tracker.load_state`) so a resumed run continues with
the same tracks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from facegen.faces.types import Face

logger = logging.getLogger(__name__)

Embedder = Callable[[np.ndarray, Face], np.ndarray]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One person's face over time; ``embedding``: the dlib descriptor, when it was needed."""

    id: int
    bbox: np.ndarray
    first_frame: int
    last_frame: int
    hits: int = 1
    embedding: np.ndarray | None = None

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"id": self.id, "first_frame": self.first_frame, "last_frame": self.last_frame, "hits": self.hits,
                "embedded": self.embedding is not None}
        arrays = {"bbox": np.asarray(self.bbox, np.float64)}
        if self.embedding is not None:
            arrays["embedding"] = self.embedding
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Track":
        return cls(int(meta["id"]), arrays["bbox"], int(meta["first_frame"]), int(meta["last_frame"]),
                   int(meta["hits"]), arrays.get("embedding"))


@dataclass
class Tracker:
    """Box overlap + embedding association (see the module docstring)."""

    embedder: Embedder | None = None
    iou_min: float = 0.3
    max_gap: int = 15
    same_threshold: float = 0.4          # dlib: 1 − distance ≥ 0.4 (distance ≤ 0.6)
    tracks: list[Track] = field(default_factory=list)
    embeddings_computed: int = 0

    def _embed(self, rgb: np.ndarray, face: Face) -> np.ndarray | None:
        if self.embedder is None:
            return None
        self.embeddings_computed += 1
        try:
            return np.asarray(self.embedder(rgb, face), np.float32)
        except Exception as exc:  # noqa: BLE001 - a face the encoder cannot align: overlap only
            logger.debug("track embedding failed: %s", exc)
            return None

    def _similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(1.0 - np.linalg.norm(a - b))

    def update(self, frame: int, rgb: np.ndarray, faces: Sequence[Face]) -> list[tuple[Track, Face, bool]]:
        """Assign this frame's ``faces`` to tracks: ``(track, face, born)`` per face, ``born``
        when the face starts a new track."""
        recent = [t for t in self.tracks if frame - t.last_frame <= self.max_gap and t.last_frame < frame]
        ious = np.array([[iou(t.bbox, f.bbox) for f in faces] for t in recent]).reshape(len(recent), len(faces))
        hit = ious >= self.iou_min
        out: list[tuple[Track, Face, bool]] = []
        matched_t: set[int] = set()
        matched_f: set[int] = set()
        for ti in range(len(recent)):           # 1. unambiguous overlaps
            for fi in np.flatnonzero(hit[ti]):
                if hit[ti].sum() == 1 and hit[:, fi].sum() == 1:
                    matched_t.add(ti)
                    matched_f.add(int(fi))
                    out.append((recent[ti], faces[fi], False))
        # 2. identity for the rest, against every track not matched in this frame
        rest = [fi for fi in range(len(faces)) if fi not in matched_f]
        taken = {id(t) for t, _f, _b in out}
        candidates = [t for t in self.tracks if id(t) not in taken and t.last_frame < frame]
        pairs = []
        embs: dict[int, np.ndarray | None] = {}
        for fi in rest:
            embs[fi] = self._embed(rgb, faces[fi])
            for t in candidates:
                overlap = iou(t.bbox, faces[fi].bbox) if frame - t.last_frame <= self.max_gap else 0.0
                if embs[fi] is not None and t.embedding is not None:
                    sim = self._similarity(embs[fi], t.embedding)
                    if sim >= self.same_threshold:
                        pairs.append((sim + 0.5 * overlap, fi, t))
                elif overlap >= self.iou_min:       # no embedding to compare: overlap decides
                    pairs.append((overlap - 1.0, fi, t))
        used_f: set[int] = set()
        used_t: set[int] = set()
        for _score, fi, t in sorted(pairs, key=lambda p: (-p[0], p[1], p[2].id)):
            if fi in used_f or t.id in used_t:
                continue
            used_f.add(fi)
            used_t.add(t.id)
            out.append((t, faces[fi], False))
        for fi in rest:                          # 3. new tracks
            if fi in used_f:
                continue
            t = Track(len(self.tracks), np.asarray(faces[fi].bbox, np.float64), frame, frame, 0, embs.get(fi))
            self.tracks.append(t)
            out.append((t, faces[fi], True))
        for t, f, _born in out:
            t.bbox = np.asarray(f.bbox, np.float64)
            t.last_frame = frame
            t.hits += 1
        for fi, e in embs.items():               # refresh the descriptor of tracks that needed one
            if e is not None:
                t = next(t for t, f, _b in out if f is faces[fi])
                t.embedding = e if t.embedding is None else _unit_mean(t.embedding, e)
        return sorted(out, key=lambda x: x[0].id)

    def state(self) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        metas, arrays = [], {}
        for t in self.tracks:
            m, a = t.to_state()
            metas.append(m)
            arrays.update({f"track{t.id}.{k}": v for k, v in a.items()})
        return metas, arrays

    def load_state(self, metas: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> None:
        self.tracks = [Track.from_state(m, {k.split(".", 1)[1]: v for k, v in arrays.items()
                                            if k.startswith(f"track{m['id']}.")}) for m in metas]


def _unit_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A running descriptor: the mean of the old and the new (dlib's metric is Euclidean)."""
    return ((np.asarray(a, np.float32) + np.asarray(b, np.float32)) / 2).astype(np.float32)
