"""Where and how a pipeline runs: device, dtype, and the per-image seeds."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from facegen.errors import InvalidArgumentError

SEED_MAX = 2**63 - 1
#: the torch device types facegen runs on
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device: str | Any | None) -> Any:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidArgumentError(f"unknown device {str(device)[:40]!r}; use {', '.join(DEVICE_TYPES)} "
                                   "(with an index, e.g. cuda:1)") from None
    if dev.type not in DEVICE_TYPES:
        raise InvalidArgumentError(f"device '{device}' is not supported; use {', '.join(DEVICE_TYPES)}")
    backend = getattr(torch, dev.type, None) if dev.type != "cpu" else None
    probe = torch.backends.mps if dev.type == "mps" else backend
    if backend is not None and not (hasattr(probe, "is_available") and probe.is_available()):
        raise InvalidArgumentError(f"device '{device}' requested but {dev.type.upper()} is not available; "
                                   "use device='cpu'")
    if backend is not None and dev.index is not None and hasattr(backend, "device_count") \
            and dev.index >= backend.device_count():
        raise InvalidArgumentError(f"device '{device}': there are {backend.device_count()} {dev.type} device(s)")
    return dev


def resolve_dtype(dtype: str | Any | None, device: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    try:
        return names[str(dtype).lower()]
    except KeyError:
        raise InvalidArgumentError(f"unknown dtype '{dtype}'; use one of {', '.join(names)}") from None


def seeds_for(num_images: int, seed: int | None = None, seeds: Sequence[int] | None = None) -> list[int]:
    """Per-image seeds: explicit ``seeds``, else ``seed + i``, else fresh random ones.

    ``seed + i`` means image i of a run is reproduced alone by ``seed=seed + i``.
    """
    if seeds is not None:
        if seed is not None:
            raise InvalidArgumentError("give seed or seeds, not both")
        out = [int(s) for s in seeds]
        if len(out) != num_images:
            raise InvalidArgumentError(f"got {len(out)} seeds for {num_images} images")
    else:
        base = secrets.randbelow(2**31) if seed is None else int(seed)
        out = [base + i for i in range(num_images)]
    for s in out:
        if not 0 <= s <= SEED_MAX:
            raise InvalidArgumentError(f"seed {s} is outside 0..2**63-1")
    return out


def padded_batch_size(n: int, cap: int) -> int:
    """The static batch a short batch of ``n`` is padded to: the next power of two, at most ``cap``
    (so a compiled pipeline sees at most log2(cap) + 2 shapes)."""
    if n < 1 or cap < n:
        raise InvalidArgumentError(f"cannot pad a batch of {n} within a cap of {cap}")
    return min(1 << (n - 1).bit_length(), cap)
