"""The invisible watermark: a facegen marker and a short content id hidden in the pixels.

Method (chosen by measurement, see ``benchmarks/bench_provenance.py`` and RESULTS.md):
RivaGAN from the ``invisible-watermark`` package (32 bits, ONNX weights inside the wheel),
run directly on onnxruntime (CUDA provider when onnxruntime has it). It survives JPEG,
resizing and crops, which the DCT methods do not.

Payload (32 bits): the 16-bit :data:`MARKER` followed by the 16-bit content id
(:func:`content_id`: four hex digits, also written in the metadata and the C2PA manifest).

Cost is bounded: the mark is computed at a working resolution whose long side is at most
:data:`WORK_SIDE` pixels and the residual (marked - original) is upsampled to the full image,
so a 1024² or 2048² image costs the same as a 256² one (and the low-frequency mark survives
downscaling and JPEG better than one computed at full size). :func:`detect` decodes at the
working resolution and at twice the image's size (for images that were downscaled after
marking) and keeps the better reading.

Everything is deterministic given the pixels and the payload (same onnxruntime build and
provider), which the dataset's byte-identical resume needs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import MissingDependencyError

logger = logging.getLogger(__name__)

METHOD = "rivagan"
#: the fixed facegen marker (first 16 of the 32 payload bits); 8 ones, 8 zeros
MARKER = 0x9A5C
MARKER_BITS = 16
ID_BITS = 16
#: long side of the resolution the mark is computed (and read) at. Measured on 512² photos
#: (benchmarks/RESULTS.md): at 256 the mark is lower in frequency and survives JPEG q75 + resize
#: 0.5 + crop 10 % together (6/6), which marking at 512 does not (0/6), at 3.5x less CPU
WORK_SIDE = 256
#: gains on RivaGAN's residual, tried in turn until the mark reads back exactly (1 = as
#: trained, ~42.5 dB PSNR; each gain g costs 20·log10(g) dB: 1.6 -> ~38.5 dB, 2.2 -> ~35.6 dB).
#: Flat, dark or clipped images (a dark suit, a white shirt) need the later ones; measured on
#: 50 photo crops, 2 of 50 needed 1.6 (benchmarks/RESULTS.md).
GAINS = (1.0, 1.6, 2.2)
#: smallest image that can hold the mark (short side, and area)
MIN_SIDE = 128
MIN_AREA = 256 * 256
#: marker bits (of 16) that must agree to say "found": P(>= 15 of 16 by chance) = 2.6e-4
#: per reading, two readings per image
FOUND_AT = 15

_SESSIONS: dict[str, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Reading:
    """What :func:`detect` read: ``found`` when the marker agrees in at least
    :data:`FOUND_AT` of its 16 bits; ``content_id`` is then the payload's id."""

    found: bool
    bit_agreement: float               # share of the marker bits that agree (0..1)
    content_id: str | None
    confidence: float                  # median |logit| of the marker bits at the best reading
    scale: float                       # the reading's resize factor
    reason: str | None = None          # why nothing could be read (image too small)

    def to_dict(self) -> dict[str, Any]:
        out = {"found": self.found, "bit_agreement": round(self.bit_agreement, 4),
               "content_id": self.content_id if self.found else None, "method": METHOD,
               "confidence": round(self.confidence, 2)}
        if self.reason:
            out["reason"] = self.reason
        return out


def available() -> bool:
    """True when the ``invisible-watermark`` wheel (its RivaGAN ONNX files) is installed."""
    return _model_dir() is not None


def _model_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("imwatermark")   # not imported: it imports torch
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations)))
    ok = (d / "rivagan_encoder.onnx").is_file() and (d / "rivagan_decoder.onnx").is_file()
    return d if ok else None


def _session(kind: str) -> Any:
    with _LOCK:
        if kind not in _SESSIONS:
            d = _model_dir()
            if d is None:
                raise MissingDependencyError("invisible-watermark", "provenance", "the invisible watermark")
            from facegen.onnx_runtime import create_session  # noqa: PLC0415

            _SESSIONS[kind] = create_session(d / f"rivagan_{kind}.onnx")
        return _SESSIONS[kind]


