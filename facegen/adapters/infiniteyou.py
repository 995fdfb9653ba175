"""InfiniteYou (FLUX.1-dev): 8 ID tokens from a Resampler feed InfuseNet, a FLUX ControlNet.

Released layout (ByteDance/InfiniteYou, compat.md 2.7): ``infu_flux_v1.0/<stage>/`` with
``InfuseNetModel/`` (a diffusers ``FluxControlNetModel``) and ``image_proj_model.bin`` =
``{"image_proj": Resampler(dim 1280, depth 4, 20 heads of 64, 8 queries, 512 → 4096)}``, read
with ``torch.load(weights_only=True)`` and loaded strictly.  The base is FLUX.1-dev unchanged.

Conditioning, as upstream's ``FluxInfuseNetPipeline``: the L2-normalised IR-SE50 vector
``(1, 1, 512)`` → Resampler → ``controlnet_prompt_embeds`` ``(1, 8, 4096)``; InfuseNet sees
those tokens (with all-zero text position ids and guidance 1.0) instead of the text, the
transformer sees the prompt; the control image is the 5-keypoint drawing of a pose (the
reference photo resized-and-padded to the output, or given keypoints), else black; the
InfuseNet residuals are scaled by ``controlnet_scale`` inside ``control_guidance``.  The one
thing diffusers' stock ``FluxControlNetPipeline`` cannot do is feed InfuseNet the ID tokens:
:func:`infusenet_pipeline_class` adds exactly that, as a forward pre-hook on the ControlNet for
the duration of a call.  FLUX.1-dev is guidance-distilled: no negative prompt, no CFG batch.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.registry import register_family
from facegen.errors import InvalidArgumentError
from facegen.faces.pose import draw_kps, pose_kps
from facegen.id.embedding import IDEmbedding
from facegen.models import loading as L
from facegen.models.checkpoints import check_state_dict, resampler_shapes
from facegen.models.resolve import ResolvedPreset

logger = logging.getLogger(__name__)

NUM_TOKENS = 8
RESAMPLER_DIM_HEAD = 64          # released: 1280 wide = 20 heads of 64
CONTROLNET_GUIDANCE = 1.0        # upstream's controlnet_guidance_scale


@functools.lru_cache(maxsize=1)
def resampler_class() -> type:
    """The IP-Adapter perceiver Resampler InfiniteYou ships, with upstream's module names
    (``layers.i.0`` attention: ``norm1``/``norm2``/``to_q``/``to_kv``/``to_out``; ``layers.i.1``
    feed-forward: LayerNorm, Linear, GELU, Linear), built on first use (torch imported late)."""
    import torch
    from torch import nn

    class PerceiverAttention(nn.Module):
        def __init__(self, dim: int, dim_head: int, heads: int) -> None:
            super().__init__()
            self.heads, self.dim_head = heads, dim_head
            inner = dim_head * heads
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.to_q = nn.Linear(dim, inner, bias=False)
            self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
            self.to_out = nn.Linear(inner, dim, bias=False)

        def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            x, latents = self.norm1(x), self.norm2(latents)
            b, n, _ = latents.shape
            k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(b, t.shape[1], self.heads, self.dim_head).transpose(1, 2)

            q, k, v = heads(self.to_q(latents)), heads(k), heads(v)
            weight = torch.softmax((q @ k.transpose(-2, -1)).float() * self.dim_head ** -0.5, dim=-1).to(q.dtype)
            return self.to_out((weight @ v).transpose(1, 2).reshape(b, n, -1))

    class Resampler(nn.Module):
        def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_queries: int, embedding_dim: int,
                     output_dim: int, ff_mult: int = 4) -> None:
            super().__init__()
            self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim ** 0.5)
            self.proj_in = nn.Linear(embedding_dim, dim)
            self.proj_out = nn.Linear(dim, output_dim)
            self.norm_out = nn.LayerNorm(output_dim)
            self.layers = nn.ModuleList(
                nn.ModuleList([PerceiverAttention(dim, dim_head, heads),
                               nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                                             nn.Linear(dim * ff_mult, dim, bias=False))])
                for _ in range(depth))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            latents = self.latents.repeat(x.shape[0], 1, 1)
            x = self.proj_in(x)
            for attn, ff in self.layers:
                latents = attn(x, latents) + latents
                latents = ff(latents) + latents
            return self.norm_out(self.proj_out(latents))

    return Resampler


def load_image_proj(state: dict[str, Any], id_dim: int, output_dim: int, what: str) -> Any:
    """The Resampler of an ``image_proj_model.bin`` payload, shapes checked, loaded strictly."""
    if "image_proj" not in state:
        raise InvalidArgumentError(f"{what} has no 'image_proj' entry (keys: {sorted(state)[:5]})")
    proj = state["image_proj"]
    if "latents" not in proj or "proj_in.weight" not in proj:
        raise InvalidArgumentError(f"{what} image_proj is not a Resampler (no 'latents' / 'proj_in')")
    _, queries, dim = tuple(proj["latents"].shape)
    if queries != NUM_TOKENS:
        raise InvalidArgumentError(f"{what}: the Resampler has {queries} queries, InfiniteYou uses {NUM_TOKENS}")
    dim_head = RESAMPLER_DIM_HEAD
    depth = len({k.split(".")[1] for k in proj if k.startswith("layers.")})
    ff_mult = int(proj["layers.0.1.1.weight"].shape[0]) // dim if depth else 4
    check_state_dict(proj, resampler_shapes(id_dim, dim, output_dim, queries, depth, dim_head, ff_mult),
                     f"{what} image_proj")
    model = resampler_class()(dim=dim, depth=depth, dim_head=dim_head, heads=dim // dim_head, num_queries=queries,
                              embedding_dim=id_dim, output_dim=output_dim, ff_mult=ff_mult)
    model.load_state_dict(proj, strict=True)
    return model.eval()


@functools.lru_cache(maxsize=1)
def infusenet_pipeline_class() -> type:
    """``FluxInfuseNetPipeline``, built on first use (importing facegen does not import diffusers)."""
    import torch
    from diffusers import FluxControlNetPipeline

    class FluxInfuseNetPipeline(FluxControlNetPipeline):  # type: ignore[misc]
        """``FluxControlNetPipeline`` whose ControlNet (InfuseNet) sees ``controlnet_prompt_embeds``
        (the projected ID tokens) with zero text ids and ``controlnet_guidance_scale`` instead of
        the prompt; ``image_proj_model`` (the Resampler) rides along on ``to()``."""

        image_proj_model: Any = None
        _id_tokens: Any = None
        _controlnet_guidance: float = CONTROLNET_GUIDANCE

        def to(self, *args: Any, **kwargs: Any) -> Any:
            out = super().to(*args, **kwargs)
            if self.image_proj_model is not None:
                self.image_proj_model.to(device=self.controlnet.device)
            return out

        def _infusenet_inputs(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            tokens = self._id_tokens
            if tokens is None:
                raise RuntimeError("InfuseNet called without ID tokens")
            sample = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            n, k = sample.shape[0], tokens.shape[0]
            if n % k:
                raise RuntimeError(f"ID tokens for {k} samples, InfuseNet got {n}")
            tokens = tokens.repeat_interleave(n // k, dim=0) if n != k else tokens
            kwargs["encoder_hidden_states"] = tokens.to(device=sample.device, dtype=sample.dtype)
            kwargs["txt_ids"] = torch.zeros(tokens.shape[1], 3, device=sample.device, dtype=sample.dtype)
            if kwargs.get("guidance") is not None:
                kwargs["guidance"] = torch.full_like(kwargs["guidance"], self._controlnet_guidance)
            return args, kwargs

        @torch.no_grad()
        def __call__(self, *args: Any, controlnet_prompt_embeds: Any = None,
                     controlnet_guidance_scale: float = CONTROLNET_GUIDANCE, **kwargs: Any) -> Any:
            if controlnet_prompt_embeds is None:
                raise InvalidArgumentError("InfiniteYou needs controlnet_prompt_embeds (the projected ID tokens)")
            self._id_tokens, self._controlnet_guidance = controlnet_prompt_embeds, float(controlnet_guidance_scale)
            handle = self.controlnet.register_forward_pre_hook(self._infusenet_inputs, with_kwargs=True)
            try:
                return super().__call__(*args, **kwargs)
            finally:
                handle.remove()
                self._id_tokens = None

    return FluxInfuseNetPipeline


def resize_and_pad_layout(photo_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Upstream's ``resize_and_pad_image`` geometry: the photo (``(w, h)``) scaled so it spans the
    output's shorter side, centred (white padding): ``(new_w, new_h, pad_left, pad_top)``."""
    (w0, h0), (w, h) = photo_size, size
    if w0 < 1 or h0 < 1:
        raise InvalidArgumentError(f"a photo of {w0}x{h0} pixels has no area")
    if w <= h:
        new_w, new_h = w, int(w * (h0 / w0))
    else:
        new_w, new_h = int(h * (w0 / h0)), h
    return new_w, new_h, (w - new_w) // 2, (h - new_h) // 2


