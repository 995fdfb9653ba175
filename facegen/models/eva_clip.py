"""The released layouts PuLID's ID condition reads: the EVA02-CLIP visual tower and facexlib's BiSeNet
face parser, as key → shape tables derived from a small config (models layer: no network code).

Used three times: the tiny builder writes random tensors with exactly these keys, the loaders in
:mod:`facegen.id.eva` and :mod:`facegen.id.bisenet` build their networks from a config read off a
checkpoint's shapes, and the tests check that the networks' own state dicts are these tables.

Facts (read from upstream, never copied; ToTheBeginning/PuLID @1aa2fc7 ``eva_clip/``):

* ``create_model_and_transforms('EVA02-CLIP-L-14-336', 'eva_clip', force_custom_clip=True)``, config
  ``model_configs/EVA02-CLIP-L-14-336.json``: ``embed_dim`` 768; vision ``image_size`` 336, ``layers`` 24,
  ``width`` 1024, ``head_width`` 64, ``mlp_ratio`` 2.6667 (SwiGLU hidden ``int(1024 * 2.6667)`` = 2730),
  ``patch_size`` 14, ``rope`` with ``pt_hw_seq_len`` 16 and ``intp_freq``, ``naiveswiglu``, ``subln``,
  ``qkv_bias`` (q and v biases, no k bias), LayerNorm eps 1e-6, no layer scale, no mean pooling
  (final ``norm`` then the CLS token through ``head`` Linear(1024, 768)).
* The released file (HF ``QuanSun/EVA-CLIP`` ``EVA02_CLIP_L_336_psz14_s6B.pt``, 856,461,210 bytes) is a
  torch pickle of the whole CLIP state dict: the tower under ``visual.``, the text tower under
  ``text.``, ``logit_scale``; upstream drops any ``freqs_cos`` / ``freqs_sin`` (rope tables, recomputed)
  when ``RoPE=1`` and pre-processes with the OpenAI CLIP mean/std.
* ``visual.forward(x, return_hidden=True)`` also returns the token states entering blocks 4, 8, 12, 16
  and 20 (``0 < idx <= 20 and idx % 4 == 0``): 5 tensors ``(B, 577, 1024)`` (the IDFormer's five scales).
* facexlib ``init_parsing_model('bisenet')``: ``BiSeNet(num_class=19)`` loaded strictly from
  ``parsing_bisenet.pth`` (release v0.2.0, 53,289,463 bytes): a ResNet-18 context path
  (``cp.resnet``: 64/128/256/512 channels, 2 blocks each), attention refinement to 128 channels,
  feature fusion to 256, three output heads (``conv_out`` 256 → 19, ``conv_out16``/``conv_out32``
  64 → 19).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from facegen.errors import InvalidArgumentError

Shapes = dict[str, tuple[int, ...]]

#: HF repository and file of the released EVA02-CLIP-L-14-336 weights (and the tiny twin's repository)
EVA_REPO = "QuanSun/EVA-CLIP"
EVA_FILE = "EVA02_CLIP_L_336_psz14_s6B.pt"
TINY_EVA_REPO = "facegen-tiny/EVA-CLIP"
#: facexlib's face parser (a GitHub release asset) and the tiny twin's folder
PARSING_URL = "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"
PARSING_FILE = "parsing_bisenet.pth"
TINY_PARSING_REPO = "facegen-tiny/facexlib"

#: the OpenAI CLIP mean/std EVA-CLIP's ``image_mean``/``image_std`` default to (``eva_clip.constants``)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class EvaConfig:
    """An EVA02-CLIP visual tower; the defaults are EVA02-CLIP-L-14-336."""

    image_size: int = 336
    patch_size: int = 14
    width: int = 1024
    depth: int = 24
    head_width: int = 64
    mlp_hidden: int = 2730
    embed_dim: int = 768
    pt_hw_seq_len: int = 16
    eps: float = 1e-6

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid * self.grid + 1

    @property
    def hidden_blocks(self) -> tuple[int, ...]:
        """The blocks whose input states are returned: upstream's literal 4, 8, 12, 16, 20 for its
        24 blocks, i.e. every ``depth // 6`` blocks five times (so a shallower tower keeps five)."""
        step = self.depth // 6
        return tuple(step * k for k in range(1, 6))

    def check(self) -> None:
        if self.depth < 6 or self.width % self.head_width or self.head_width % 4 or self.image_size % self.patch_size:
            raise InvalidArgumentError(f"not an EVA02-CLIP tower this code runs: {self}")


