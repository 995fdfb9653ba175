"""Tiny random-weight PuLID checkpoints in the released layouts (``facegen-tiny/PuLID``).

``pulid_v1.1.safetensors``: ``id_adapter.*`` (the IDFormer) + ``id_adapter_attn_layers.{k}.id_to_{k,v}.weight``
for the cross-attention processors of the tiny SDXL UNet; ``pulid_flux_v0.9.1.safetensors``:
``pulid_encoder.*`` + ``pulid_ca.{i}.*`` for the tiny FLUX transformer (1 double + 1 single block: 2
cross-attentions).  The bases are the tiny SDXL / FLUX.1-dev repositories.  The ID condition is
``pulid-tiny``: 128 (dlib) + :data:`TINY_EVA_EMBED` wide, with EVA hidden states
:data:`TINY_EVA_WIDTH` wide (:data:`facegen.models.eva_clip.TINY_EVA`).  Seeded per checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facegen.models import registry as R
from facegen.models.checkpoints import Shapes, idformer_shapes, pulid_attn_shapes, pulid_ca_shapes
from facegen.models.eva_clip import TINY_EVA
from facegen.models.presets_pulid import TINY_PULID_ID_DIM, TINY_PULID_REPO
from facegen.models.tiny import BUILDERS, SDXL_UNET, SPECS, seeded, tiny_unet
from facegen.models.tiny_flux import TRANSFORMER

TINY_EVA_EMBED = TINY_EVA.embed_dim                      # released: 768
TINY_EVA_WIDTH = TINY_EVA.width                           # released: 1024
#: released: id_hidden 1024, dim 1024, depth 10, 32 queries, 2048 out (the SDXL cross width / the FLUX kv width)
IDFORMER = dict(id_hidden=64, dim=128, depth=5, num_queries=32, ff_mult=4)
FLUX_ID_WIDTH = 64                # the FLUX IDFormer's output (the cross-attention's kv width); released 2048
CA_INNER = 64                     # PerceiverAttentionCA inner width, 16 heads; released 2048 (16 x 128)
SDXL_FILE = "pulid_v1.1.safetensors"
FLUX_FILE = "pulid_flux_v0.9.1.safetensors"


def _is_norm(key: str) -> bool:
    """LayerNorm tensors of the layouts above (named ``norm*`` or numbered inside the MLPs)."""
    parts = key.split(".")
    if any(p.startswith("norm") for p in parts):
        return True
    if key.startswith(("mapping_", "id_embedding_mapping")):
        return parts[1] in ("1", "4")
    return key.startswith("layers.") and parts[2:4] == ["1", "0"]


def random_tensors(shapes: Shapes, gen: Any) -> dict[str, Any]:
    """Module-default-like values: unit LayerNorm gains, small biases, ``randn / sqrt(fan_in)``
    matrices (the queries and ``proj_out`` at ``dim ** -0.5``, as upstream initialises them)."""
    import torch

    out = {}
    for key, shape in sorted(shapes.items()):
        noise = torch.randn(shape, generator=gen)
        if key in ("latents", "proj_out"):
            out[key] = noise * shape[-2] ** -0.5 if key == "proj_out" else noise * shape[-1] ** -0.5
        elif len(shape) == 1:
            out[key] = (1.0 if _is_norm(key) and key.endswith("weight") else 0.0) + 0.02 * noise
        else:
            out[key] = noise / shape[-1] ** 0.5
    return out


def _idformer(output_dim: int) -> Shapes:
    return idformer_shapes(id_dim=TINY_PULID_ID_DIM, vit_width=TINY_EVA_WIDTH, output_dim=output_dim, **IDFORMER)


def sdxl_state_dict() -> dict[str, Any]:
    """The tiny ``pulid_v1.1.safetensors``: flat keys ``id_adapter.*`` / ``id_adapter_attn_layers.*``."""
    unet = tiny_unet(SDXL_UNET, "sdxl/unet-structure")
    with seeded("pulid/v1.1") as gen:
        former = random_tensors(_idformer(int(unet.config.cross_attention_dim)), gen)
        attn = random_tensors(pulid_attn_shapes(unet), gen)
    return {**{f"id_adapter.{k}": v for k, v in former.items()},
            **{f"id_adapter_attn_layers.{k}": v for k, v in attn.items()}}


def flux_state_dict() -> dict[str, Any]:
    """The tiny ``pulid_flux_v0.9.1.safetensors``: flat keys ``pulid_encoder.*`` / ``pulid_ca.*``."""
    import math

    n = math.ceil(TRANSFORMER["num_layers"] / 2) + math.ceil(TRANSFORMER["num_single_layers"] / 4)
    dim = TRANSFORMER["num_attention_heads"] * TRANSFORMER["attention_head_dim"]
    with seeded("pulid/flux-v0.9.1") as gen:
        former = random_tensors(_idformer(FLUX_ID_WIDTH), gen)
        ca = random_tensors(pulid_ca_shapes(n, dim, FLUX_ID_WIDTH, CA_INNER), gen)
    return {**{f"pulid_encoder.{k}": v for k, v in former.items()},
            **{f"pulid_ca.{k}": v for k, v in ca.items()}}


def _build_pulid(dst: Path) -> None:
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sdxl_state_dict().items()}, str(dst / SDXL_FILE))
    save_file({k: v.contiguous() for k, v in flux_state_dict().items()}, str(dst / FLUX_FILE))


BUILDERS[TINY_PULID_REPO] = _build_pulid
SPECS["pulid"] = json.dumps({"init": 1, "idformer": IDFORMER, "eva": [TINY_EVA_EMBED, TINY_EVA_WIDTH],
                             "flux_id": FLUX_ID_WIDTH, "ca": CA_INNER}, sort_keys=True)