def content_id(rgb: np.ndarray, metadata_json: str = "") -> str:
    """Four hex digits (16 bits) from the sha256 of the unmarked pixels and the metadata."""
    digest = hashlib.sha256()
    digest.update(f"{rgb.shape}".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    digest.update(metadata_json.encode("utf-8"))
    return digest.hexdigest()[:4]


def payload_bits(cid: str) -> np.ndarray:
    value = (MARKER << ID_BITS) | (int(cid, 16) & 0xFFFF)
    return np.array([(value >> (31 - i)) & 1 for i in range(32)], dtype=np.float32)


def too_small(height: int, width: int) -> str | None:
    """Why an image of this size cannot hold the mark, or None when it can."""
    if min(height, width) < MIN_SIDE or height * width < MIN_AREA:
        return (f"image too small for the watermark ({width}x{height}; it needs a short side of "
                f"{MIN_SIDE} px and {MIN_AREA:,} pixels)")
    return None


def _work_size(height: int, width: int, side: int | None = None) -> tuple[int, int]:
    scale = min(1.0, (side or WORK_SIDE) / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(x: np.ndarray, hw: tuple[int, int], *, shrink: bool) -> np.ndarray:
    import cv2  # noqa: PLC0415

    if x.shape[:2] == hw:
        return x
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return cv2.resize(x, (hw[1], hw[0]), interpolation=interp)


def _frame(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(f.transpose(2, 0, 1)[None, :, None])     # (1, 3, 1, H, W)


def embed(rgb: np.ndarray, cid: str, gain: float = 1.0) -> np.ndarray:
    """``rgb`` (H, W, 3 uint8) with the payload MARKER + ``cid`` hidden in it at ``gain``.

    Raises ValueError when the image is too small (check :func:`too_small` first)."""
    h, w = rgb.shape[:2]
    reason = too_small(h, w)
    if reason:
        raise ValueError(reason)
    work_hw = _work_size(h, w)
    work = _resize(rgb, work_hw, shrink=True)
    out = _session("encoder").run(None, {"frame": _frame(work), "data": payload_bits(cid)[None]})[0]
    marked = (np.clip(out[0, :, 0], -1.0, 1.0).transpose(1, 2, 0) + 1.0) * 127.5
    residual = (marked - work.astype(np.float32)) * gain
    if work_hw != (h, w):
        residual = _resize(residual, (h, w), shrink=False)
    return np.clip(np.rint(rgb.astype(np.float32) + residual), 0, 255).astype(np.uint8)


def embed_verified(rgb: np.ndarray, cid: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed, read the mark back at the working size, and retry with the next of
    :data:`GAINS` until all 32 bits read back; returns the pixels and what was done
    (``gain``, ``read_back``: share of the 32 bits read back). Deterministic."""
    want = payload_bits(cid) > 0.5
    h, w = rgb.shape[:2]
    out, agree, gain = rgb, 0.0, GAINS[0]
    for gain in GAINS:
        out = embed(rgb, cid, gain)
        agree = float(((_read(_resize(out, _work_size(h, w), shrink=True)) > 0) == want).mean())
        if agree == 1.0:
            break
    if agree < 1.0:
        logger.info("watermark reads back %.0f%% of its bits even at gain %.1f (flat, clipped or noise-like "
                    "image)", 100 * agree, gain)
    return out, {"gain": gain, "read_back": round(agree, 4)}


def _read(rgb: np.ndarray) -> np.ndarray:
    return _session("decoder").run(None, {"frame": _frame(rgb)})[0][0]


def reading_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The sizes an image is read at: its working size, and twice its size (capped at the
    working size) for an image that was made smaller after marking."""
    sizes = [_work_size(height, width)]
    double = _work_size(2 * height, 2 * width)
    if double != sizes[0]:
        sizes.append(double)
    return sizes


def detect(rgb: np.ndarray) -> Reading:
    """Look for facegen's mark in ``rgb`` (any size, RGB uint8)."""
    h, w = rgb.shape[:2]
    if min(h, w) * 2 < MIN_SIDE:
        return Reading(False, 0.0, None, 0.0, 1.0,
                       reason=f"image too small to read a watermark ({w}x{h})")
    marker = payload_bits("0000")[:MARKER_BITS] > 0.5
    best: Reading | None = None
    for hw in reading_sizes(h, w):
        logits = _read(_resize(rgb, hw, shrink=hw[0] < h))
        bits = logits > 0
        agree = float((bits[:MARKER_BITS] == marker).mean())
        conf = float(np.median(np.abs(logits[:MARKER_BITS])))
        value = int("".join("1" if b else "0" for b in bits[MARKER_BITS:]), 2)
        reading = Reading(agree * MARKER_BITS >= FOUND_AT - 1e-9, agree, f"{value:04x}", conf, hw[0] / h)
        if best is None or (reading.bit_agreement, reading.confidence) > (best.bit_agreement, best.confidence):
            best = reading
        if best.bit_agreement == 1.0:        # every marker bit read: the other size cannot do better
            break
    assert best is not None
    return best
