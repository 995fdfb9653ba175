"""PuLID (ToTheBeginning/PuLID @1aa2fc7, compat.md 2.5): SDXL v1.1 and FLUX v0.9.1.

The condition (encoder ``pulid-antelopev2-eva02``): ``IDEmbedding.vector`` = concat(antelopev2 raw (512),
EVA02-CLIP-L CLS unit-norm (768)) and ``meta["vit_hidden"]`` = 5 EVA hidden states ``(5, T, W)``.
``IDFormer`` (pulid/encoders_transformer.py) turns them into 32 ID tokens: learned queries + 5 tokens
mapped from the vector, 5 scales of perceiver layers over (those 5 tokens + ``mapping_i(hidden_i)``),
times ``proj_out``; the unconditional tokens are the IDFormer of zeros shaped like the condition.
SDXL (``pulid_v1.1.safetensors`` = ``id_adapter.*`` + ``id_adapter_attn_layers.{k}.id_to_{k,v}.weight``,
k = cross-attention processor place): each cross-attention adds ``id_scale *`` the queries' attention over
the ID tokens before ``to_out`` (the CFG negative rows: the unconditional tokens).  FLUX
(``pulid_flux_v0.9.1.safetensors`` = ``pulid_encoder.*`` + ``pulid_ca.{i}.*``): after double block i
(i % 2 == 0) and single block i (i % 4 == 0) the image tokens get ``id_weight * ca(tokens, image)`` from
step ``id_start_step`` on, through forward hooks on diffusers' ``FluxTransformer2DModel`` blocks for one
call (no fork of diffusers); FLUX.1-dev is guidance-distilled, so no negative prompt (no true CFG).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.batching import encode_prompts, pipeline_cache
from facegen.adapters.registry import register_family
from facegen.errors import EncoderMismatchError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.models import checkpoints as C
from facegen.models import loading as L
from facegen.models.resolve import ResolvedPreset

VIT_LAYERS = 5                  # EVA hidden states the IDFormer reads (one per scale)
NUM_ID_TOKENS = 5               # tokens mapped from the ID vector
IDFORMER_DIM_HEAD = 64          # released: 1024 wide = 16 heads of 64
CA_HEADS = 16                   # released PerceiverAttentionCA: 16 heads of 128 (2048 inner)
DOUBLE_INTERVAL = 2             # a cross-attention after double block i when i % 2 == 0
SINGLE_INTERVAL = 4             # ... and after single block i when i % 4 == 0
SDXL_PREFIXES = ("id_adapter", "id_adapter_attn_layers")
FLUX_PREFIXES = ("pulid_encoder", "pulid_ca")


# ----------------------------------------------------------------------------- modules

@functools.lru_cache(maxsize=1)
def modules() -> Any:
    """``(PerceiverAttention, IDFormer)`` under upstream's module names, built on first use."""
    import torch
    from torch import nn

    def heads_view(t: torch.Tensor, heads: int) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, heads, -1).transpose(1, 2)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dim_head: int) -> torch.Tensor:
        # upstream scales q and k by dim_head ** -0.25 each (fp16-friendly) and takes the softmax in fp32
        s = dim_head ** -0.25
        weight = torch.softmax(((q * s) @ (k * s).transpose(-2, -1)).float(), dim=-1).to(q.dtype)
        out = weight @ v
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)

    class PerceiverAttention(nn.Module):
        """Upstream's ``PerceiverAttention`` (``kv_dim`` None: latents attend over context + latents) and
        ``PerceiverAttentionCA`` (``kv_dim``: FLUX image tokens attend over the ID tokens only)."""

        def __init__(self, dim: int, dim_head: int, heads: int, kv_dim: int | None = None) -> None:
            super().__init__()
            self.heads, self.dim_head, self.concat = heads, dim_head, kv_dim is None
            inner, kv_dim = dim_head * heads, dim if kv_dim is None else kv_dim
            self.norm1, self.norm2 = nn.LayerNorm(kv_dim), nn.LayerNorm(dim)
            self.to_q = nn.Linear(dim, inner, bias=False)
            self.to_kv = nn.Linear(kv_dim, 2 * inner, bias=False)
            self.to_out = nn.Linear(inner, dim, bias=False)

        def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            x, latents = self.norm1(x), self.norm2(latents)
            k, v = self.to_kv(torch.cat([x, latents], dim=-2) if self.concat else x).chunk(2, dim=-1)
            q = self.to_q(latents)
            return self.to_out(attend(*(heads_view(t, self.heads) for t in (q, k, v)), self.dim_head))

    def mlp(width_in: int, hidden: int, width_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(width_in, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(),
                             nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(),
                             nn.Linear(hidden, width_out))

    class IDFormer(nn.Module):
        def __init__(self, id_dim: int, vit_width: int, id_hidden: int, dim: int, depth: int, num_queries: int,
                     output_dim: int, ff_mult: int = 4, num_id_token: int = NUM_ID_TOKENS,
                     dim_head: int = IDFORMER_DIM_HEAD) -> None:
            super().__init__()
            self.dim, self.num_queries, self.num_id_token = dim, num_queries, num_id_token
            self.per_scale = depth // VIT_LAYERS
            self.latents = nn.Parameter(torch.randn(1, num_queries, dim) * dim ** -0.5)
            self.proj_out = nn.Parameter(torch.randn(dim, output_dim) * dim ** -0.5)
            self.layers = nn.ModuleList(
                nn.ModuleList([PerceiverAttention(dim, dim_head, dim // dim_head),
                               nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                                             nn.Linear(dim * ff_mult, dim, bias=False))])
                for _ in range(depth))
            for i in range(VIT_LAYERS):
                setattr(self, f"mapping_{i}", mlp(vit_width, vit_width, dim))
            self.id_embedding_mapping = mlp(id_dim, id_hidden, dim * num_id_token)

        def forward(self, x: torch.Tensor, y: Sequence[torch.Tensor]) -> torch.Tensor:
            """``x``: ``(B, id_dim)`` (or ``(B, n, id_dim)``, n photos); ``y``: 5 tensors ``(B, T, W)``."""
            n = x.shape[1] if x.ndim == 3 else 1
            ids = self.id_embedding_mapping(x).reshape(x.shape[0], self.num_id_token * n, self.dim)
            latents = torch.cat([self.latents.expand(x.shape[0], -1, -1), ids], dim=1)
            for i in range(VIT_LAYERS):
                context = torch.cat([ids, getattr(self, f"mapping_{i}")(y[i])], dim=1)
                for attn, ff in self.layers[i * self.per_scale:(i + 1) * self.per_scale]:
                    latents = attn(context, latents) + latents
                    latents = ff(latents) + latents
            return latents[:, :self.num_queries] @ self.proj_out

    return PerceiverAttention, IDFormer


def idformer_from_state(state: dict[str, Any], id_dim: int, what: str) -> Any:
    """An IDFormer shaped like ``state`` (upstream's key names), checked tensor by tensor, loaded strictly."""
    model = modules()[1](**C.idformer_config(state, id_dim, what))
    model.load_state_dict(state, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------- SDXL processors

@functools.lru_cache(maxsize=1)
def processor_classes() -> tuple[type, type]:
    """``(IDAttnProcessor, TextAttnProcessor)``: upstream v1.1's ID attention (cross-attention layers) and
    diffusers' processor taking and ignoring the ID arguments (self-attention: no warning per call)."""
    import torch.nn.functional as F
    from diffusers.models.attention_processor import AttnProcessor2_0
    from torch import nn

    class TextAttnProcessor(AttnProcessor2_0):  # type: ignore[misc]
        def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                     attention_mask: Any = None, temb: Any = None, id_embedding: Any = None,
                     id_scale: float = 1.0) -> Any:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    class IDAttnProcessor(nn.Module):
        """Upstream's ``IDAttnProcessor2_0``, ``to_out(text attn + id_scale * the queries' attn over id_to_k/v
        (tokens))``, as diffusers' processor + ``id_scale * to_out.weight @ id attn`` (to_out is linear)."""

        def __init__(self, hidden_size: int, cross_attention_dim: int) -> None:
            super().__init__()
            self.id_to_k = nn.Linear(cross_attention_dim, hidden_size, bias=False)
            self.id_to_v = nn.Linear(cross_attention_dim, hidden_size, bias=False)
            self.text = AttnProcessor2_0()

        def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
                     attention_mask: Any = None, temb: Any = None, id_embedding: Any = None,
                     id_scale: float = 1.0) -> Any:
            out = self.text(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
            if id_embedding is None or id_scale == 0:
                return out
            b = hidden_states.shape[0]
            if hidden_states.ndim != 3 or attn.residual_connection or attn.group_norm is not None \
                    or attn.spatial_norm is not None or attn.norm_q is not None or attn.rescale_output_factor != 1:
                raise RuntimeError("PuLID's ID attention expects SDXL's plain cross-attention layers")
            if id_embedding.shape[0] != b:
                raise RuntimeError(f"ID tokens for {id_embedding.shape[0]} rows, the UNet has {b}")

            def split(t: Any) -> Any:
                return t.view(b, -1, attn.heads, t.shape[-1] // attn.heads).transpose(1, 2)

            query = attn.to_q(hidden_states)
            ids = id_embedding.to(self.id_to_k.weight.dtype)
            id_hidden = F.scaled_dot_product_attention(split(query), split(self.id_to_k(ids).to(query.dtype)),
                                                       split(self.id_to_v(ids).to(query.dtype)))
            id_hidden = id_hidden.transpose(1, 2).reshape(b, -1, query.shape[-1]).to(query.dtype)
            return out + id_scale * F.linear(id_hidden, attn.to_out[0].weight)

    return IDAttnProcessor, TextAttnProcessor


def install_id_processors(unet: Any) -> Any:
    """Put the ID processors on ``unet``'s cross-attention layers (the others: the stock processor
    taking the ID arguments) and return them as upstream's ``id_adapter_attn_layers``
    (``ModuleList`` of every processor, parameter-free ones included, so the keys match)."""
    from torch import nn

    IDAttnProcessor, TextAttnProcessor = processor_classes()
    procs: dict[str, Any] = {}
    layers = []
    for slot in C.attn_slots(unet):            # upstream's hidden-size rule and processor order
        proc = IDAttnProcessor(slot.hidden, slot.cross_dim).to(device=unet.device, dtype=unet.dtype) \
            if slot.cross else TextAttnProcessor()
        layers.append(proc if slot.cross else nn.Identity())     # parameter-free places keep the index
        procs[slot.name] = proc
    unet.set_attn_processor(procs)
    return nn.ModuleList(layers)


# ----------------------------------------------------------------------------- FLUX hooks

def ca_positions(n_double: int, n_single: int) -> list[tuple[str, int]]:
    """``[(block list, index)]`` after which cross-attention i acts, in upstream's order (released
    FLUX.1-dev, 19 double + 38 single blocks: 10 + 10)."""
    return ([("transformer_blocks", i) for i in range(n_double) if i % DOUBLE_INTERVAL == 0]
            + [("single_transformer_blocks", i) for i in range(n_single) if i % SINGLE_INTERVAL == 0])


class FluxIDInjection:
    """For one pipeline call: after each chosen FLUX block, the image tokens get
    ``weight * ca_i(tokens, image)`` once the denoising step reaches ``start_step`` (steps counted
    as transformer calls: FLUX.1-dev makes one per step).  ``with FluxIDInjection(...):``."""

    def __init__(self, transformer: Any, cas: Any, tokens: Any, weight: float, start_step: int) -> None:
        self.transformer, self.cas, self.tokens = transformer, cas, tokens
        self.weight, self.start_step = float(weight), int(start_step)
        self.calls = 0
        self.handles: list[Any] = []

    def _after(self, ca: Any) -> Any:
        def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            if self.calls - 1 < self.start_step or self.weight == 0:
                return output
            encoder_hidden_states, hidden_states = output
            n, k = hidden_states.shape[0], self.tokens.shape[0]
            if n != k:
                raise RuntimeError(f"ID tokens for {k} images, the FLUX transformer got {n}")
            tokens = self.tokens.to(device=hidden_states.device, dtype=hidden_states.dtype)
            ca.to(device=hidden_states.device)          # follows the transformer (moved or offloaded)
            return encoder_hidden_states, hidden_states + self.weight * ca(tokens, hidden_states)
        return hook

    def __enter__(self) -> FluxIDInjection:
        t = self.transformer
        self.handles.append(t.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1)))
        for ca, (blocks, i) in zip(self.cas, ca_positions(len(t.transformer_blocks),
                                                          len(t.single_transformer_blocks))):
            self.handles.append(getattr(t, blocks)[i].register_forward_hook(self._after(ca), with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        while self.handles:
            self.handles.pop().remove()


@functools.lru_cache(maxsize=1)
def flux_pipeline_class() -> type:
    """``FluxPipeline`` taking ``pulid_id_tokens`` (``(N, 32, kv)``), ``pulid_id_scale``, ``pulid_start_step``."""
    import torch
    from diffusers import FluxPipeline

    class FluxPuLIDPipeline(FluxPipeline):  # type: ignore[misc]
        pulid_ca: Any = None
        pulid_encoder: Any = None

        @torch.no_grad()
        def __call__(self, *args: Any, pulid_id_tokens: Any = None, pulid_id_scale: float = 1.0,
                     pulid_start_step: int = 0, **kwargs: Any) -> Any:
            if pulid_id_tokens is None:
                raise InvalidArgumentError("PuLID-FLUX needs pulid_id_tokens (the IDFormer's ID tokens)")
            with FluxIDInjection(self.transformer, self.pulid_ca, pulid_id_tokens, pulid_id_scale, pulid_start_step):
                return super().__call__(*args, **kwargs)

    return FluxPuLIDPipeline


# ----------------------------------------------------------------------------- the families

class _PuLIDBase(IDAdapter):
    """What both PuLID presets share: the ID condition (vector + EVA hidden states) and the IDFormer;
    the adapter scale is upstream's id scale / id weight."""

    display_names: ClassVar[tuple[str, ...]] = ("PuLID", "IDFormer")
    max_people = 1                       # no region masks: upstream conditions the whole image on one ID
    vector_identities = False            # the EVA hidden states come from a photo: no sampled identities

    def check_embedding(self, embedding: IDEmbedding) -> None:
        super().check_embedding(embedding)
        hidden = embedding.meta.get("vit_hidden") if isinstance(embedding.meta, dict) else None
        if hidden is None:
            raise EncoderMismatchError(
                f"preset '{self.preset.name}' needs the EVA hidden states of the face (meta['vit_hidden']); "
                f"embed the photo with encoder='{self.encoder}' (or pass id_images)")
        shape = np.shape(hidden)
        if len(shape) != 3 or shape[0] != VIT_LAYERS:
            raise EncoderMismatchError(f"preset '{self.preset.name}' takes vit_hidden of shape ({VIT_LAYERS}, T, W), "
                                       f"got {shape}; embed the photo with encoder='{self.encoder}'")

    idformer_attr: ClassVar[str]          # the pipeline attribute holding the IDFormer (upstream's name)

    def id_tokens(self, pipe: Any, identities: Sequence[IDEmbedding]) -> tuple[Any, Any]:
        """``(tokens, uncond)``: ``(K, 32, out)`` ID tokens of the identities and their unconditional
        tokens (both cached per pipeline).  An identity of n photos (``meta["id_conds"]`` (n, D), hidden
        states ``(5, n*T, W)``) is fed as upstream v1.1 feeds several ID images: n condition rows (5n ID
        tokens); the unconditional tokens are the IDFormer of zeros shaped like one photo's condition."""
        import torch

        former = getattr(pipe, self.idformer_attr).to(device=pipe._execution_device)
        param, width = next(former.parameters()), former.mapping_0[0].in_features
        rows = []
        for e in identities:
            vec, hidden = self.id_vector(e), np.asarray(e.meta["vit_hidden"], dtype=np.float32)
            conds = e.meta.get("id_conds")
            if conds is not None:
                vec = np.asarray(conds, dtype=np.float32)
                if vec.ndim != 2 or vec.shape[1] != self.preset.id_dim or hidden.shape[1] % vec.shape[0]:
                    raise EncoderMismatchError(f"id_conds of shape {vec.shape} do not fit vit_hidden {hidden.shape}; "
                                               f"embed the photos with encoder='{self.encoder}'")
            if hidden.shape[2] != width:
                raise EncoderMismatchError(f"preset '{self.preset.name}' takes {width}-wide EVA hidden states, "
                                           f"got {hidden.shape[2]}; embed with encoder='{self.encoder}'")
            rows.append((vec, hidden))
        cache = pipeline_cache(pipe)

        def run(vec: np.ndarray, hidden: np.ndarray) -> Any:
            x = torch.from_numpy(vec)[None].to(device=param.device, dtype=param.dtype)
            y = [torch.from_numpy(h)[None].to(device=param.device, dtype=param.dtype) for h in hidden]
            with torch.no_grad():
                return former(x, y)

        def zeros(v: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = v.shape[0] if v.ndim == 2 else 1
            return np.zeros(v.shape[-1], np.float32), np.zeros((h.shape[0], h.shape[1] // n, h.shape[2]), np.float32)

        key = (id(former), str(param.dtype))
        tokens = torch.cat([cache.get(("pulid-tokens", cache.key_of(v, h), *key), lambda v=v, h=h: run(v, h))
                            for v, h in rows])
        uncond = torch.cat([cache.get(("pulid-uncond", zeros(v, h)[1].shape, *key), lambda v=v, h=h: run(*zeros(v, h)))
                            for v, h in rows])
        return tokens, uncond


@register_family
class PuLIDSDXLAdapter(_PuLIDBase):
    """PuLID v1.1 on an SDXL (Lightning) base: ID attention in the UNet's cross-attention layers."""

    family = "pulid-sdxl"
    idformer_attr = "pulid_id_adapter"
    supports_negative_prompt = True
    supports_edit = False
    edit_refusal = "PuLID's inpainting is not implemented; run swap/age/restore with an SD1.5/SDXL preset " \
                   "(e.g. instantid)"

    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        from diffusers import StableDiffusionXLPipeline

        path = resolved.file("pulid")
        with L.quiet_loading():
            parts = L.load_sdxl_parts(resolved.repo_dir("base"), dtype)
        scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts.pop("scheduler_config"))
        pipe = StableDiffusionXLPipeline(**parts, scheduler=scheduler, image_encoder=None, feature_extractor=None,
                                         **L.pipeline_kwargs(StableDiffusionXLPipeline))
        load_sdxl_pulid(pipe, L.load_safetensors_state(path), self.preset.id_dim, path.name)
        return pipe

    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        """Per-sample prompts encoded once per pipeline; the ID tokens (negative rows: the
        unconditional tokens) as ``cross_attention_kwargs`` of the ID processors."""
        import torch

        self.check_samples(samples, request)
        tokens, uncond = self.id_tokens(pipe, [s.identities[0] for s in samples])
        prompt, negative = self.texts(request)
        cfg = self.do_cfg(pipe, request.guidance_scale)
        kwargs = encode_prompts(pipe, [prompt if s.prompt is None else s.prompt for s in samples],
                                [negative] * len(samples), cfg)
        if cfg:
            tokens = torch.cat([uncond, tokens])
        kwargs["cross_attention_kwargs"] = {"id_embedding": tokens.to(dtype=pipe.unet.dtype),
                                            "id_scale": float(self.setting(request, "adapter_scale"))}
        return kwargs


def load_sdxl_pulid(pipe: Any, state: dict[str, Any], id_dim: int, what: str) -> None:
    """Install ``pulid_v1.1.safetensors`` on an SDXL pipeline: the IDFormer as ``pipe.pulid_id_adapter``,
    the ID processors on the UNet, every tensor checked (missing / unexpected named) and loaded strictly."""
    parts = C.split_checkpoint(state, SDXL_PREFIXES, what)
    former = idformer_from_state(parts["id_adapter"], id_dim, f"{what} id_adapter")
    if former.proj_out.shape[1] != pipe.unet.config.cross_attention_dim:
        raise InvalidArgumentError(f"{what}: ID tokens {former.proj_out.shape[1]} wide, the UNet's "
                                   f"cross-attention takes {pipe.unet.config.cross_attention_dim}")
    attn = parts["id_adapter_attn_layers"]
    C.check_state_dict(attn, C.pulid_attn_shapes(pipe.unet), f"{what} id_adapter_attn_layers", every=True)
    install_id_processors(pipe.unet).load_state_dict(attn, strict=True)
    pipe.pulid_id_adapter = former.float().to(device=pipe.unet.device)     # fp32, as upstream v1.1 runs it


@register_family
class PuLIDFluxAdapter(_PuLIDBase):
    """PuLID v0.9.1 on FLUX.1-dev: cross-attention blocks after every 2nd double / 4th single block."""

    family = "pulid-flux"
    idformer_attr = "pulid_encoder"
    supports_negative_prompt = False     # FLUX.1-dev is guidance-distilled (true CFG not offered)
    supports_edit = False
    edit_refusal = "FLUX inpainting with PuLID is not implemented; run swap/age/restore with an " \
                   "SD1.5/SDXL preset (e.g. instantid)"
    quantize_choices: ClassVar[tuple[str, ...]] = ("8bit",)
    cuda_dtype = "bf16"
    #: upstream's "timestep to start inserting ID" default (its app's slider; 4 for photoreal, 0-1 stylised)
    id_start_step: ClassVar[int] = 0

    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        from facegen.models.loading_flux import load_flux_parts

        path = resolved.file("pulid")
        with L.quiet_loading():
            parts = load_flux_parts(resolved.repo_dir("base"), dtype, quantize=self.quantize)
        scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts.pop("scheduler_config"))
        pipe = flux_pipeline_class()(**parts, scheduler=scheduler)
        load_flux_pulid(pipe, L.load_safetensors_state(path), self.preset.id_dim, path.name, dtype)
        return pipe

    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        self.check_samples(samples, request)
        multiple = 2 * int(pipe.vae_scale_factor)
        if request.height % multiple or request.width % multiple:
            raise InvalidArgumentError(f"FLUX needs height and width divisible by {multiple}, "
                                       f"got {request.width}x{request.height}")
        tokens, _ = self.id_tokens(pipe, [s.identities[0] for s in samples])
        prompt, _ = self.texts(request)
        return {"prompt": [prompt if s.prompt is None else s.prompt for s in samples],
                "pulid_id_tokens": tokens, "pulid_id_scale": float(self.setting(request, "adapter_scale")),
                "pulid_start_step": self.id_start_step}


def load_flux_pulid(pipe: Any, state: dict[str, Any], id_dim: int, what: str, dtype: Any) -> None:
    """Install ``pulid_flux_v0.9.1.safetensors`` on a FLUX pipeline: the IDFormer as
    ``pipe.pulid_encoder`` and the cross-attention blocks as ``pipe.pulid_ca`` (checked, strict)."""
    from torch import nn

    parts = C.split_checkpoint(state, FLUX_PREFIXES, what)
    former = idformer_from_state(parts["pulid_encoder"], id_dim, f"{what} pulid_encoder")
    t = pipe.transformer
    n = len(ca_positions(len(t.transformer_blocks), len(t.single_transformer_blocks)))
    dim = int(t.config.num_attention_heads * t.config.attention_head_dim)
    kv_dim = int(former.proj_out.shape[1])
    q = parts["pulid_ca"].get("0.to_q.weight")
    if q is None:
        raise InvalidArgumentError(f"{what} pulid_ca has no '0.to_q.weight' tensor")
    inner = int(q.shape[0])
    if inner % CA_HEADS:
        raise InvalidArgumentError(f"{what}: a cross-attention {inner} wide is not {CA_HEADS} heads")
    C.check_state_dict(parts["pulid_ca"], C.pulid_ca_shapes(n, dim, kv_dim, inner), f"{what} pulid_ca", every=True)
    attention, _ = modules()
    cas = nn.ModuleList(attention(dim, inner // CA_HEADS, CA_HEADS, kv_dim=kv_dim) for _ in range(n))
    cas.load_state_dict(parts["pulid_ca"], strict=True)
    device = next(t.parameters()).device
    pipe.pulid_encoder = former.to(device=device, dtype=dtype)
    pipe.pulid_ca = cas.to(device=device, dtype=dtype).eval()