@register_family
class InfiniteYouAdapter(IDAdapter):
    family = "infiniteyou"
    display_names = ("InfiniteYou", "InfuseNet")
    supports_negative_prompt = False     # FLUX.1-dev is guidance-distilled: no CFG, no negative prompt
    supports_adapter_scale = False       # the InfuseNet strength is controlnet_scale
    supports_controlnet_scale = True
    supports_control_kps = True
    #: "reference": the reference photo is also the pose photo (upstream's control image)
    face_layouts = ("reference",)
    supports_edit = False
    edit_refusal = ("FLUX inpainting with InfuseNet is not implemented; run swap/age/restore with an "
                    "SD1.5/SDXL preset (e.g. instantid)")
    quantize_choices: ClassVar[tuple[str, ...]] = ("8bit",)
    cuda_dtype = "bf16"                  # FLUX overflows in fp16

    # ------------------------------------------------------------------ layout
    def photo_layout(self, photo_size: tuple[int, int], kps: np.ndarray,
                     size: tuple[int, int] | None) -> tuple[int, int, np.ndarray, int]:
        """The pose of the reference photo, resized-and-padded to the output as upstream does
        with its control image (the keypoints carried along instead of detected again)."""
        d = self.preset.defaults
        w, h = size if size is not None else (d.width, d.height)
        new_w, new_h, left, top = resize_and_pad_layout(photo_size, (w, h))
        pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
        sx, sy = new_w / photo_size[0], new_h / photo_size[1]
        out = np.stack([(pts[:, 0] + 0.5) * sx - 0.5 + left, (pts[:, 1] + 0.5) * sy - 0.5 + top], axis=1)
        return w, h, out.astype(np.float32), min(w, h)

    # ------------------------------------------------------------------ checks
    def check_request(self, request: ConditionRequest, n_identities: int) -> None:
        super().check_request(request, n_identities)
        start, end = self.control_guidance(request)
        if not 0.0 <= start < end <= 1.0:
            raise InvalidArgumentError(f"control_guidance must be 0 <= start < end <= 1, got ({start}, {end})")

    def control_guidance(self, request: ConditionRequest) -> tuple[float, float]:
        given = request.control_guidance
        start, end = given if given is not None else (self.preset.defaults.control_guidance or (0.0, 1.0))
        return float(start), float(end)

    # ------------------------------------------------------------------ loading
    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        from diffusers import FluxControlNetModel

        from facegen.models.loading_flux import load_flux_parts, load_model

        quantize = self.quantize
        with L.quiet_loading():
            parts = load_flux_parts(resolved.repo_dir("base"), dtype, quantize=quantize)
            controlnet = load_model(FluxControlNetModel, resolved.folder("controlnet"), dtype, quantize=quantize)
        width = int(parts["transformer"].config.joint_attention_dim)
        if int(controlnet.config.joint_attention_dim) != width:
            raise InvalidArgumentError("InfuseNet and the FLUX transformer have different text widths")
        if controlnet.config.in_channels != parts["transformer"].config.in_channels:
            raise InvalidArgumentError("InfuseNet and the FLUX transformer take different latent channels")
        scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts.pop("scheduler_config"))
        cls = infusenet_pipeline_class()
        pipe = cls(**parts, controlnet=controlnet, scheduler=scheduler)
        path = resolved.file("image_proj")
        proj = load_image_proj(L.load_pickle_state(path), self.preset.id_dim, width, path.name)
        pipe.image_proj_model = proj.to(dtype=dtype)
        return pipe

    # ------------------------------------------------------------------ conditioning
    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        """One image per sample: its prompt (None: the request's / preset's), its control image
        (its keypoints drawn — the sample's, else the request's — else black) and its 8 ID tokens."""
        self.check_samples(samples, request)
        multiple = 2 * int(pipe.vae_scale_factor)
        if request.height % multiple or request.width % multiple:
            raise InvalidArgumentError(f"FLUX needs height and width divisible by {multiple}, "
                                       f"got {request.width}x{request.height}")
        prompt, _ = self.texts(request)
        start, end = self.control_guidance(request)
        return {
            "prompt": [prompt if s.prompt is None else s.prompt for s in samples],
            "controlnet_prompt_embeds": self.id_tokens(pipe, [s.identities[0] for s in samples]),
            "control_image": [self.control_image(s.control_kps if s.control_kps is not None else request.control_kps,
                                                 request) for s in samples],
            "controlnet_conditioning_scale": self.setting(request, "controlnet_scale"),
            "control_guidance_start": start,
            "control_guidance_end": end,
            "controlnet_guidance_scale": CONTROLNET_GUIDANCE,
        }

    def pose_keypoints(self, pose: Any, width: int, height: int) -> np.ndarray:
        return pose_kps(pose, width, height)

    def id_tokens(self, pipe: Any, identities: Sequence[IDEmbedding]) -> Any:
        """``(K, 8, width)`` ID tokens: each unit-norm vector as ``(1, 1, D)`` through the Resampler."""
        import torch

        proj = pipe.image_proj_model
        param = next(proj.parameters())
        vecs = torch.from_numpy(np.stack([self.id_vector(e) for e in identities]))
        with torch.no_grad():
            return proj(vecs.reshape(len(identities), 1, -1).to(device=param.device, dtype=param.dtype))

    @staticmethod
    def control_image(kps: np.ndarray | None, request: ConditionRequest) -> Any:
        """InfuseNet's control image at the output size: the keypoints drawn (upstream's stick 4,
        radius 10), else black."""
        from PIL import Image

        if kps is None:
            return Image.new("RGB", (request.width, request.height), (0, 0, 0))
        return draw_kps(request.width, request.height, np.asarray(kps, np.float32).reshape(5, 2))

    # ------------------------------------------------------------------ LoRAs
    @staticmethod
    def load_loras(pipe: Any, loras: Sequence[tuple[str, str, float]]) -> list[str]:
        """Load FLUX LoRAs ``(path, name, scale)`` (upstream's Realism / Anti-blur) on top of any
        already loaded: every adapter stays active at its weight.  Returns the active names."""
        active: dict[str, float] = dict(getattr(pipe, "_facegen_loras", {}))
        for path, name, scale in loras:
            if name in active:
                raise InvalidArgumentError(f"a LoRA named '{name}' is already loaded; give another name")
            with L.model_file_errors(path, "cannot be loaded as a FLUX LoRA"):
                pipe.load_lora_weights(str(path), adapter_name=name)
            active[name] = float(scale)
        if active:
            pipe.set_adapters(list(active), adapter_weights=list(active.values()))
        pipe._facegen_loras = active
        return list(active)