EVA02_L14_336 = EvaConfig()


def eva_visual_shapes(cfg: EvaConfig) -> Shapes:
    """Key → shape of the tower (the released file's ``visual.`` keys, prefix removed; no rope tables)."""
    w, h = cfg.width, cfg.mlp_hidden
    shapes: Shapes = {
        "cls_token": (1, 1, w), "pos_embed": (1, cfg.tokens, w),
        "patch_embed.proj.weight": (w, 3, cfg.patch_size, cfg.patch_size), "patch_embed.proj.bias": (w,),
        "norm.weight": (w,), "norm.bias": (w,),
        "head.weight": (cfg.embed_dim, w), "head.bias": (cfg.embed_dim,),
    }
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        for ln in ("norm1", "norm2", "attn.inner_attn_ln"):
            shapes[f"{b}{ln}.weight"] = shapes[f"{b}{ln}.bias"] = (w,)
        for p in ("q_proj", "k_proj", "v_proj"):
            shapes[f"{b}attn.{p}.weight"] = (w, w)
        shapes[f"{b}attn.q_bias"] = shapes[f"{b}attn.v_bias"] = (w,)
        shapes[f"{b}attn.proj.weight"], shapes[f"{b}attn.proj.bias"] = (w, w), (w,)
        for p in ("w1", "w2"):
            shapes[f"{b}mlp.{p}.weight"], shapes[f"{b}mlp.{p}.bias"] = (h, w), (h,)
        shapes[f"{b}mlp.ffn_ln.weight"] = shapes[f"{b}mlp.ffn_ln.bias"] = (h,)
        shapes[f"{b}mlp.w3.weight"], shapes[f"{b}mlp.w3.bias"] = (w, h), (w,)
    return shapes


