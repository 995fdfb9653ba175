"""A procedurally made identity dataset: each identity a distinct random pattern, its images random
affine, colour, blur, noise and erasing of it (aligned 112 crops, one folder per identity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def identity_pattern(rng: np.random.Generator, size: int = 112) -> Image.Image:
    """A smooth random grey-level layout (what tells identities apart is where light and dark are,
    not their colour: every view is tinted at random)."""
    low = rng.integers(0, 256, size=(5, 5), dtype=np.uint8)
    return Image.fromarray(low).resize((size, size), Image.BICUBIC).convert("RGB")


def view_of(pattern: Image.Image, rng: np.random.Generator) -> Image.Image:
    size = pattern.width
    a = np.deg2rad(rng.uniform(-15, 15))
    s = rng.uniform(0.9, 1.1)
    tx, ty = rng.uniform(-0.08, 0.08, size=2) * size
    c, si = np.cos(a) / s, np.sin(a) / s
    cx = cy = size / 2
    coeffs = (c, si, cx - c * cx - si * cy - tx, -si, c, cy + si * cx - c * cy - ty)
    im = pattern.transform(pattern.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(128, 128, 128))
    arr = np.asarray(im).astype(np.float32)
    arr = arr * rng.uniform(0.5, 1.3, size=3) + rng.uniform(-40, 40, size=3)     # colour
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    arr = np.asarray(im).astype(np.float32) + rng.normal(0, 8, size=(size, size, 3))   # noise
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:                                                       # erasing
        h, w = (int(v) for v in rng.integers(10, 40, size=2))
        y, x = (int(v) for v in rng.integers(0, size - 40, size=2))
        arr[y:y + h, x:x + w] = rng.integers(0, 256, size=3)
    return Image.fromarray(arr)


def make_identity_set(root: Path, identities: int, per_identity: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(identities):
        pattern = identity_pattern(rng)
        d = root / f"id{seed}_{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_identity):
            view_of(pattern, rng).save(d / f"{k:03d}.png")
    return root
