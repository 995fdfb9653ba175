"""The invisible watermark: facegen's 32-bit key hidden in the pixels, read back with a p-value.

Method (chosen by measurement, see ``benchmarks/bench_provenance.py`` and RESULTS.md): RivaGAN
(32 bits; the networks of ``invisible-watermark`` 0.2.0 in torch, :mod:`.rivagan`, weights
shipped with facegen), computed at a working resolution whose long side is :data:`WORK_SIDE`;
the residual (marked - original) is upsampled to the full image, so any image costs the same
as a 256² one, and the low-frequency mark survives downscaling and JPEG.

Payload: all 32 bits are facegen's fixed :data:`KEY`. A reading is the decoder's 32 logits; the
**p-value** of one reading is the probability that an unmarked image, whose logits' signs are
fair coins, correlates with the key at least as well given the logits' strengths:
``P[Σ ε_i |l_i| ≥ Σ key_i l_i]`` over the 2^32 sign patterns, counted exactly
(:func:`sign_flip_tail`, :func:`reading_p_value`; with equal strengths it is the binomial tail
``P[Binomial(32, ½) ≥ k]``). Weighing each bit by its strength is the soft decision: a wrong
bit the decoder was unsure of costs little (measured: 93 of 100 512² crops found after the
combined attack, against 89 counting bits). An image's p-value is its best reading's times
the readings tried (:func:`p_value`, Bonferroni). "Found" means ``p ≤`` :data:`FOUND_P`
(1e-6 by default). The content id is not in the mark (16 bits of it would leave too few for
that guarantee); the metadata and the C2PA manifest carry it.

Readings: an image that was resized (any factor) but not cropped holds the mark at its
working size; a crop keeping a fraction ``c`` of the side holds it at ``c ×`` the working
size. :func:`detect` reads at ``WORK_SIDE × c`` for each ``c`` in :data:`CROP_FRACTIONS`
and keeps the best reading (stopping at the first that is found). A dark image is also read
brightened (:func:`normalise_brightness`) at each fraction: 8 tries.
:func:`detect_batch` reads many images together; :func:`embed` marks many in one call.

Everything is deterministic given the pixels (same torch build and device), which the
dataset's byte-identical resume needs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
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
#: gains on RivaGAN's residual, tried in turn until the mark passes the read-back check (measured
#: PSNR on 100 photo crops at 512², rounding included: 1.0 -> 42.6 dB, 1.6 -> 38.7 dB, 1.8 -> 36.8 dB,
#: 2.6 -> 34.3 dB). Chosen by measurement (issue 26, fourth round: every crop marked at every gain
#: of 1.0 ... 2.6 and put through the combined attack, the ladders replayed on those figures, on
#: 100 crops at 512² and 1024² and checked on 80 other crops): starting at 1.0 leaves the easy
#: crops near 42 dB, which pays for the top gain on the crops that need it.
GAINS = (1.0, 1.6, 1.8, 2.6)
#: the read-back check: the marked image at its working size, and at :data:`CHECK_CROP` of it (what
#: a 10 % crop and a resize leave), each JPEG-compressed at this quality, must give all 32 and at
#: least :data:`CHECK_CROP_BITS` key bits; else the next gain is tried (flat, dark, clipped images).
#: A mark that never passes keeps the top gain.
CHECK_JPEG_QUALITY = 75
CHECK_CROP = 0.9
CHECK_CROP_BITS = 31
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


def _key_signs() -> np.ndarray:
    """The key as the signs a decoder logit has for each bit (+1: bit 1)."""
    return key_bits().astype(np.float64) * 2.0 - 1.0


def _signed_sums(w: np.ndarray) -> np.ndarray:
    """Every ``±w_1 ± ... ± w_m`` (2^m values)."""
    out = np.zeros(1)
    for x in w:
        out = np.concatenate([out + x, out - x])
    return out


def sign_flip_tail(weights: Sequence[float], stat: float) -> float:
    """``P[Σ ε_i w_i ≥ stat]`` for independent fair signs ``ε_i`` (the weights' absolute values),
    exact: the 2^n sign patterns are counted by meeting in the middle (two halves of 2^(n/2)
    sums, one sorted). Equal weights give the binomial tail ``P[Binomial(n, ½) ≥ k]`` for
    ``stat = w (2k - n)``. Sums within 1e-9 of ``stat`` count as reaching it (the conservative side)."""
    w = np.abs(np.asarray(weights, dtype=np.float64))
    a, b = _signed_sums(w[: len(w) // 2]), np.sort(_signed_sums(w[len(w) // 2:]))
    tol = 1e-9 * max(float(w.sum()), 1e-12)
    hits = int((len(b) - np.searchsorted(b, stat - a - tol, side="left")).sum())
    return hits / 2.0 ** len(w)


def reading_p_value(logits: np.ndarray) -> float:
    """One reading's p-value: the chance that decoder logits whose signs are fair coins (an
    unmarked image), with these logits' strengths, correlate with the key at least as well
    (:func:`sign_flip_tail` of ``|logits|`` at ``Σ key_sign · logit``)."""
    logits = np.asarray(logits, dtype=np.float64)
    return sign_flip_tail(np.abs(logits), float((_key_signs() * logits).sum()))


def p_value(best_reading: float, tries: int) -> float:
    """An image's p-value: its best reading's times the readings tried (a Bonferroni bound, capped at 1)."""
    return float(min(1.0, best_reading * tries))


@dataclass(frozen=True)
class Reading:
    """What :func:`detect` read. ``bit_agreement``: share of the 32 key bits that agree at
    the best reading (the one with the smallest p-value); ``p_value``: chance that an unmarked
    image reads as well (all readings counted); ``found``: ``p_value <= alpha``."""

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
    """The embed's check: key bits each marked image gives after JPEG q:data:`CHECK_JPEG_QUALITY`
    at working size ``hw`` (column 0) and at :data:`CHECK_CROP` × ``hw`` (column 1)."""
    small = (round(hw[0] * CHECK_CROP), round(hw[1] * CHECK_CROP))
    return np.stack([_agreement(_decode([_jpeg(_resize(m, size, shrink=True), CHECK_JPEG_QUALITY) for m in marked],
                                        device)) for size in (hw, small)], axis=1)


def passes(read: np.ndarray) -> np.ndarray:
    """Which rows of :func:`read_back` pass the check."""
    return (read[:, 0] >= BITS) & (read[:, 1] >= CHECK_CROP_BITS)


def embed(images: Sequence[np.ndarray], *, device: Any = None, gains: Sequence[float] = GAINS
          ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Mark RGB uint8 images (any sizes that hold the mark; :func:`too_small` first), in
    batches of equal working size on ``device`` (``None``: CUDA when available, else CPU). Each
    image is checked (:func:`read_back`, :func:`passes`); one that fails is marked again at the
    next of ``gains``, and one that never passes keeps the last.

    Returns the marked images and, per image, ``{"gain", "read_back"}`` (share of the key's
    bits read back at the working size and at the crop's size). Raises ValueError for an image
    too small to hold the mark."""
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
        for gain in gains:
            for j in todo:
                out[idx[j]] = _apply(images[idx[j]], res[j], gain)
            read = read_back([out[idx[j]] for j in todo], hw, dev)
            ok = passes(read)
            for j, bits, passed in zip(todo, read, ok):
                info[idx[j]] = {"gain": gain, "read_back": [round(int(b) / BITS, 4) for b in bits],
                                "passed": bool(passed)}
            todo = [j for j, passed in zip(todo, ok) if not passed]
            if not todo:
                break
    for done in info:
        if not done.pop("passed"):
            logger.info("watermark fails its JPEG read-back check even at gain %.1f (%s of the key's bits; flat, "
                        "clipped or noise-like image)", done["gain"], done["read_back"])
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
    image marked dark reads best as it is), so its p-value counts twice the tries (8).
    ``normalise=False``: as it is only (the benchmark's ablation)."""
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
        best: dict[int, tuple[float, int, float, bool]] = {}     # i -> (reading p, key bits, fraction, brightened)
        todo = list(idx)
        for frac, hw in reading_sizes(h, w):
            for v in (0, 1):
                now = [i for i in todo if v < len(variants[i])]
                for s in range(0, len(now), batch):
                    chunk = now[s:s + batch]
                    logits = _decode([_resize(variants[i][v], hw, shrink=hw[0] < h) for i in chunk], dev)
                    for i, row, k in zip(chunk, logits, _agreement(logits)):
                        p = reading_p_value(row)
                        if i not in best or p < best[i][0]:
                            best[i] = (p, int(k), frac, v == 1)
                todo = [i for i in todo if p_value(best[i][0], tries[i]) > alpha]
            if not todo:
                break
        for i in idx:
            p1, k, frac, lifted = best[i]
            p = p_value(p1, tries[i])
            out[i] = Reading(p <= alpha, p, k / BITS, k, tries[i], alpha, crop_fraction=frac,
                             extra={"brightened": lifted} if len(variants[i]) > 1 else {})
    return [r for r in out if r is not None]
