"""SCRFD face detection from a local insightface model pack, run with onnxruntime.

Reads ``<models_dir>/<pack>/`` (``antelopev2``: ``scrfd_10g_bnkps.onnx``; ``buffalo_l``:
``det_10g.onnx``).  The detector size is always explicit (``det_size=(640, 640)`` by
default): insightface 1.0 changed its implicit default, so we never rely on it.
The packs are non-commercial: using them needs an explicit licence acceptance.  Each pack's
files and licence are its :mod:`facegen.models.auxiliary` entry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from facegen.errors import InvalidArgumentError, ModelNotFoundError
from facegen.faces.types import Face
from facegen.models.auxiliary import AUXILIARY, pack_detectors
from facegen.onnx_runtime import create_session
from facegen.paths import DEFAULT_ACCESS, ModelAccess, check_sha256

logger = logging.getLogger(__name__)

PACK_DETECTORS: dict[str, str] = pack_detectors()     # {"antelopev2": "scrfd_10g_bnkps.onnx", ...}
PACK_LICENCE = AUXILIARY["antelopev2"].licence

# number of ONNX outputs -> (feature-map count, strides, anchors per location, has keypoints)
_LAYOUTS = {6: (3, (8, 16, 32), 2, False), 9: (3, (8, 16, 32), 2, True),
            10: (5, (8, 16, 32, 64, 128), 1, False), 15: (5, (8, 16, 32, 64, 128), 1, True)}


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= iou_threshold]
    return keep


def anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """Anchor centres of one SCRFD feature map, (H·W·A, 2) in input pixels, row-major."""
    ys, xs = np.mgrid[:height, :width]
    centers = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    return np.repeat(centers, num_anchors, axis=0) if num_anchors > 1 else centers


def letterbox(rgb: np.ndarray, det_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio into the top-left of a zero det_size canvas (w, h)."""
    det_w, det_h = det_size
    h, w = rgb.shape[:2]
    if h / w > det_h / det_w:
        new_h, new_w = det_h, max(1, int(det_h * w / h))
    else:
        new_w, new_h = det_w, max(1, int(det_w * h / w))
    scale = new_h / h
    canvas = np.zeros((det_h, det_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
    return canvas, scale


class SCRFDDetector:
    """insightface SCRFD over onnxruntime (input RGB, (x − 127.5) / 128)."""

    name = "insightface"

    def __init__(self, pack: str = "antelopev2", access: ModelAccess = DEFAULT_ACCESS,
                 det_size: tuple[int, int] = (640, 640), det_thresh: float = 0.5, nms_thresh: float = 0.4,
                 providers: str | Sequence[str] | None = None, session_factory: Any = None) -> None:
        entry = AUXILIARY.get(pack) if pack in PACK_DETECTORS else None
        if entry is None or not entry.commercial_use:    # a pack facegen does not know: its terms are the zoo's
            access.require(f"insightface model pack '{pack}'", entry.licence if entry else PACK_LICENCE)
        if len(det_size) != 2 or min(det_size) <= 0 or det_size[0] % 32 or det_size[1] % 32:
            raise InvalidArgumentError(f"det_size must be two positive multiples of 32, got {det_size}")
        self.pack = pack
        self.det_size = (int(det_size[0]), int(det_size[1]))
        self.det_thresh = det_thresh
        self.nms_thresh = nms_thresh
        folder = access.root / pack
        self.path = self.find_model(folder, pack)
        self.session = create_session(self.path, providers, session_factory)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) not in _LAYOUTS:
            raise InvalidArgumentError(
                f"{self.path.name} has {len(self.output_names)} outputs: not an SCRFD detector")
        self.fmc, self.strides, self.num_anchors, self.use_kps = _LAYOUTS[len(self.output_names)]
        if not self.use_kps:
            raise InvalidArgumentError(f"{self.path.name} predicts no keypoints; facegen needs a *_kps SCRFD model")

    @staticmethod
    def find_model(folder: Path, pack: str) -> Path:
        """The pack's detector in ``folder`` (``<models_dir>/<pack>``): its registry entry's file,
        else (a pack facegen does not know) the first ``*det*``/``*scrfd*`` ONNX file there."""
        entry = AUXILIARY.get(pack) if pack in PACK_DETECTORS else None
        name = PACK_DETECTORS.get(pack)
        if entry is not None and name is not None:
            weights = entry.file("detector")
            path = weights.locate(folder.parent)          # relpath is "<pack>/<file>"
            if path is not None:
                check_sha256(path, weights.sha256)
                return path
        if name is None:
            candidates = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
            for path in candidates:
                if "det" in path.name or "scrfd" in path.name:
                    return path
        raise ModelNotFoundError(f"insightface pack '{pack}' detector", [name or "scrfd_*.onnx"], folder,
                                 hint=entry.hint if entry and entry.hint else
                                 "download the pack from the insightface model zoo and unzip it there")

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        canvas, scale = letterbox(rgb, self.det_size)
        blob = (canvas.astype(np.float32) - 127.5) / 128.0
        return blob.transpose(2, 0, 1)[None], scale

    def decode(self, outputs: Sequence[np.ndarray], scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs → (boxes (N,4), scores (N,), kps (N,5,2)) in original image pixels."""
        det_w, det_h = self.det_size
        boxes_all, scores_all, kps_all = [], [], []
        for idx, stride in enumerate(self.strides):
            scores = np.asarray(outputs[idx]).reshape(-1)
            bbox = np.asarray(outputs[idx + self.fmc]).reshape(-1, 4) * stride
            kps = np.asarray(outputs[idx + 2 * self.fmc]).reshape(-1, 10) * stride
            centers = anchor_centers(det_h // stride, det_w // stride, stride, self.num_anchors)
            pos = np.where(scores >= self.det_thresh)[0]
            c = centers[pos]
            b = bbox[pos]
            boxes_all.append(np.stack([c[:, 0] - b[:, 0], c[:, 1] - b[:, 1], c[:, 0] + b[:, 2], c[:, 1] + b[:, 3]], -1))
            k = kps[pos].reshape(-1, 5, 2) + c[:, None, :]
            kps_all.append(k)
            scores_all.append(scores[pos])
        boxes = np.concatenate(boxes_all) / scale if boxes_all else np.zeros((0, 4))
        scores = np.concatenate(scores_all) if scores_all else np.zeros((0,))
        kps = np.concatenate(kps_all) / scale if kps_all else np.zeros((0, 5, 2))
        keep = nms(boxes, scores, self.nms_thresh) if len(scores) else []
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), kps[keep].astype(np.float32)

    def _faces(self, rgb: np.ndarray, outputs: Sequence[np.ndarray], scale: float) -> list[Face]:
        boxes, scores, kps = self.decode(outputs, scale)
        h, w = rgb.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w - 1)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h - 1)
        return [Face(bbox=b, kps=k, score=float(s), extra={"detector": f"scrfd-{self.pack}"})
                for b, s, k in zip(boxes, scores, kps)]

    def detect(self, rgb: np.ndarray) -> list[Face]:
        blob, scale = self.preprocess(rgb)
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        return self._faces(rgb, outputs, scale)

    @property
    def batchable(self) -> bool:
        """Whether the exported model takes a batch (a dynamic first input dimension)."""
        dim = self.session.get_inputs()[0].shape[0]
        return not (isinstance(dim, int) and dim > 0)

    def detect_batch(self, rgbs: Sequence[np.ndarray], max_batch: int = 32) -> list[list[Face]]:
        """Faces of each image (same as :meth:`detect` on each), in one session call per
        ``max_batch`` images when the model takes a batch (every image is letterboxed to
        ``det_size``, so sizes may differ); one call per image otherwise."""
        if not self.batchable or len(rgbs) < 2:
            return [self.detect(rgb) for rgb in rgbs]
        out: list[list[Face]] = []
        for start in range(0, len(rgbs), max_batch):
            chunk = rgbs[start:start + max_batch]
            prepared = [self.preprocess(rgb) for rgb in chunk]
            blob = np.concatenate([b for b, _ in prepared])
            outputs = [np.asarray(o) for o in self.session.run(self.output_names, {self.input_name: blob})]
            if any(o.ndim != 3 or o.shape[0] != len(chunk) for o in outputs):     # batch-1 layout after all
                out.extend(self.detect(rgb) for rgb in chunk)
                continue
            out.extend(self._faces(rgb, [o[i] for o in outputs], scale)
                       for i, (rgb, (_, scale)) in enumerate(zip(chunk, prepared)))
        return out
