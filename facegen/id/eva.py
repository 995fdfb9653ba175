"""The EVA02-CLIP visual tower PuLID's ID condition runs, built in PyTorch on the released key layout.

The tower is EVA02-CLIP-L-14-336 (:data:`facegen.models.eva_clip.EVA02_L14_336`): a ViT whose
attention has separate q/k/v projections (q and v biases), 2-D rotary position embedding on the
patch tokens (not the CLS token), a LayerNorm inside the attention before its output projection
and inside the SwiGLU MLP before its last projection ("sub-LN"), pre-norm blocks, no layer scale;
the pooled output is the CLS token after the final norm through ``head``.  ``forward`` returns what
upstream's ``visual(x, return_all_features=False, return_hidden=True)`` does: ``(pooled (B, E),
[5 × (B, T, W)])``, the token states entering blocks :attr:`EvaConfig.hidden_blocks`.

Module names are the released ones (``visual.`` removed), so the released file maps one to one:
:func:`read_eva_state` keeps the ``visual.`` tensors, drops the rope tables upstream recomputes,
and :func:`load_eva` loads strictly, naming every missing, unexpected or mis-shaped tensor.

Why not timm's ``eva02_large_patch14_clip_336``: timm 1.x imports torchvision at import time
(``timm.layers``), and the only torchvision build for this stack's torch 2.13 CPU wheel on the
package index is a CUDA build that cannot load against it (installing timm's dependencies would
move torch to 2.14).  The ~100 lines here are checked against an independent re-implementation of
upstream's ``eva_vit_model.py`` on shared random weights (tests/test_pulid_encoder.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError
from facegen.models.eva_clip import EvaConfig, eva_config_of, eva_visual_shapes


def rope_tables(cfg: EvaConfig) -> tuple[Any, Any]:
    """``(cos, sin)`` of shape ``(grid², head_width)``: EVA's 2-D rope with interpolated positions
    (``intp_freq``): position ``i`` of the ``grid`` is ``i / grid * pt_hw_seq_len``; the first half of
    a head's channels rotates by the row, the second by the column, each frequency on two
    neighbouring channels."""
    import torch

    half = cfg.head_width // 2
    inv = 1.0 / (10000.0 ** (torch.arange(0, half, 2).float() / half))
    pos = torch.arange(cfg.grid).float() / cfg.grid * cfg.pt_hw_seq_len
    ang = torch.repeat_interleave(pos[:, None] * inv[None, :], 2, dim=-1)          # (grid, half)
    rows = ang[:, None, :].expand(cfg.grid, cfg.grid, half)
    cols = ang[None, :, :].expand(cfg.grid, cfg.grid, half)
    full = torch.cat([rows, cols], dim=-1).reshape(cfg.grid * cfg.grid, cfg.head_width)
    return full.cos(), full.sin()


@functools.lru_cache(maxsize=1)
def tower_class() -> type:
    """``EvaVisionTower(cfg)``, built on first use (torch imported late)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x * cos + turned * sin

    class Attention(nn.Module):
        def __init__(self, cfg: EvaConfig) -> None:
            super().__init__()
            w = cfg.width
            self.heads = cfg.heads
            self.q_proj = nn.Linear(w, w, bias=False)
            self.k_proj = nn.Linear(w, w, bias=False)
            self.v_proj = nn.Linear(w, w, bias=False)
            self.q_bias = nn.Parameter(torch.zeros(w))
            self.v_bias = nn.Parameter(torch.zeros(w))
            self.inner_attn_ln = nn.LayerNorm(w, eps=cfg.eps)
            self.proj = nn.Linear(w, w)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape
            q = F.linear(x, self.q_proj.weight, self.q_bias)
            k = self.k_proj(x)
            v = F.linear(x, self.v_proj.weight, self.v_bias)
            q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            q = torch.cat([q[:, :, :1], rotate(q[:, :, 1:], cos, sin)], dim=2)     # the CLS token is not rotated
            k = torch.cat([k[:, :, :1], rotate(k[:, :, 1:], cos, sin)], dim=2)
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)
            return self.proj(self.inner_attn_ln(out))

    class SwiGLU(nn.Module):
        def __init__(self, cfg: EvaConfig) -> None:
            super().__init__()
            self.w1 = nn.Linear(cfg.width, cfg.mlp_hidden)
            self.w2 = nn.Linear(cfg.width, cfg.mlp_hidden)
            self.ffn_ln = nn.LayerNorm(cfg.mlp_hidden, eps=cfg.eps)
            self.w3 = nn.Linear(cfg.mlp_hidden, cfg.width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))

    class Block(nn.Module):
        def __init__(self, cfg: EvaConfig) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
            self.attn = Attention(cfg)
            self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
            self.mlp = SwiGLU(cfg)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x), cos, sin)
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, cfg: EvaConfig) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).flatten(2).transpose(1, 2)

    class EvaVisionTower(nn.Module):
        def __init__(self, cfg: EvaConfig) -> None:
            super().__init__()
            cfg.check()
            self.cfg = cfg
            self.patch_embed = PatchEmbed(cfg)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.width))
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
            self.norm = nn.LayerNorm(cfg.width, eps=cfg.eps)
            self.head = nn.Linear(cfg.width, cfg.embed_dim)
            cos, sin = rope_tables(cfg)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            cfg = self.cfg
            if tuple(x.shape[1:]) != (3, cfg.image_size, cfg.image_size):
                raise InvalidArgumentError(f"the EVA tower takes (N, 3, {cfg.image_size}, {cfg.image_size}) "
                                           f"images, got {tuple(x.shape)}")
            x = self.patch_embed(x)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1) + self.pos_embed
            cos, sin = self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype)
            hidden = []
            for i, block in enumerate(self.blocks):
                if i in cfg.hidden_blocks:
                    hidden.append(x)
                x = block(x, cos, sin)
            return self.head(self.norm(x)[:, 0]), hidden

    return EvaVisionTower


def read_eva_state(path: Path) -> dict[str, Any]:
    """The visual tower's tensors in a released EVA-CLIP file: a torch pickle (read with
    ``weights_only=True``) or a safetensors file, of the whole CLIP (``visual.*`` kept, the
    text tower dropped) or of the tower alone; wrappers ``model``/``module``/``state_dict`` and a
    ``module.`` prefix are undone as upstream's loader does; rope tables are dropped (recomputed)."""
    from facegen.models.loading import load_pickle_state, load_safetensors_state

    state = load_safetensors_state(path) if path.suffix == ".safetensors" else load_pickle_state(path)
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return {k: v for k, v in state.items() if not k.endswith(("freqs_cos", "freqs_sin"))}


def load_eva(path: Path) -> Any:
    """The EVA02-CLIP visual tower in ``path``, strictly loaded (every missing, unexpected or
    mis-shaped tensor named in one line), float32, in eval mode."""
    from facegen.models.checkpoints import check_state_dict

    state = read_eva_state(path)
    try:
        cfg = eva_config_of(state)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{path}: {exc}") from None
    check_state_dict(state, eva_visual_shapes(cfg), f"{path} (EVA02-CLIP visual tower)", every=True)
    model = tower_class()(cfg)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