def eva_config_of(state: Mapping[str, Any]) -> EvaConfig:
    """The tower config a (``visual.``-stripped) state dict was saved from, read off its shapes;
    ``head_width`` and the rope's ``pt_hw_seq_len`` are not in the shapes: EVA02-CLIP-L's values."""
    try:
        w, _, p, _ = (int(s) for s in state["patch_embed.proj.weight"].shape)
        tokens = int(state["pos_embed"].shape[1])
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        hidden = int(state["blocks.0.mlp.w1.weight"].shape[0])
        embed = int(state["head.weight"].shape[0])
    except (KeyError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidArgumentError(f"not an EVA02-CLIP visual tower (no {exc} tensor)") from None
    grid = round((tokens - 1) ** 0.5)
    cfg = EvaConfig(image_size=grid * p, patch_size=p, width=w, depth=depth, mlp_hidden=hidden, embed_dim=embed)
    cfg.check()
    return cfg


@dataclass(frozen=True)
class BiSeNetConfig:
    """facexlib's BiSeNet; the defaults are the released face parser's widths."""

    widths: tuple[int, int, int, int] = (64, 128, 256, 512)   # ResNet-18 stages
    blocks: int = 2                                          # basic blocks per stage
    arm: int = 128                                           # attention refinement / context heads
    fuse: int = 256                                          # feature fusion (and conv_out's middle)
    side: int = 64                                           # conv_out16 / conv_out32 middle
    classes: int = 19


FACEXLIB_BISENET = BiSeNetConfig()


def _conv_bn(shapes: Shapes, prefix: str, cin: int, cout: int, k: int, bn: str = "bn") -> None:
    shapes[f"{prefix}.weight" if bn == "" else f"{prefix}.conv.weight"] = (cout, cin, k, k)
    if bn:
        _bn(shapes, f"{prefix}.{bn}", cout)


def _bn(shapes: Shapes, prefix: str, c: int) -> None:
    for s in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{s}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def bisenet_shapes(cfg: BiSeNetConfig) -> Shapes:
    """Key → shape of facexlib's ``BiSeNet`` (``parsing_bisenet.pth``)."""
    s: Shapes = {}
    c1 = cfg.widths[0]
    s["cp.resnet.conv1.weight"] = (c1, 3, 7, 7)
    _bn(s, "cp.resnet.bn1", c1)
    cin = c1
    for li, cout in enumerate(cfg.widths, start=1):
        for bi in range(cfg.blocks):
            b = f"cp.resnet.layer{li}.{bi}"
            first = cin if bi == 0 else cout
            s[f"{b}.conv1.weight"] = (cout, first, 3, 3)
            _bn(s, f"{b}.bn1", cout)
            s[f"{b}.conv2.weight"] = (cout, cout, 3, 3)
            _bn(s, f"{b}.bn2", cout)
            if bi == 0 and (first != cout or li > 1):
                s[f"{b}.downsample.0.weight"] = (cout, first, 1, 1)
                _bn(s, f"{b}.downsample.1", cout)
        cin = cout
    c3, c4, a = cfg.widths[2], cfg.widths[3], cfg.arm
    for name, cin_ in (("arm16", c3), ("arm32", c4)):
        _conv_bn(s, f"cp.{name}.conv", cin_, a, 3)
        s[f"cp.{name}.conv_atten.weight"] = (a, a, 1, 1)
        _bn(s, f"cp.{name}.bn_atten", a)
    _conv_bn(s, "cp.conv_head32", a, a, 3)
    _conv_bn(s, "cp.conv_head16", a, a, 3)
    _conv_bn(s, "cp.conv_avg", c4, a, 1)
    _conv_bn(s, "ffm.convblk", cfg.widths[1] + a, cfg.fuse, 1)
    s["ffm.conv1.weight"] = (cfg.fuse // 4, cfg.fuse, 1, 1)
    s["ffm.conv2.weight"] = (cfg.fuse, cfg.fuse // 4, 1, 1)
    for name, cin_, mid in (("conv_out", cfg.fuse, cfg.fuse), ("conv_out16", a, cfg.side),
                            ("conv_out32", a, cfg.side)):
        _conv_bn(s, f"{name}.conv", cin_, mid, 3)
        s[f"{name}.conv_out.weight"] = (cfg.classes, mid, 1, 1)
    return s


def bisenet_config_of(state: Mapping[str, Any]) -> BiSeNetConfig:
    """The BiSeNet config a state dict was saved from, read off its shapes."""
    try:
        widths = tuple(int(state[f"cp.resnet.layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5))
        blocks = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("cp.resnet.layer1."))
        cfg = BiSeNetConfig(widths=widths, blocks=blocks,                                   # type: ignore[arg-type]
                            arm=int(state["cp.arm16.conv.conv.weight"].shape[0]),
                            fuse=int(state["ffm.convblk.conv.weight"].shape[0]),
                            side=int(state["conv_out16.conv.conv.weight"].shape[0]),
                            classes=int(state["conv_out.conv_out.weight"].shape[0]))
    except (KeyError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidArgumentError(f"not a facexlib BiSeNet face parser (no {exc} tensor)") from None
    return cfg


#: the tiny twins (random weights, same layouts): E = 64, T = 17, W = 128, five hidden states
TINY_EVA = EvaConfig(image_size=56, patch_size=14, width=128, depth=6, mlp_hidden=341, embed_dim=64)
TINY_BISENET = BiSeNetConfig(widths=(8, 16, 32, 64), blocks=2, arm=16, fuse=32, side=8, classes=19)
