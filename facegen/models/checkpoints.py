"""Expected key names and shapes of the adapter checkpoints, derived from a UNet.

Used twice: the tiny builder writes checkpoints with exactly these keys, and the adapter
loaders check a real checkpoint against them before handing it to diffusers, so a wrong or
truncated file fails with a message naming the keys instead of a shape error deep inside.

Facts (../shared/reference/compat.md 2.3, 2.4; diffusers loaders/unet.py):
* ``ip_adapter`` is ``ModuleList(unet.attn_processors.values()).state_dict()``: processor ``k``
  (enumeration order of ``unet.attn_processors``) carries ``{k}.to_k_ip.weight`` /
  ``{k}.to_v_ip.weight`` only when it is a cross-attention processor, so the ids are odd
  (attn1, attn2 alternate); FaceID adds ``{k}.to_{q,k,v,out}_lora.{down,up}.weight`` on all.
* FaceID ``image_proj``: ``proj.0`` [hidden, id_dim], ``proj.2`` [tokens*cross, hidden], ``norm`` [cross].
* InstantID ``image_proj``: the IP-Adapter Resampler (``latents`` [1, queries, dim], ``proj_in``,
  ``proj_out``, ``norm_out``, ``layers.i.0.{norm1,norm2,to_q,to_kv,to_out}``, ``layers.i.1.{0,1,3}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from facegen.errors import InvalidArgumentError

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class AttnSlot:
    key_id: int
    name: str
    cross: bool
    hidden: int        # the block width diffusers' IP loader uses (block_out_channels rule)
    cross_dim: int     # the key/value input width (cross_attention_dim or hidden)


def _block_hidden(unet_config: Any, name: str) -> int:
    boc = list(unet_config.block_out_channels)
    if name.startswith("mid_block"):
        return boc[-1]
    if name.startswith("up_blocks"):
        return list(reversed(boc))[int(name[len("up_blocks.")])]
    if name.startswith("down_blocks"):
        return boc[int(name[len("down_blocks.")])]
    raise InvalidArgumentError(f"unexpected attention processor name '{name}'")


def attn_slots(unet: Any) -> list[AttnSlot]:
    """One slot per attention processor of ``unet``, in the order checkpoints number them."""
    cfg = unet.config
    cross_dim = cfg.cross_attention_dim
    if isinstance(cross_dim, (list, tuple)):
        raise InvalidArgumentError("UNets with per-block cross_attention_dim are not supported")
    slots = []
    for key_id, name in enumerate(unet.attn_processors.keys()):
        hidden = _block_hidden(cfg, name)
        cross = not name.endswith("attn1.processor")
        slots.append(AttnSlot(key_id, name, cross, hidden, cross_dim if cross else hidden))
    return slots


def ip_adapter_shapes(unet: Any, lora_rank: int | None = None) -> Shapes:
    """Keys/shapes of the ``ip_adapter`` sub-dict (IP attention, plus FaceID LoRA when ranked)."""
    shapes: Shapes = {}
    for s in attn_slots(unet):
        if lora_rank:
            r = lora_rank
            shapes[f"{s.key_id}.to_q_lora.down.weight"] = (r, s.hidden)
            shapes[f"{s.key_id}.to_q_lora.up.weight"] = (s.hidden, r)
            shapes[f"{s.key_id}.to_k_lora.down.weight"] = (r, s.cross_dim)
            shapes[f"{s.key_id}.to_k_lora.up.weight"] = (s.hidden, r)
            shapes[f"{s.key_id}.to_v_lora.down.weight"] = (r, s.cross_dim)
            shapes[f"{s.key_id}.to_v_lora.up.weight"] = (s.hidden, r)
            shapes[f"{s.key_id}.to_out_lora.down.weight"] = (r, s.hidden)
            shapes[f"{s.key_id}.to_out_lora.up.weight"] = (s.hidden, r)
        if s.cross:
            shapes[f"{s.key_id}.to_k_ip.weight"] = (s.hidden, s.cross_dim)
            shapes[f"{s.key_id}.to_v_ip.weight"] = (s.hidden, s.cross_dim)
    return shapes


def faceid_image_proj_shapes(id_dim: int, cross_dim: int, hidden: int, num_tokens: int = 4) -> Shapes:
    """IP-Adapter-FaceID ``MLPProjModel``: Linear(id, hidden) → GELU → Linear(hidden, tokens*cross) → LayerNorm."""
    return {
        "proj.0.weight": (hidden, id_dim), "proj.0.bias": (hidden,),
        "proj.2.weight": (num_tokens * cross_dim, hidden), "proj.2.bias": (num_tokens * cross_dim,),
        "norm.weight": (cross_dim,), "norm.bias": (cross_dim,),
    }


def resampler_shapes(embedding_dim: int, dim: int, output_dim: int, num_queries: int = 16,
                     depth: int = 4, dim_head: int = 64, ff_mult: int = 4) -> Shapes:
    """The IP-Adapter/InstantID ``Resampler`` (perceiver) state dict."""
    if dim % dim_head:
        raise InvalidArgumentError(f"Resampler width {dim} is not a multiple of the head size {dim_head}")
    inner = dim  # heads * dim_head with heads = dim // dim_head
    shapes: Shapes = {
        "latents": (1, num_queries, dim),
        "proj_in.weight": (dim, embedding_dim), "proj_in.bias": (dim,),
        "proj_out.weight": (output_dim, dim), "proj_out.bias": (output_dim,),
        "norm_out.weight": (output_dim,), "norm_out.bias": (output_dim,),
    }
    for i in range(depth):
        p = f"layers.{i}"
        shapes.update({
            f"{p}.0.norm1.weight": (dim,), f"{p}.0.norm1.bias": (dim,),
            f"{p}.0.norm2.weight": (dim,), f"{p}.0.norm2.bias": (dim,),
            f"{p}.0.to_q.weight": (inner, dim),
            f"{p}.0.to_kv.weight": (2 * inner, dim),
            f"{p}.0.to_out.weight": (dim, inner),
            f"{p}.1.0.weight": (dim,), f"{p}.1.0.bias": (dim,),
            f"{p}.1.1.weight": (dim * ff_mult, dim),
            f"{p}.1.3.weight": (dim, dim * ff_mult),
        })
    return shapes


def lora_rank_of(ip_adapter: Mapping[str, Any]) -> int | None:
    """The LoRA rank stored in an ``ip_adapter`` sub-dict, or None when it has no LoRA."""
    for key, value in ip_adapter.items():
        if key.endswith(".to_q_lora.down.weight"):
            return int(value.shape[0])
    return None


def check_state_dict(state: Mapping[str, Any], expected: Shapes, what: str, every: bool = False) -> None:
    """Raise InvalidArgumentError unless ``state`` has exactly the expected keys and shapes
    (naming three of each kind of problem, or ``every`` one)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state)
                        if tuple(state[k].shape) != tuple(expected[k]))
    if missing or unexpected or mismatched:
        def names(keys: list[str]) -> str:
            return ", ".join(keys) if every else f"e.g. {', '.join(keys[:3])}"

        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({names(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({names(unexpected)})")
        if mismatched:
            shown = mismatched if every else mismatched[:1]
            what_ = "; ".join(f"{k}: file {tuple(state[k].shape)} vs expected {expected[k]}" for k in shown)
            parts.append(f"{len(mismatched)} shape mismatches ({what_ if every else 'e.g. ' + what_})")
        raise InvalidArgumentError(f"{what} does not match the model it is loaded into: {'; '.join(parts)}; "
                                   "is it the right file for this preset?")
