"""The invisible watermark: facegen's 32-bit key hidden in the pixels, read back with a p-value.

Method (chosen by measurement, see ``benchmarks/bench_provenance.py`` and RESULTS.md): RivaGAN
(32 bits; the networks of ``invisible-watermark`` 0.2.0 in torch, :mod:`.rivagan`, weights
shipped with facegen), computed at a working resolution whose long side is :data:`WORK_SIDE`;
the residual (marked - original) is upsampled to the full image, so any image costs the same
as a 256² one, and the low-frequency mark survives downscaling and JPEG.

Payload: all 32 bits are facegen's fixed :data:`KEY`. A reading compares the decoded bits with
the key; the **p-value** is the probability that an unmarked image matches at least that
well in at least one of the readings tried: ``min(1, tries × P[Binomial(32, 1/2) ≥ k])``
(:func:`p_value`, a Bonferroni bound over the :data:`CROP_FRACTIONS` readings). "Found" means
``p ≤`` :data:`FOUND_P` (1e-6 by default): 30 of 32 bits at the 4 readings gives 4.8e-7.
The content id is no longer in the mark (16 bits of it would leave too few for that
guarantee); the metadata and the C2PA manifest carry it.

Readings: an image that was resized (any factor) but not cropped holds the mark at its
working size; a crop keeping a fraction ``c`` of the side holds it at ``c ×`` the working
size. :func:`detect` reads at ``WORK_SIDE × c`` for each ``c`` in :data:`CROP_FRACTIONS`
and keeps the best reading (stopping at the first that is found). A dark image is also read
brightened (:func:`normalise_brightness`) at each fraction: 8 tries, and 30 of 32 bits give
9.9e-7, still found.
:func:`detect_batch` reads many images together; :func:`embed` marks many in one call.

Everything is deterministic given the pixels (same torch build and device), which the
dataset's byte-identical resume needs.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

METHOD = "rivagan-key32"
BITS = 32
#: facegen's key: the first 32 bits of sha256("facegen watermark key v2") (16 ones, 16 zeros)
KEY = int(hashlib.sha256(b"facegen watermark key v2").hexdigest()[:8], 16)
#: long side of the resolution the mark is computed at (and read at, before the crop search)
WORK_SIDE = 256
#: side fractions a reading assumes were kept by a crop (1.0: not cropped); each one is a try
CROP_FRACTIONS = (1.0, 0.9, 0.8, 0.7)
#: the most readings one image gets (a dark image: each fraction as it is and brightened)
MAX_TRIES = 2 * len(CROP_FRACTIONS)
#: "found" when the p-value is at most this (the false-positive rate per image)
FOUND_P = 1e-6
#: gains on RivaGAN's residual, tried in turn until the mark reads back through the check
#: attack (measured PSNR on photo crops, rounding included: 1.25 -> ~41 dB, 1.6 -> ~38.5 dB,
#: 2.0 -> ~36.5 dB, 2.6 -> ~34.3 dB). Issue 26's second round started at 1.25 instead of 1.5:
#: on 16 photo crops at 1024² every crop that passes the check at 1.2 also read 32/32 bits
#: after the combined attack, and the crops that fail it gain little from any gain.
GAINS = (1.25, 1.6, 2.0, 2.6)
#: the read-back check: the marked image at its working size, JPEG-compressed at this quality,
#: must give all 32 key bits, else the next gain is tried (flat, dark or clipped images)
CHECK_JPEG_QUALITY = 75
#: brightness normalisation: an image whose bright end (the 99th percentile of each pixel's
#: brightest channel) is below DARK_LEVEL is also read scaled so that it sits at BRIGHT_LEVEL
#: (a darkened copy, e.g. brightness x 0.5, carries a mark scaled down with it; an image that
#: was dark when marked reads best as it is: one 512² crop read 32/32 bits after JPEG q75 as it
#: is and 29/32 brightened). Each brightened reading is a try the p-value counts.
DARK_LEVEL = 160
BRIGHT_LEVEL = 235
#: smallest image that can hold the mark (short side, and area)
MIN_SIDE = 128
MIN_AREA = 256 * 256


#: what is missing when :func:`available` is False
MISSING = ("the watermark needs torch, safetensors and facegen's shipped weights "
           "(facegen/provenance/weights/rivagan.safetensors): reinstall facegen")


def key_bits() -> np.ndarray:
    return np.array([(KEY >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.float32)


def binomial_tail(n: int, k: int) -> Fraction:
    """P[Binomial(n, 1/2) ≥ k], exact."""
    k = max(0, k)
    return Fraction(sum(math.comb(n, i) for i in range(k, n + 1)), 2 ** n)


def p_value(n: int, k: int, tries: int = 1) -> float:
    """Probability that an unmarked image gives a match of at least ``k`` of ``n`` bits in
    at least one of ``tries`` readings (Bonferroni bound, capped at 1)."""
    return float(min(Fraction(1), tries * binomial_tail(n, k)))


def bits_needed(alpha: float = FOUND_P, tries: int = MAX_TRIES, n: int = BITS) -> int:
    """The fewest agreeing bits (of ``n``) that are "found" at ``alpha`` over ``tries`` readings."""
    return next(k for k in range(n + 1) if p_value(n, k, tries) <= alpha)


@dataclass(frozen=True)
class Reading:
    """What :func:`detect` read. ``bit_agreement``: share of the 32 key bits that agree at
    the best reading; ``p_value``: chance that an unmarked image matches as well (all
    readings counted); ``found``: ``p_value <= alpha``."""

    found: bool
    p_value: float
    bit_agreement: float
    agreeing_bits: int
    tries: int
    alpha: float
    crop_fraction: float | None = None      # the reading's assumed kept side fraction
    reason: str | None = None               # why nothing could be read (image too small)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"found": self.found, "p_value": float(f"{self.p_value:.3g}"),
               "bit_agreement": round(self.bit_agreement, 4), "bits": f"{self.agreeing_bits}/{BITS}",
               "tries": self.tries, "alpha": self.alpha, "content_id": None, "method": METHOD,
               "reason": self.reason}
        if self.crop_fraction is not None:
            out["crop_fraction"] = self.crop_fraction
        return {**out, **self.extra}


def available() -> bool:
    """True when the watermark can run: torch and safetensors import and the shipped weights exist."""
    import importlib.util  # noqa: PLC0415

    from facegen.provenance import rivagan  # noqa: PLC0415

    return importlib.util.find_spec("safetensors") is not None and rivagan.WEIGHTS.is_file()


def content_id(rgb: np.ndarray, metadata_json: str = "") -> str:
    """Four hex digits (16 bits) from the sha256 of the unmarked pixels and the metadata
    (written in the metadata and the C2PA manifest; not in the pixels)."""
    digest = hashlib.sha256()
    digest.update(f"{rgb.shape}".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    digest.update(metadata_json.encode("utf-8"))
    return digest.hexdigest()[:4]


def too_small(height: int, width: int) -> str | None:
    """Why an image of this size cannot hold the mark, or None when it can."""
    if min(height, width) < MIN_SIDE or height * width < MIN_AREA:
        return (f"image too small for the watermark ({width}x{height}; it needs a short side of "
                f"{MIN_SIDE} px and {MIN_AREA:,} pixels)")
    return None


def _work_size(height: int, width: int, side: float | None = None) -> tuple[int, int]:
    scale = min(1.0, (side or WORK_SIDE) / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(x: np.ndarray, hw: tuple[int, int], *, shrink: bool) -> np.ndarray:
    import cv2  # noqa: PLC0415

    if x.shape[:2] == hw:
        return x
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return cv2.resize(x, (hw[1], hw[0]), interpolation=interp)


def _device(device: Any) -> Any:
    """``device`` as a torch device; ``None``: CUDA when available, else the CPU (facegen's
    pipeline default, so the mark runs where the image was made)."""
    import torch  # noqa: PLC0415

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _to_tensor(images: Sequence[np.ndarray], device: Any) -> Any:
    import torch  # noqa: PLC0415

    x = torch.from_numpy(np.stack(images).astype(np.float32)).to(device)
    return x.permute(0, 3, 1, 2) / 127.5 - 1.0


#: images per network call on the CPU: the FFT convolutions' tensors for one 256² image already
#: fill the caches, so larger CPU batches cost more per image (measured on the 2-core VM,
#: 2026-12-07: 512² embed 1.33 s per image one at a time, 2.96 s in a batch of 8); on a GPU
#: the whole batch goes in one call
CPU_MICRO_BATCH = 1


def _chunks(n: int, device: Any) -> list[slice]:
    step = CPU_MICRO_BATCH if device.type == "cpu" else max(1, n)
    return [slice(s, s + step) for s in range(0, n, step)]


def _decode(images: Sequence[np.ndarray], device: Any) -> np.ndarray:
    """Logits (N, 32) of same-sized RGB uint8 images."""
    import torch  # noqa: PLC0415

    from facegen.provenance import rivagan  # noqa: PLC0415

    net = rivagan.network("decoder", device)
    with torch.inference_mode():
        return np.concatenate([net(_to_tensor(images[c], device)).float().cpu().numpy()
                               for c in _chunks(len(images), device)])


def _residuals(works: Sequence[np.ndarray], device: Any) -> np.ndarray:
    """RivaGAN's residual (marked - work, in pixel units, float32) for same-sized images."""
    import torch  # noqa: PLC0415

    from facegen.provenance import rivagan  # noqa: PLC0415

    net = rivagan.network("encoder", device)
    out = []
    for c in _chunks(len(works), device):
        x = _to_tensor(works[c], device)
        bits = torch.from_numpy(np.tile(key_bits(), (x.shape[0], 1))).to(device)
        with torch.inference_mode():
            marked = net(x, bits).clamp(-1.0, 1.0)
        out.append(((marked - x) * 127.5).permute(0, 2, 3, 1).float().cpu().numpy())
    return np.concatenate(out)


