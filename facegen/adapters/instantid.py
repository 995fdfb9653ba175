"""InstantID: Resampler face tokens in IP attention + IdentityNet on the 5-keypoint drawing.

Released layout (InstantX/InstantID, compat.md 2.3): ``ControlNetModel/`` (IdentityNet, an
SDXL ControlNet) and ``ip-adapter.bin`` = ``{"image_proj": Resampler (16 queries),
"ip_adapter": {k}.to_k_ip/to_v_ip at odd k}``.  The ``.bin`` goes through diffusers'
``load_ip_adapter`` (the Resampler becomes ``IPAdapterPlusImageProjection``).  The one thing
a stock ``StableDiffusionXLControlNetPipeline`` cannot do is feed IdentityNet the face
tokens instead of the text: :class:`StableDiffusionXLInstantIDPipeline` adds exactly that, as
a forward pre-hook on the ControlNet for the duration of a call.

The embedding is the raw (un-normalised) antelopev2 vector; CFG negative = Resampler(zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.regions import mask_box, masked_residuals, masks_tensor
from facegen.adapters.registry import register_family
from facegen.choices import FACE_LAYOUT
from facegen.errors import InvalidArgumentError
from facegen.faces.pose import draw_kps, kps_in_box, portrait_kps, pose_kps
from facegen.id.embedding import IDEmbedding
from facegen.models import loading as L
from facegen.models.checkpoints import (
    check_state_dict,
    ip_adapter_shapes,
    resampler_shapes,
)
from facegen.models.resolve import ResolvedPreset

INSTANTID_QUERIES = 16
def resize_img_size(width: int, height: int, max_side: int = 1280, min_side: int = 1024,
                    base_pixel_number: int = 64) -> tuple[int, int]:
    """The ``(width, height)`` upstream InstantID's ``resize_img`` gives a photo: scaled so the short
    side is ``min_side``, then so the long side is ``max_side``, each side floored to a multiple
    of ``base_pixel_number`` (same rounding steps as upstream)."""
    if width < 1 or height < 1:
        raise InvalidArgumentError(f"a photo of {width}x{height} pixels has no area")
    ratio = min_side / min(height, width)
    w, h = round(ratio * width), round(ratio * height)
    ratio = max_side / max(h, w)
    w_new = (round(ratio * w) // base_pixel_number) * base_pixel_number
    h_new = (round(ratio * h) // base_pixel_number) * base_pixel_number
    if w_new < base_pixel_number or h_new < base_pixel_number:
        raise InvalidArgumentError(f"a {width}x{height} photo is too elongated for the reference layout; "
                                   "use face_layout='portrait'")
    return w_new, h_new


def reference_layout(photo_size: tuple[int, int], kps: np.ndarray, resize: tuple[int, int, int],
                     size: tuple[int, int] | None = None) -> tuple[int, int, np.ndarray]:
    """Upstream InstantID's layout: the reference photo (``photo_size`` = (width, height)) resized
    by :func:`resize_img_size` — or, when ``size`` (width, height) is given, fitted inside it and
    centred — with its own 5 keypoints carried along.  Returns ``(width, height, kps)`` in output
    pixels (pixel-centre mapping, as detecting on the resized photo would give)."""
    w0, h0 = photo_size
    pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    if size is None:
        w, h = resize_img_size(w0, h0, *resize)
        sx, sy, ox, oy = w / w0, h / h0, 0.0, 0.0
    else:
        w, h = size
        sx = sy = min(w / w0, h / h0)
        ox, oy = (w - w0 * sx) / 2.0, (h - h0 * sy) / 2.0
    out = np.stack([(pts[:, 0] + 0.5) * sx - 0.5 + ox, (pts[:, 1] + 0.5) * sy - 0.5 + oy], axis=1)
    return w, h, out.astype(np.float32)


def check_instantid_checkpoint(state: dict[str, Any], unet: Any, id_dim: int, what: str) -> None:
    if not {"image_proj", "ip_adapter"} <= set(state):
        raise InvalidArgumentError(f"{what} has no 'image_proj'/'ip_adapter' entries")
    proj = state["image_proj"]
    if "latents" not in proj:
        raise InvalidArgumentError(f"{what} image_proj is not a Resampler (no 'latents')")
    _, queries, dim = tuple(proj["latents"].shape)
    if queries != INSTANTID_QUERIES:
        raise InvalidArgumentError(f"{what}: the Resampler has {queries} queries, InstantID uses {INSTANTID_QUERIES}")
    check_state_dict(proj, resampler_shapes(id_dim, dim, unet.config.cross_attention_dim, queries),
                     f"{what} image_proj")
    check_state_dict(state["ip_adapter"], ip_adapter_shapes(unet, lora_rank=None), f"{what} ip_adapter")


@dataclass(frozen=True)
class IdentityNetRegions:
    """Several people: IdentityNet runs once per person — that person's face tokens and their own
    keypoint drawing — and each pass's residuals are weighted by the person's region mask, then
    summed (upstream's region control, one pass per person).  ``images[k][i]``: person k's drawing
    for sample i; ``masks``: ``(K, H, W)`` region masks in output pixels."""

    images: list[list[Any]]
    masks: Any


def regional_identitynet(controlnet: Any, tokens: Any, regions: IdentityNetRegions, preprocess: Any) -> Any:
    """Make ``controlnet`` (IdentityNet) run per person as :class:`IdentityNetRegions` says, for
    one pipeline call; returns the function that puts its own forward back.  ``tokens``:
    ``(B, K, queries, dim)`` face tokens (negative half first under CFG)."""
    import torch

    original = controlnet.forward
    own = "forward" in vars(controlnet)
    conds: dict[tuple[Any, ...], list[Any]] = {}

    def cond_images(like: Any) -> list[Any]:
        key = (tuple(like.shape), like.dtype, like.device)
        if key not in conds:        # each person's drawing, laid out like the pipeline's control image
            made = []
            for imgs in regions.images:
                t = preprocess(imgs, height=like.shape[-2], width=like.shape[-1]).to(like.device, like.dtype)
                t = torch.cat([t] * (like.shape[0] // t.shape[0]))
                if t.shape != like.shape:
                    raise RuntimeError(f"per-person control images {tuple(t.shape)} != {tuple(like.shape)}")
                made.append(t)
            conds[key] = made
        return conds[key]

    def forward(sample: Any, timestep: Any, encoder_hidden_states: Any = None, controlnet_cond: Any = None,
                conditioning_scale: Any = 1.0, *args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        n = sample.shape[0]
        toks = tokens.chunk(2)[1] if tokens.shape[0] == 2 * n else tokens   # guess mode: conditional half
        if toks.shape[0] != n:
            raise RuntimeError(f"face tokens for {toks.shape[0]} samples, IdentityNet got {n}")
        down_sum: list[Any] | None = None
        mid_sum = None
        for k, cond in enumerate(cond_images(controlnet_cond)):
            down, mid = original(sample, timestep, *args, encoder_hidden_states=toks[:, k].to(sample),
                                 controlnet_cond=cond, conditioning_scale=conditioning_scale,
                                 return_dict=False, **kwargs)
            down, mid = masked_residuals(down, mid, regions.masks[k])
            down_sum = down if down_sum is None else [a + b for a, b in zip(down_sum, down)]
            mid_sum = mid if mid_sum is None else mid_sum + mid
        if return_dict:
            from diffusers.models.controlnets.controlnet import ControlNetOutput
            return ControlNetOutput(down_block_res_samples=tuple(down_sum), mid_block_res_sample=mid_sum)
        return down_sum, mid_sum

    controlnet.forward = forward

    def restore() -> None:
        if own:
            controlnet.forward = original
        else:
            del controlnet.forward
    return restore


def _pipeline_class(base: type, name: str) -> type:
    """``base`` (an SDXL ControlNet pipeline) whose ControlNet, IdentityNet, sees the face tokens only."""
    import torch

    class InstantIDPipeline(base):  # type: ignore[valid-type, misc]
        """Call it like ``base`` with ``ip_adapter_image_embeds`` (the ID vector, negative first
        under CFG) and the keypoint drawing as the ControlNet image.  The UNet gets text + face
        tokens through the IP-Adapter path; IdentityNet's ``encoder_hidden_states`` are replaced
        by the same projected face tokens.
        """

        _face_tokens: Any = None

        def _identitynet_inputs(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            tokens = self._face_tokens
            if tokens is None:
                raise RuntimeError("IdentityNet called without face tokens")
            sample = args[0] if args else kwargs["sample"]
            n = sample.shape[0]
            if tokens.shape[0] == 2 * n:        # guess mode: ControlNet runs on the conditional half
                tokens = tokens.chunk(2)[1]
            elif tokens.shape[0] != n:
                raise RuntimeError(f"face tokens for {tokens.shape[0]} samples, IdentityNet got {n}")
            kwargs["encoder_hidden_states"] = tokens.to(device=sample.device, dtype=sample.dtype)
            return args, kwargs

        @torch.no_grad()
        def __call__(self, *args: Any, identitynet_regions: IdentityNetRegions | None = None,
                     **kwargs: Any) -> Any:
            embeds = kwargs.get("ip_adapter_image_embeds")
            if embeds is None:
                raise InvalidArgumentError("InstantID needs ip_adapter_image_embeds (the face embedding)")
            guidance = kwargs.get("guidance_scale", 5.0)
            cfg = guidance > 1.0 and self.unet.config.time_cond_proj_dim is None
            per_prompt = kwargs.get("num_images_per_prompt", 1) or 1
            prompt = kwargs.get("prompt")
            prompt_embeds = kwargs.get("prompt_embeds")
            n_prompts = (len(prompt) if isinstance(prompt, list)
                         else prompt_embeds.shape[0] if prompt_embeds is not None else 1)
            proj = self.unet.encoder_hid_proj
            param = next(proj.parameters())
            prepared = self.prepare_ip_adapter_image_embeds(None, embeds, param.device, per_prompt * n_prompts, cfg)
            prepared = [e.to(device=param.device, dtype=param.dtype) for e in prepared]
            tokens = proj(prepared)[0]                     # (B, images, queries, dim)
            if identitynet_regions is not None:            # several people: one IdentityNet pass each
                restore = regional_identitynet(self.controlnet, tokens, identitynet_regions,
                                               self.control_image_processor.preprocess)
                try:
                    return super().__call__(*args, **kwargs)
                finally:
                    restore()
            self._face_tokens = tokens.flatten(1, 2)
            handle = self.controlnet.register_forward_pre_hook(self._identitynet_inputs, with_kwargs=True)
            try:
                return super().__call__(*args, **kwargs)
            finally:
                handle.remove()
                self._face_tokens = None

    InstantIDPipeline.__name__ = InstantIDPipeline.__qualname__ = name
    return InstantIDPipeline


_PIPELINE_CLASSES: dict[str, type] = {}


def instantid_pipeline_class(kind: str = "text2img") -> type:
    """The InstantID pipeline class: ``text2img`` (SDXL ControlNet) or ``inpaint`` (SDXL ControlNet
    inpainting, for the edit jobs). Built on first use so importing facegen does not import diffusers."""
    if kind not in _PIPELINE_CLASSES:
        from diffusers import StableDiffusionXLControlNetInpaintPipeline, StableDiffusionXLControlNetPipeline
        bases = {"text2img": (StableDiffusionXLControlNetPipeline, "StableDiffusionXLInstantIDPipeline"),
                 "inpaint": (StableDiffusionXLControlNetInpaintPipeline, "StableDiffusionXLInstantIDInpaintPipeline")}
        if kind not in bases:
            raise InvalidArgumentError(f"unknown InstantID pipeline kind '{kind}'")
        _PIPELINE_CLASSES[kind] = _pipeline_class(*bases[kind])
    return _PIPELINE_CLASSES[kind]


@register_family
class InstantIDAdapter(IDAdapter):
    family = "instantid"
    display_names = ("InstantID", "IdentityNet")
    supports_controlnet_scale = True
    supports_control_kps = True
    supports_masks = True
    max_people = 4
    face_layouts = FACE_LAYOUT.values

    def photo_layout(self, photo_size: tuple[int, int], kps: np.ndarray,
                     size: tuple[int, int] | None) -> tuple[int, int, np.ndarray, int]:
        """The reference layout of a photo: ``(width, height, kps, draw_side)`` (see
        :func:`reference_layout`); the drawing keeps upstream's dot and stick sizes (radius 10,
        stick 4 at the preset's native ~1024 px) whatever the output size."""
        d = self.preset.defaults
        if d.reference_resize is None:
            raise InvalidArgumentError(f"preset '{self.preset.name}' has no reference layout")
        w, h, pts = reference_layout(photo_size, kps, d.reference_resize, size)
        return w, h, pts, min(d.height, d.width)

    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        path = resolved.file("ip_adapter")
        with L.quiet_loading():
            from diffusers import ControlNetModel

            parts = L.load_sdxl_parts(resolved.repo_dir("base"), dtype)
            controlnet = L.load_diffusers_model(ControlNetModel, resolved.folder("controlnet"), dtype)
            if controlnet.config.cross_attention_dim != parts["unet"].config.cross_attention_dim:
                raise InvalidArgumentError("IdentityNet and the SDXL UNet have different cross-attention widths")
            scheduler = L.make_scheduler(self.preset.defaults.scheduler, parts.pop("scheduler_config"))
            cls = instantid_pipeline_class()
            pipe = cls(**parts, controlnet=controlnet, scheduler=scheduler, feature_extractor=None,
                       image_encoder=None, **L.pipeline_kwargs(cls))
            state = L.load_pickle_state(path)
            check_instantid_checkpoint(state, pipe.unet, self.preset.id_dim, path.name)
            pipe.load_ip_adapter(state, subfolder="", weight_name=path.name, image_encoder_folder=None,
                                 low_cpu_mem_usage=False)
        return pipe

    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        if request.masks is not None:
            return self.regional_condition(pipe, samples, request)
        kwargs = self.ip_condition(pipe, samples, request, embed_tail=(1,))    # raw vectors, (N, 1, 1, D)
        pipe.set_ip_adapter_scale(self.setting(request, "adapter_scale"))
        kwargs.update(image=[self.kps_image(self.identity_kps(
                          s.identities[0], s.control_kps if s.control_kps is not None else request.control_kps,
                          request), request) for s in samples],
                      controlnet_conditioning_scale=self.setting(request, "controlnet_scale"))
        return kwargs

    def regional_condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest
                           ) -> dict[str, Any]:
        """One identity per region mask: identity k's face tokens attend only inside mask k (IP
        attention masks) and IdentityNet runs once per identity on their own keypoints, its
        residuals weighted by mask k (:class:`IdentityNetRegions`); the ControlNet image is every
        identity's keypoints drawn in one picture (the drawing each person's pass sees in its region)."""
        kwargs = self.ip_condition(pipe, samples, request, embed_tail=(1,))    # (N, K, 1, D)
        n_ids = len(samples[0].identities)
        pipe.set_ip_adapter_scale([[self.setting(request, "adapter_scale")] * n_ids])
        masks = masks_tensor(request.masks, request.height, request.width)
        kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": [masks]}
        per_sample = [self.region_kps(s, request) for s in samples]            # (K, 5, 2) each
        drawings = [[self.kps_image(kps[k], request) for kps in per_sample] for k in range(n_ids)]
        kwargs.update(image=[_combined([np.asarray(d[i]) for d in drawings]) for i in range(len(samples))],
                      identitynet_regions=IdentityNetRegions(drawings, masks[0]),
                      controlnet_conditioning_scale=self.setting(request, "controlnet_scale"))
        return kwargs

    def region_kps(self, sample: Sample, request: ConditionRequest) -> np.ndarray:
        """``(K, 5, 2)`` keypoints of a sample's identities: the ones given, else each identity's own
        face placed in its region's bounding box (a frontal face when the embedding has none)."""
        kps = sample.control_kps if sample.control_kps is not None else request.control_kps
        k = len(sample.identities)
        if kps is not None:
            return np.asarray(kps, dtype=np.float32).reshape(k, 5, 2)
        return np.stack([kps_in_box(e.face.kps if e.face is not None else None, mask_box(m), fill=0.3)
                         for e, m in zip(sample.identities, request.masks)])

    def pose_keypoints(self, pose: Any, width: int, height: int) -> np.ndarray:
        return pose_kps(pose, width, height)

    def inpaint_pipeline_class(self) -> type:
        """IdentityNet on the target face's keypoints: the SDXL ControlNet-inpainting variant."""
        return instantid_pipeline_class("inpaint")

    def inpaint_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The keypoint drawing is the ControlNet image of the inpainting pipeline."""
        out = dict(kwargs)
        out["control_image"] = out.pop("image")
        return out

    @staticmethod
    def identity_kps(ident: IDEmbedding, kps: np.ndarray | None, request: ConditionRequest) -> np.ndarray:
        """The keypoints to draw: the ones given (output pixels), else the identity's own face
        placed as a portrait (a frontal layout when the embedding carries no face)."""
        if kps is not None:
            return np.asarray(kps, dtype=np.float32).reshape(5, 2)
        return portrait_kps(ident.face.kps if ident.face is not None else None, request.width, request.height)

    @staticmethod
    def kps_image(kps: np.ndarray, request: ConditionRequest) -> Any:
        """IdentityNet's keypoint drawing at the output size (upstream's radius 10 / stick 4 at ~1024 px)."""
        side = request.kps_draw_side or min(request.width, request.height)
        return draw_kps(request.width, request.height, kps, stick_width=max(1, round(4 * side / 1024)),
                        radius=max(2, round(10 * side / 1024)))


def _combined(drawings: Sequence[np.ndarray]) -> Any:
    """Several keypoint drawings (RGB arrays, black background) as one picture."""
    from PIL import Image

    return Image.fromarray(np.maximum.reduce([np.asarray(d, dtype=np.uint8) for d in drawings]))
