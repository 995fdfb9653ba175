"""Stage 1 of generation: the call's arguments checked (:func:`check_call`), then the preset's
defaults filled in (:func:`fill_defaults`), two separate named steps.

``check_call`` only validates: it raises a :class:`~facegen.errors.FacegenError` naming the
argument and changes nothing.  ``fill_defaults`` is the one place a preset's defaults (steps,
guidance, size, face layout, seeds) replace the arguments a caller left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegen import limits
from facegen.adapters.base import ConditionRequest, IDAdapter, Sample
from facegen.adapters.registry import check_people
from facegen.errors import InvalidArgumentError
from facegen.models.registry import Preset
from facegen.pipelines.runtime import seeds_for

MAX_SIDE = 4096  # largest height/width (pixels) a call may ask for
OUTPUT_TYPES = ("pil", "np")


@dataclass(frozen=True)
class CallArgs:
    """The arguments of one :class:`~facegen.pipelines.generation.IDGenerationPipeline` call
    that shape the request, as the caller gave them (None: the preset's default)."""

    num_images: int = 1
    seed: int | None = None
    seeds: Sequence[int] | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    adapter_scale: float | None = None
    controlnet_scale: float | None = None
    lora_scale: float | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    id_masks: Sequence[Any] | None = None
    control_kps: Any = None
    scheduler: str | None = None
    batch_size: int | None = None
    face_layout: str | None = None
    output_type: str = "pil"


@dataclass(frozen=True)
class GenerationRequest:
    """Every setting of one call, preset defaults filled in."""

    num_images: int
    seeds: list[int]
    steps: int
    guidance_scale: float
    height: int
    width: int
    condition: ConditionRequest
    scheduler: str | None
    batch_size: int
    face_layout: str | None = None
    output_type: str = "pil"
    explicit_size: bool = field(default=False, compare=False)


def check_sampling(preset: Preset, max_steps: int, num_inference_steps: Any, guidance_scale: Any
                   ) -> tuple[int, float]:
    """Steps (bounded by the scheduler) and a finite guidance scale, preset defaults filled in."""
    d = preset.defaults
    steps = d.steps if num_inference_steps is None else limits.integer(
        "num_inference_steps", num_inference_steps, 1, max_steps, limits.steps_hint(max_steps))
    guidance = d.guidance if guidance_scale is None else limits.finite(
        "guidance_scale", guidance_scale, 0.0, limits.MAX_GUIDANCE)
    return steps, guidance


def count_images(args: CallArgs, samples: Sequence[Sample] | None) -> int:
    """How many images the call makes: one per sample, else one per seed, else ``num_images``."""
    if samples is not None:
        return len(samples)
    if args.seeds is not None and args.num_images == 1:
        return len(args.seeds)
    return args.num_images


def check_face_layout(face_layout: str | None, has_photos: bool) -> None:
    """``"reference"`` frames the reference photo: embeddings alone carry none, and silently drawing
    a ``"portrait"`` instead would leave the metadata saying ``reference``."""
    if face_layout == "reference" and not has_photos:
        raise InvalidArgumentError("face_layout 'reference' frames the reference photo, and embeddings carry "
                                   "none: use face_layout 'portrait' (or give the photo)")


def check_call(preset: Preset, adapter: IDAdapter, max_steps: int, args: CallArgs, *,
               n_items: int | None, samples: Sequence[Sample] | None) -> None:
    """Refuse a bad call before any work: ``n_items`` photos or embeddings (None with ``samples``)."""
    if (n_items is None) == (samples is None):
        raise InvalidArgumentError("give exactly one of id_images (photos), id_embeds (IDEmbeddings) "
                                   "or samples (one per image)")
    if n_items == 0 or (samples is not None and len(samples) == 0):
        raise InvalidArgumentError("id_images/id_embeds/samples is empty: give at least one photo or embedding")
    if samples is not None and any(not isinstance(s, Sample) for s in samples):
        raise InvalidArgumentError("samples must be facegen.adapters.base.Sample objects (Sample.of(embedding))")
    num_images = count_images(args, samples)
    if not isinstance(num_images, int) or num_images < 1:
        raise InvalidArgumentError(f"num_images must be a positive integer, got {num_images!r}")
    if num_images > limits.max_images():
        raise InvalidArgumentError(f"num_images {num_images} is over the limit of {limits.max_images()} "
                                   f"(raise it with {limits.MAX_IMAGES_ENV})")
    check_sampling(preset, max_steps, args.num_inference_steps, args.guidance_scale)
    for name, v in (("height", args.height), ("width", args.width)):
        if v is None:
            continue
        v = limits.integer(name, v)
        if v < 32 or v % 8 or v > MAX_SIDE:
            raise InvalidArgumentError(f"{name} must be a multiple of 8 in 32..{MAX_SIDE}, got {v}")
    for name, v in (("adapter_scale", args.adapter_scale), ("controlnet_scale", args.controlnet_scale),
                    ("lora_scale", args.lora_scale)):
        if v is not None:
            limits.finite(name, v, 0.0, 5.0)
    limits.check_prompt("prompt", args.prompt)
    limits.check_prompt("negative_prompt", args.negative_prompt)
    if args.id_masks is not None and n_items is not None and len(args.id_masks) != n_items:
        raise InvalidArgumentError(f"got {len(args.id_masks)} masks for {n_items} identities (one mask each)")
    if args.scheduler is not None:
        from facegen.models.loading import SCHEDULERS
        if args.scheduler not in SCHEDULERS:
            raise InvalidArgumentError(f"unknown scheduler '{args.scheduler}'; choose one of: {', '.join(SCHEDULERS)}")
    if args.batch_size is not None and (not isinstance(args.batch_size, int) or args.batch_size < 1):
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {args.batch_size!r}")
    layouts = adapter.face_layouts
    if args.face_layout is not None and args.face_layout not in layouts:
        raise InvalidArgumentError(
            f"face_layout {args.face_layout!r}: preset '{preset.name}' takes "
            + (f"one of {', '.join(map(repr, layouts))}" if layouts else "no face layout (it draws no keypoints)"))
    if args.output_type not in OUTPUT_TYPES:
        raise InvalidArgumentError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {args.output_type!r}")
    n_kps = len(args.id_masks) if args.id_masks is not None else 1       # one set of 5 points per region
    if args.control_kps is not None and np.asarray(args.control_kps).size != 10 * n_kps:
        raise InvalidArgumentError(f"control_kps must be 5 (x, y) points per identity, "
                                   f"got shape {np.asarray(args.control_kps).shape}")
    seeds_for(num_images, args.seed, args.seeds)                      # range and seed/seeds conflicts
    if args.id_masks is not None:
        check_people(preset, len(args.id_masks), placed=True)
    adapter.check_request(fill_condition(preset, args, args.guidance_scale or 0.0),
                          n_items if args.id_masks is not None and n_items is not None else 1)


def fill_condition(preset: Preset, args: CallArgs, guidance: float) -> ConditionRequest:
    d = preset.defaults
    return ConditionRequest(
        prompt=args.prompt, negative_prompt=args.negative_prompt, guidance_scale=guidance,
        height=d.height if args.height is None else int(args.height),
        width=d.width if args.width is None else int(args.width),
        adapter_scale=args.adapter_scale, controlnet_scale=args.controlnet_scale, lora_scale=args.lora_scale,
        masks=args.id_masks,
        control_kps=None if args.control_kps is None else _kps(args.control_kps))


def _kps(kps: Any) -> np.ndarray:
    """``(5, 2)`` keypoints, or ``(K, 5, 2)`` for K regions."""
    arr = np.asarray(kps, np.float32)
    return arr.reshape(5, 2) if arr.size == 10 else arr.reshape(-1, 5, 2)


def fill_defaults(preset: Preset, max_steps: int, args: CallArgs, samples: Sequence[Sample] | None
                  ) -> GenerationRequest:
    """The checked call with the preset's defaults in every place the caller left empty."""
    num_images = count_images(args, samples)
    steps, guidance = check_sampling(preset, max_steps, args.num_inference_steps, args.guidance_scale)
    cond = fill_condition(preset, args, guidance)
    layout = args.face_layout if args.face_layout is not None else preset.defaults.face_layout
    return GenerationRequest(num_images, seeds_for(num_images, args.seed, args.seeds), steps, guidance,
                             cond.height, cond.width, cond, args.scheduler,
                             1 if args.batch_size is None else int(args.batch_size), layout, args.output_type,
                             explicit_size=args.height is not None or args.width is not None)
