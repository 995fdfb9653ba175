"""What every ID adapter family provides: its encoder contract, a loader, and ``condition``.

An adapter turns identities (:class:`~facegen.id.IDEmbedding`) into the keyword arguments of
an existing diffusers pipeline (``prompt_embeds``, ``ip_adapter_image_embeds``, a ControlNet
image...).  It checks that every embedding comes from the encoder its weights were trained
on and refuses anything else with :class:`~facegen.errors.EncoderMismatchError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from facegen.errors import EncoderMismatchError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.models.registry import Preset
from facegen.models.resolve import ResolvedPreset


@dataclass(frozen=True)
class ConditionRequest:
    """Per-call settings an adapter may use (already filled with preset defaults)."""

    prompt: str | None
    negative_prompt: str | None
    guidance_scale: float
    height: int
    width: int
    adapter_scale: float | None = None
    controlnet_scale: float | None = None
    lora_scale: float | None = None
    masks: Sequence[Any] | None = None          # one region mask per identity (presets with max_people > 1)
    control_kps: np.ndarray | None = None       # (5, 2) keypoints in output pixels, (K, 5, 2) with K masks
    kps_draw_side: int | None = None            # side the keypoint drawing's sizes scale with (None: min(h, w))
    control_guidance: tuple[float, float] | None = None   # (start, end) fractions the ControlNet acts in


@dataclass(frozen=True)
class Sample:
    """What one image of a diffusers call is conditioned on.

    ``identities``: one identity, or one per region when the request carries ``masks``;
    ``prompt`` / ``control_kps``: this image's own text and pose (None: the request's, and
    where the request gives none, the preset's prompt / a portrait of the identity's face).
    """

    identities: tuple[IDEmbedding, ...]
    prompt: str | None = None
    control_kps: np.ndarray | None = None

    @classmethod
    def of(cls, identity: IDEmbedding | Sequence[IDEmbedding], prompt: str | None = None,
           control_kps: Any = None) -> Sample:
        idents = (identity,) if isinstance(identity, IDEmbedding) else tuple(identity)
        kps = None if control_kps is None else np.asarray(control_kps, dtype=np.float32)
        return cls(idents, prompt, kps)


class IDAdapter(ABC):
    """Base class of the adapter families (one subclass per file)."""

    family: ClassVar[str]
    #: the names people know the family and its parts by (user-facing text names them only
    #: through the registry: tests/test_architecture.py scans for them)
    display_names: ClassVar[tuple[str, ...]] = ()
    supports_prompt: ClassVar[bool] = True
    #: takes a negative prompt (guidance-distilled bases such as FLUX.1-dev do not)
    supports_negative_prompt: ClassVar[bool] = True
    supports_masks: ClassVar[bool] = False
    #: people one image can hold, each identity in its own region mask (1: one person only)
    max_people: ClassVar[int] = 1
    supports_adapter_scale: ClassVar[bool] = True
    supports_controlnet_scale: ClassVar[bool] = False
    supports_lora_scale: ClassVar[bool] = False
    supports_control_kps: ClassVar[bool] = False    # 5-point keypoint (pose) control
    #: layouts this family can take from the reference photo (``"reference"``: the photo's own
    #: framing, resized to the output) besides ``"portrait"`` (a fixed portrait framing)
    face_layouts: ClassVar[tuple[str, ...]] = ()
    #: the edit jobs (swap, aging, restoration) can run it (:meth:`inpaint_pipeline_class`)
    supports_edit: ClassVar[bool] = True
    #: why the edit jobs refuse it (when ``supports_edit`` is False), one line
    edit_refusal: ClassVar[str] = "it has no inpainting pipeline"
    #: weight quantizations :meth:`load` takes (``"8bit"``: int8 weights via diffusers' quantization support)
    quantize_choices: ClassVar[tuple[str, ...]] = ()
    #: the dtype on a CUDA device when the caller names none (FLUX needs bf16)
    cuda_dtype: ClassVar[str] = "fp16"
    #: an identity can be a bare vector (a dataset's sampled identities); False: the condition also
    #: needs state only a photo gives (PuLID's EVA hidden states)
    vector_identities: ClassVar[bool] = True

    def __init__(self, preset: Preset) -> None:
        if preset.family != self.family:
            raise InvalidArgumentError(f"preset '{preset.name}' is a {preset.family} preset, not {self.family}")
        self.preset = preset
        self.quantize: str | None = None

    def configure_loading(self, quantize: str | None = None) -> None:
        """Loading options for :meth:`load` (checked against the family's capabilities)."""
        if quantize is not None and quantize not in self.quantize_choices:
            raise InvalidArgumentError(
                f"preset '{self.preset.name}' takes no '{quantize}' weights"
                + (f"; choose one of: {', '.join(self.quantize_choices)}" if self.quantize_choices else ""))
        self.quantize = quantize

    @classmethod
    def check_editable(cls, preset_name: str) -> None:
        """Refuse, in one line and before any weight loads, a preset the edit jobs cannot run."""
        if not cls.supports_edit:
            raise InvalidArgumentError(f"preset '{preset_name}' cannot run the edit jobs: {cls.edit_refusal}")

    def photo_layout(self, photo_size: tuple[int, int], kps: np.ndarray,
                     size: tuple[int, int] | None) -> tuple[int, int, np.ndarray, int]:
        """``(width, height, kps, draw_side)`` of the ``"reference"`` face layout (families whose
        :attr:`face_layouts` include it)."""
        raise InvalidArgumentError(f"preset '{self.preset.name}' has no reference face layout")

    # ------------------------------------------------------------------ contract
    @property
    def encoder(self) -> str:
        """The ID-encoder name the adapter's weights were trained on."""
        return self.preset.encoder

    @property
    def normalise(self) -> bool:
        return self.preset.normalise

    def check_embedding(self, embedding: IDEmbedding) -> None:
        if not isinstance(embedding, IDEmbedding):
            raise InvalidArgumentError(f"expected an IDEmbedding, got {type(embedding).__name__}")
        if embedding.encoder != self.encoder:
            raise EncoderMismatchError(
                f"preset '{self.preset.name}' was trained on '{self.encoder}' embeddings, got one from "
                f"'{embedding.encoder}'; embed the photo with encoder='{self.encoder}' (or pass id_images)")
        if embedding.dim != self.preset.id_dim:
            raise EncoderMismatchError(
                f"preset '{self.preset.name}' takes {self.preset.id_dim}-D '{self.encoder}' vectors, "
                f"got {embedding.dim}-D")

    def id_vector(self, embedding: IDEmbedding) -> np.ndarray:
        """The checked vector, unit-norm or raw as the adapter's training used it."""
        self.check_embedding(embedding)
        return embedding.as_adapter_input(self.normalise).astype(np.float32)

    def check_request(self, request: ConditionRequest, n_identities: int) -> None:
        name = self.preset.name
        if request.prompt is not None and not self.supports_prompt:
            raise InvalidArgumentError(f"preset '{name}' takes no text prompt; remove the prompt")
        if request.negative_prompt is not None and not (self.supports_prompt and self.supports_negative_prompt):
            raise InvalidArgumentError(f"preset '{name}' takes no negative prompt; remove it")
        if request.adapter_scale is not None and not self.supports_adapter_scale:
            raise InvalidArgumentError(f"preset '{name}' has no adapter scale (the whole model is ID-conditioned)")
        if request.controlnet_scale is not None and not self.supports_controlnet_scale:
            raise InvalidArgumentError(f"preset '{name}' has no ControlNet; remove controlnet_scale")
        if request.lora_scale is not None and not self.supports_lora_scale:
            raise InvalidArgumentError(f"preset '{name}' has no adapter LoRA; remove lora_scale")
        if request.masks is not None:
            if not self.supports_masks or n_identities > self.max_people:
                # the pipelines refuse first, naming the presets that can (registry.check_people)
                what = "one person per image (no region masks)" if self.max_people < 2 else \
                    f"at most {self.max_people} people per image"
                raise InvalidArgumentError(f"preset '{name}' places {what}, got {max(n_identities, 2)}")
            if len(request.masks) != n_identities:
                raise InvalidArgumentError(
                    f"got {len(request.masks)} masks for {n_identities} identities; give one mask per identity")
        elif n_identities != 1:
            raise InvalidArgumentError(
                f"got {n_identities} identities without masks; give one region mask per identity "
                "or average the photos of one person into one identity")
        if request.control_kps is not None and not self.supports_control_kps:
            raise InvalidArgumentError(f"preset '{name}' takes no keypoint control")

    # ------------------------------------------------------------------ edit jobs
    def inpaint_pipeline_class(self) -> type:
        """The diffusers pipeline the edit jobs regenerate a face crop with, built from this
        family's loaded pipeline by ``from_pipe`` (components shared): SD1.5 / SDXL inpainting
        (a 4-channel UNet inpaints by latent blending)."""
        from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

        return StableDiffusionXLInpaintPipeline if self.preset.base == "sdxl" else StableDiffusionInpaintPipeline

    def inpaint_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """:meth:`condition`'s kwargs as the inpainting pipeline takes them (the default: as is)."""
        return kwargs

    # ------------------------------------------------------------------ family hooks
    @abstractmethod
    def load(self, resolved: ResolvedPreset, dtype: Any) -> Any:
        """Build the diffusers pipeline from the resolved files (same code for tiny and real)."""

    @abstractmethod
    def condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest) -> dict[str, Any]:
        """Kwargs of one diffusers call making one image per sample (``num_images_per_prompt=1``;
        no generator, steps or size): image i is conditioned on ``samples[i]``.  The one
        conditioning path: a call of N images of one person is N equal samples."""

    def check_samples(self, samples: Sequence[Sample], request: ConditionRequest) -> int:
        """The samples suit this adapter and each other; returns the identities per sample."""
        if len(samples) == 0:
            raise InvalidArgumentError("no samples to condition on")
        counts = {len(s.identities) for s in samples}
        if len(counts) != 1 or 0 in counts:
            raise InvalidArgumentError(
                f"every sample needs the same number (>= 1) of identities, got {sorted(counts)}")
        n_ids = counts.pop()
        self.check_request(request, n_ids)
        name = self.preset.name
        if not self.supports_prompt and any(s.prompt is not None for s in samples):
            raise InvalidArgumentError(f"preset '{name}' takes no text prompt; remove the prompts")
        for i, s in enumerate(samples):
            if s.control_kps is None:
                continue
            if not self.supports_control_kps:
                raise InvalidArgumentError(f"preset '{name}' takes no keypoint (pose) control; remove the poses")
            if np.asarray(s.control_kps).size != 10 * n_ids:
                raise InvalidArgumentError(f"sample {i}: control_kps must be 5 (x, y) points per identity, "
                                           f"got shape {np.asarray(s.control_kps).shape}")
        return n_ids

    def pose_keypoints(self, pose: Any, width: int, height: int) -> np.ndarray:
        """Output-pixel keypoints of a head pose (yaw, pitch, roll) for families that take pose
        control (:attr:`supports_control_kps`)."""
        raise InvalidArgumentError(f"preset '{self.preset.name}' takes no pose control")

    def ip_condition(self, pipe: Any, samples: Sequence[Sample], request: ConditionRequest,
                     embed_tail: tuple[int, ...]) -> dict[str, Any]:
        """The shared part of ``condition`` for IP-Adapter families: checks, the ID rows
        (``(N, K, *embed_tail, D)``: sample-major, zeros as the CFG negative, ``[neg..., pos...]``),
        and per-sample prompts (None: the request's, then the preset's) encoded once per pipeline.
        The caller sets the adapter scale (one per identity with region masks)."""
        import torch

        from facegen.adapters.batching import enable_per_sample_ip_embeds, encode_prompts

        n_ids = self.check_samples(samples, request)
        vecs = torch.from_numpy(np.stack([np.stack([self.id_vector(e) for e in s.identities]) for s in samples]))
        vecs = vecs.reshape(len(samples), n_ids, *embed_tail, vecs.shape[-1])
        enable_per_sample_ip_embeds(pipe)
        prompt, negative = self.texts(request)
        kwargs = encode_prompts(pipe, [prompt if s.prompt is None else s.prompt for s in samples],
                                [negative] * len(samples), self.do_cfg(pipe, request.guidance_scale))
        kwargs["ip_adapter_image_embeds"] = self.ip_embeds(pipe, vecs, request.guidance_scale)
        return kwargs

    def setting(self, request: ConditionRequest, name: str) -> float | None:
        """``request``'s ``adapter_scale`` / ``controlnet_scale`` / ``lora_scale``, else the preset's."""
        value = getattr(request, name)
        return getattr(self.preset.defaults, name) if value is None else float(value)

    def texts(self, request: ConditionRequest) -> tuple[str | None, str | None]:
        """(prompt, negative prompt) of ``request``, the preset's where it gives none."""
        d = self.preset.defaults
        return (d.prompt if request.prompt is None else request.prompt,
                d.negative_prompt if request.negative_prompt is None else request.negative_prompt)

    def ip_embeds(self, pipe: Any, vecs: Any, guidance_scale: float) -> list[Any]:
        """``ip_adapter_image_embeds`` from ID rows: zeros as the CFG negative (``[neg..., pos...]``),
        in the UNet's dtype."""
        import torch

        embeds = torch.cat([torch.zeros_like(vecs), vecs]) if self.do_cfg(pipe, guidance_scale) else vecs
        return [embeds.to(dtype=pipe.unet.dtype)]

    def do_cfg(self, pipe: Any, guidance_scale: float) -> bool:
        """Mirror of diffusers' ``do_classifier_free_guidance`` for the loaded pipeline."""
        return guidance_scale > 1.0 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
