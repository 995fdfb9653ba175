"""Tiny twins of PuLID's encoder networks, in the released files' layouts: an EVA02-CLIP checkpoint
(``facegen-tiny/EVA-CLIP/EVA02_CLIP_L_336_psz14_s6B.pt``: the whole-CLIP torch pickle, fp16 as
released, the tower under ``visual.`` beside a stub text tower and ``logit_scale``) and facexlib's
face parser (``facegen-tiny/facexlib/parsing_bisenet.pth``), random weights seeded per file.
Configs: :data:`facegen.models.eva_clip.TINY_EVA` and :data:`~facegen.models.eva_clip.TINY_BISENET`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facegen.models.eva_clip import (EVA_FILE, PARSING_FILE, TINY_BISENET, TINY_EVA, TINY_EVA_REPO, TINY_PARSING_REPO,
                                     bisenet_shapes, eva_visual_shapes)
from facegen.models.tiny import BUILDERS, SPECS, seeded


def _init(key: str, shape: tuple[int, ...], gen: Any) -> Any:
    """Module-like init: unit norm gains, small biases, 1/sqrt(fan-in) weights, plausible BN statistics."""
    import math

    import torch

    last = key.rsplit(".", 1)[-1]
    if last == "num_batches_tracked":
        return torch.tensor(0)
    if last == "running_var":
        return 0.5 + torch.rand(shape, generator=gen)
    if len(shape) == 1 and last == "weight":                     # LayerNorm / BatchNorm gains
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if len(shape) <= 1:                                          # biases, running means
        return 0.1 * torch.randn(shape, generator=gen)
    if key in ("cls_token", "pos_embed"):
        return 0.5 * torch.randn(shape, generator=gen)
    return torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))


def eva_clip_state() -> dict[str, Any]:
    """The tiny whole-CLIP state dict of the released file (tower under ``visual.``)."""
    import torch

    with seeded("pulid/eva-clip") as gen:
        state = {f"visual.{k}": _init(k, s, gen).half() for k, s in sorted(eva_visual_shapes(TINY_EVA).items())}
        state["text.ln_final.weight"] = torch.ones(8, dtype=torch.float16)
        state["logit_scale"] = torch.tensor(4.6052, dtype=torch.float16)
    return state


def parsing_state() -> dict[str, Any]:
    with seeded("pulid/parsing-bisenet") as gen:
        return {k: _init(k, s, gen) for k, s in sorted(bisenet_shapes(TINY_BISENET).items())}


def _build_eva(dst: Path) -> None:
    import torch

    torch.save(eva_clip_state(), dst / EVA_FILE)


def _build_parsing(dst: Path) -> None:
    import torch

    torch.save(parsing_state(), dst / PARSING_FILE)


BUILDERS[TINY_EVA_REPO] = _build_eva
BUILDERS[TINY_PARSING_REPO] = _build_parsing
SPECS["pulid-encoder"] = json.dumps({"init": 1, "eva": TINY_EVA, "bisenet": TINY_BISENET}, sort_keys=True, default=str)
