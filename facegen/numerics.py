"""The numerics an output was made with: library versions and a fingerprint of a few kernels.

Float results (so pixels) move with the versions of torch, diffusers, transformers, OpenCV …
and with the CPU's kernels and thread count.  :func:`numerics_fingerprint` condenses them into
a short key: equal keys mean "same libraries, same kernel results".  The pixel record of the
tests is keyed by it, and a dataset stores it so that a resume under other numerics is refused
(:mod:`facegen.dataset.start`).  The versions that the project is tested with are locked in
``requirements.lock`` (``bash scripts/lock.sh`` refreshes it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
from typing import Any

#: the distributions whose versions move facegen's float results (pixels, embeddings, masks)
NUMERIC_PACKAGES = ("torch", "diffusers", "transformers", "numpy", "opencv-python-headless", "pillow",
                    "onnxruntime", "dlib-bin", "safetensors", "accelerate", "peft")


def library_versions() -> dict[str, str]:
    """Installed version of each of :data:`NUMERIC_PACKAGES` ("absent" when not installed)."""
    out: dict[str, str] = {}
    for name in NUMERIC_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def _kernel_bytes() -> list[bytes]:
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 16, 16, generator=g)
    w = torch.randn(8, 8, 3, 3, generator=g)
    q, k, v = (torch.randn(1, 2, 16, 8, generator=g) for _ in range(3))
    parts = [torch.nn.functional.conv2d(x, w, padding=1), torch.nn.functional.group_norm(x, 4),
             torch.nn.functional.silu(x) @ x.transpose(-1, -2),
             torch.nn.functional.scaled_dot_product_attention(q, k, v)]
    return [t.contiguous().numpy().tobytes() for t in parts]


def numerics_fingerprint(threads: int | None = None) -> str:
    """A 16-hex-digit key of :func:`library_versions` and of a few seeded CPU kernels' bytes, run
    with ``threads`` torch threads (default: the current setting; the count is part of the key)."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        versions = library_versions()
        text = "|".join(f"{k}={versions[k]}" for k in sorted(versions)) + f"|threads={torch.get_num_threads()}"
        h = hashlib.sha256(text.encode())
        for part in _kernel_bytes():
            h.update(part)
    finally:
        torch.set_num_threads(before)
    return h.hexdigest()[:16]


def numerics_record(threads: int | None = None) -> dict[str, Any]:
    """What a dataset stores: ``{"fingerprint", "threads", "libraries"}``."""
    import torch

    return {"fingerprint": numerics_fingerprint(threads),
            "threads": threads if threads is not None else torch.get_num_threads(),
            "libraries": library_versions()}


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """One phrase naming what differs between two :func:`numerics_record` results."""
    a, b = old.get("libraries") or {}, new.get("libraries") or {}
    moved = [f"{k} {a.get(k, 'absent')} -> {b.get(k, 'absent')}" for k in sorted(set(a) | set(b))
             if a.get(k) != b.get(k)]
    if moved:
        return ", ".join(moved)
    if old.get("threads") != new.get("threads"):
        return f"torch threads {old.get('threads')} -> {new.get('threads')}"
    return "the same library versions give other kernel results (another CPU or build)"