def _apply(rgb: np.ndarray, residual: np.ndarray, gain: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    r = residual * gain
    if r.shape[:2] != (h, w):
        r = _resize(r, (h, w), shrink=False)
    return np.clip(np.rint(rgb.astype(np.float32) + r), 0, 255).astype(np.uint8)


def _agreement(logits: np.ndarray) -> np.ndarray:
    """Agreeing key bits per row of logits."""
    return ((logits > 0) == (key_bits() > 0.5)).sum(axis=-1)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    import cv2  # noqa: PLC0415

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def read_back(marked: Sequence[np.ndarray], hw: tuple[int, int], device: Any) -> np.ndarray:
    """Key bits each marked image gives at working size ``hw`` after JPEG q:data:`CHECK_JPEG_QUALITY`
    (the embed's check)."""
    return _agreement(_decode([_jpeg(_resize(m, hw, shrink=True), CHECK_JPEG_QUALITY) for m in marked], device))


def embed(images: Sequence[np.ndarray], *, device: Any = None, gains: Sequence[float] = GAINS
          ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Mark RGB uint8 images (any sizes that hold the mark; :func:`too_small` first), in
    batches of equal working size on ``device`` (``None``: CUDA when available, else CPU). Each image is read back at
    its working size after JPEG q:data:`CHECK_JPEG_QUALITY`; one that does not give all 32
    bits is marked again at the next of ``gains``, and one that never does keeps the smallest
    gain that gave its best read-back.

    Returns the marked images and, per image, ``{"gain", "read_back"}`` (share of the key's
    bits read back). Raises ValueError for an image too small to hold the mark."""
    dev = _device(device)
    for im in images:
        if (reason := too_small(*im.shape[:2])) is not None:
            raise ValueError(reason)
    out: list[np.ndarray] = [im for im in images]
    info: list[dict[str, Any]] = [{} for _ in images]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(_work_size(*im.shape[:2]), []).append(i)
    for hw, idx in groups.items():
        works = [_resize(np.ascontiguousarray(images[i]), hw, shrink=True) for i in idx]
        res = _residuals(works, dev)
        todo = list(range(len(idx)))
        best: dict[int, tuple[int, float]] = {}          # j -> (most bits read back, the smallest gain giving them)
        for n, gain in enumerate(gains):
            for j in todo:
                out[idx[j]] = _apply(images[idx[j]], res[j], gain)
            agree = read_back([out[idx[j]] for j in todo], hw, dev)
            left = []
            for t, j in enumerate(todo):
                if j not in best or agree[t] > best[j][0]:
                    best[j] = (int(agree[t]), gain)
                if agree[t] < BITS and n + 1 < len(gains):
                    left.append(j)
            todo = left
            if not todo:
                break
        for j, (bits, gain) in best.items():
            # a mark that never reads back whole keeps the smallest gain with its best read-back: a higher
            # gain that reads no better only costs PSNR (bench_provenance --only gains)
            if bits < BITS and gain != gains[-1]:
                out[idx[j]] = _apply(images[idx[j]], res[j], gain)
            info[idx[j]] = {"gain": gain, "read_back": round(bits / BITS, 4)}
    for i, done in enumerate(info):
        if done["read_back"] < 1.0:
            logger.info("watermark reads back %.0f%% of its bits through JPEG even at gain %.1f (flat, "
                        "clipped or noise-like image)", 100 * done["read_back"], done["gain"])
    return out, info


def is_dark(rgb: np.ndarray) -> bool:
    """True when the image's bright end (99th percentile of each pixel's brightest channel) is
    below :data:`DARK_LEVEL`: it is then also read brightened (:func:`normalise_brightness`)."""
    return float(np.percentile(rgb.max(axis=2), 99)) < DARK_LEVEL


def normalise_brightness(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` scaled so that its bright end sits at :data:`BRIGHT_LEVEL` when it is dark
    (:func:`is_dark`), else unchanged."""
    top = float(np.percentile(rgb.max(axis=2), 99))
    if top >= DARK_LEVEL:
        return rgb
    scale = BRIGHT_LEVEL / max(top, 8.0)
    return np.clip(np.rint(rgb.astype(np.float32) * scale), 0, 255).astype(np.uint8)


def reading_sizes(height: int, width: int) -> list[tuple[float, tuple[int, int]]]:
    """(assumed kept side fraction, size to read at) for each try."""
    return [(c, _work_size(height, width, WORK_SIDE * c)) for c in CROP_FRACTIONS]


def detect(rgb: np.ndarray, *, alpha: float = FOUND_P, device: Any = None) -> Reading:
    """Look for facegen's mark in ``rgb`` (any size, RGB uint8)."""
    return detect_batch([rgb], alpha=alpha, device=device)[0]


def detect_batch(images: Sequence[np.ndarray], *, alpha: float = FOUND_P, device: Any = None,
                 batch: int = 8, normalise: bool = True) -> list[Reading]:
    """:func:`detect` for many images: images of one size are read together, ``batch`` at a
    time, on ``device``; each image's readings stop at the first that is found (the
    p-value counts every planned try, so stopping early is fine). Equals :func:`detect`
    one by one.

    A dark image (:func:`is_dark`) is read twice at each crop fraction, as it is and brightened
    (:func:`normalise_brightness`: a darkened copy carries a mark scaled down with it, while an
    image marked dark reads best as it is), so its p-value counts twice the tries (8: 30 of 32
    bits are still found at 1e-6). ``normalise=False``: as it is only (the benchmark's ablation)."""
    out: list[Reading | None] = [None] * len(images)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        if min(h, w) < MIN_SIDE // 2:
            out[i] = Reading(False, 1.0, 0.0, 0, len(CROP_FRACTIONS), alpha,
                             reason=f"image too small to read a watermark ({w}x{h}; it needs a short side of "
                                    f"{MIN_SIDE // 2} px)")
        else:
            groups.setdefault((h, w), []).append(i)
    if groups:
        dev = _device(device)
    for (h, w), idx in groups.items():
        variants = {i: [np.ascontiguousarray(images[i])] for i in idx}
        if normalise:
            for i in idx:
                if is_dark(variants[i][0]):
                    variants[i].append(normalise_brightness(variants[i][0]))
        tries = {i: len(CROP_FRACTIONS) * len(variants[i]) for i in idx}
        best: dict[int, tuple[int, float, bool]] = {}
        todo = list(idx)
        for frac, hw in reading_sizes(h, w):
            for v in (0, 1):
                now = [i for i in todo if v < len(variants[i])]
                agree: list[int] = []
                for s in range(0, len(now), batch):
                    chunk = [_resize(variants[i][v], hw, shrink=hw[0] < h) for i in now[s:s + batch]]
                    agree += [int(k) for k in _agreement(_decode(chunk, dev))]
                for i, k in zip(now, agree):
                    if i not in best or k > best[i][0]:
                        best[i] = (k, frac, v == 1)
                todo = [i for i in todo if p_value(BITS, best[i][0], tries[i]) > alpha]
            if not todo:
                break
        for i in idx:
            k, frac, lifted = best[i]
            p = p_value(BITS, k, tries[i])
            out[i] = Reading(p <= alpha, p, k / BITS, k, tries[i], alpha, crop_fraction=frac,
                             extra={"brightened": lifted} if len(variants[i]) > 1 else {})
    return [r for r in out if r is not None]
