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


def idformer_shapes(id_dim: int, vit_width: int, id_hidden: int, dim: int, depth: int, num_queries: int,
                    output_dim: int, ff_mult: int = 4, num_id_token: int = 5, vit_layers: int = 5) -> Shapes:
    """PuLID's ``IDFormer`` (pulid/encoders_transformer.py; released 1280, 1024, 1024, 1024, 10, 32, 2048):
    ``latents`` [1, queries, dim], ``proj_out`` [dim, out] (a bare parameter), ``layers.i.0`` perceiver
    attention (heads of 64, inner = dim), ``layers.i.1.{0,1,3}`` feed-forward, ``mapping_{0..4}`` and
    ``id_embedding_mapping``: Linear, LayerNorm, LeakyReLU, Linear, LayerNorm, LeakyReLU, Linear."""
    shapes: Shapes = {"latents": (1, num_queries, dim), "proj_out": (dim, output_dim)}
    for i in range(depth):
        p = f"layers.{i}"
        shapes.update({
            f"{p}.0.norm1.weight": (dim,), f"{p}.0.norm1.bias": (dim,),
            f"{p}.0.norm2.weight": (dim,), f"{p}.0.norm2.bias": (dim,),
            f"{p}.0.to_q.weight": (dim, dim), f"{p}.0.to_kv.weight": (2 * dim, dim),
            f"{p}.0.to_out.weight": (dim, dim),
            f"{p}.1.0.weight": (dim,), f"{p}.1.0.bias": (dim,),
            f"{p}.1.1.weight": (dim * ff_mult, dim), f"{p}.1.3.weight": (dim, dim * ff_mult),
        })

    def mlp(prefix: str, width_in: int, hidden: int, width_out: int) -> None:
        for j, (o, i) in ((0, (hidden, width_in)), (3, (hidden, hidden)), (6, (width_out, hidden))):
            shapes[f"{prefix}.{j}.weight"], shapes[f"{prefix}.{j}.bias"] = (o, i), (o,)
        for j in (1, 4):
            shapes[f"{prefix}.{j}.weight"] = shapes[f"{prefix}.{j}.bias"] = (hidden,)

    for i in range(vit_layers):
        mlp(f"mapping_{i}", vit_width, vit_width, dim)
    mlp("id_embedding_mapping", id_dim, id_hidden, dim * num_id_token)
    return shapes


def pulid_ca_shapes(n: int, dim: int, kv_dim: int, inner: int) -> Shapes:
    """PuLID-FLUX's ``pulid_ca`` (``PerceiverAttentionCA`` x n; released 20 x (3072, 2048, 2048)):
    ``norm1`` over the ID tokens (kv_dim), ``norm2`` over the image tokens (dim), bias-free projections."""
    shapes: Shapes = {}
    for i in range(n):
        shapes.update({f"{i}.norm1.weight": (kv_dim,), f"{i}.norm1.bias": (kv_dim,),
                       f"{i}.norm2.weight": (dim,), f"{i}.norm2.bias": (dim,),
                       f"{i}.to_q.weight": (inner, dim), f"{i}.to_kv.weight": (2 * inner, kv_dim),
                       f"{i}.to_out.weight": (dim, inner)})
    return shapes


def pulid_attn_shapes(unet: Any) -> Shapes:
    """PuLID v1.1's ``id_adapter_attn_layers``: ``{k}.id_to_k.weight`` / ``{k}.id_to_v.weight``
    [hidden, cross_dim] for every cross-attention processor k of ``unet.attn_processors``."""
    shapes: Shapes = {}
    for s in attn_slots(unet):
        if s.cross:
            shapes[f"{s.key_id}.id_to_k.weight"] = shapes[f"{s.key_id}.id_to_v.weight"] = (s.hidden, s.cross_dim)
    return shapes


def split_checkpoint(state: Mapping[str, Any], prefixes: tuple[str, ...], what: str) -> dict[str, dict[str, Any]]:
    """PuLID's ``load_pretrain``: a flat checkpoint split on the first ``.`` into one state dict per
    module; a tensor of any other module, or a module with no tensors, is named."""
    parts: dict[str, dict[str, Any]] = {p: {} for p in prefixes}
    unexpected = []
    for key, value in state.items():
        module, _, rest = key.partition(".")
        if module in parts and rest:
            parts[module][rest] = value
        else:
            unexpected.append(key)
    wanted = " / ".join(p + ".*" for p in prefixes)
    if unexpected:
        raise InvalidArgumentError(f"{what} has {len(unexpected)} unexpected tensors ({', '.join(sorted(unexpected))}); "
                                   f"this preset's file holds only {wanted}")
    empty = [p + ".*" for p in prefixes if not parts[p]]
    if empty:
        raise InvalidArgumentError(f"{what} has no {' / '.join(empty)} tensors; is it the right file for this preset?")
    return parts


def idformer_config(state: Mapping[str, Any], id_dim: int, what: str) -> dict[str, int]:
    """The IDFormer hyper-parameters of a state dict (read from its shapes), after checking every
    tensor against :func:`idformer_shapes` (missing / unexpected / mis-shaped ones named)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise InvalidArgumentError(f"{what} is not a PuLID IDFormer: no '{key}' tensor")
        return tuple(state[key].shape)

    _, queries, dim = shape("latents")
    depth = 0
    while f"layers.{depth}.0.to_q.weight" in state:          # contiguous layers; any other is named below
        depth += 1
    cfg = dict(id_dim=id_dim, vit_width=shape("mapping_0.0.weight")[1],
               id_hidden=shape("id_embedding_mapping.0.weight")[0], dim=dim, depth=depth, num_queries=queries, output_dim=shape("proj_out")[1],
               ff_mult=shape("layers.0.1.1.weight")[0] // dim if depth else 4)
    if shape("id_embedding_mapping.0.weight")[1] != id_dim:
        raise InvalidArgumentError(f"{what} takes {shape('id_embedding_mapping.0.weight')[1]}-D ID vectors, the preset "
                                   f"{id_dim}-D; is it the right file for this preset?")
    if dim % 64 or not depth or depth % 5:
        raise InvalidArgumentError(f"{what}: an IDFormer {dim} wide with {depth} layers is not PuLID's "
                                   "(heads of 64, a multiple of 5 layers)")
    check_state_dict(state, idformer_shapes(**cfg), what, every=True)
    return cfg
