"""ID-preserving generation: photos (or an ID embedding) of a person → new images of them.

One ``__call__`` for every preset (Arc2Face, IP-Adapter-FaceID, InstantID, and their tiny
variants), in numbered stages, each a method you can call alone::

    1. check_inputs      argument sanity, preset defaults filled in
    2. identities        photos → IDEmbedding(s) with the adapter's own encoder (averaged)
    3. condition         adapter: embeddings → diffusers kwargs
    4. denoise           one CPU torch.Generator per image: image i depends on its seed only
    5. measure           ID similarity of each output by an independent encoder
    6. provenance        per-image metadata (AI-generated, preset, adapter, seed, version)

Example::

    pipe = IDGenerationPipeline.from_preset("tiny")
    out = pipe(id_images=["me.jpg"], num_images=2, seed=7)
    out.images[0].save("0.png")
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facegen import __version__, limits
from facegen.adapters.base import ConditionRequest, IDAdapter
from facegen.adapters.registry import adapter_for
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.id.embedding import IDEmbedding, mean_embedding
from facegen.models.registry import Preset, get_preset
from facegen.models.resolve import resolve_preset
from facegen.paths import require_licence
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

ImageInput = Any  # path, bytes, PIL image or RGB array (anything facegen.io.load_image reads)
SEED_MAX = 2**63 - 1
MAX_SIDE = 4096  # largest height/width (pixels) a call may ask for


def resolve_device(device: str | Any | None) -> Any:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device '{device}' requested but CUDA is not available; use device='cpu'")
    return dev


def resolve_dtype(dtype: str | Any | None, device: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    try:
        return names[str(dtype).lower()]
    except KeyError:
        raise InvalidArgumentError(f"unknown dtype '{dtype}'; use one of {', '.join(names)}") from None


def seeds_for(num_images: int, seed: int | None = None, seeds: Sequence[int] | None = None) -> list[int]:
    """Per-image seeds: explicit ``seeds``, else ``seed + i``, else fresh random ones.

    ``seed + i`` means image i of a run is reproduced alone by ``seed=seed + i``.
    """
    if seeds is not None:
        if seed is not None:
            raise InvalidArgumentError("give seed or seeds, not both")
        out = [int(s) for s in seeds]
        if len(out) != num_images:
            raise InvalidArgumentError(f"got {len(out)} seeds for {num_images} images")
    else:
        base = secrets.randbelow(2**31) if seed is None else int(seed)
        out = [base + i for i in range(num_images)]
    for s in out:
        if not 0 <= s <= SEED_MAX:
            raise InvalidArgumentError(f"seed {s} is outside 0..2**63-1")
    return out


def padded_batch_size(n: int, cap: int) -> int:
    """The static batch a short batch of ``n`` is padded to: the next power of two, at most ``cap``
    (so a compiled pipeline sees at most log2(cap) + 2 shapes)."""
    if n < 1 or cap < n:
        raise InvalidArgumentError(f"cannot pad a batch of {n} within a cap of {cap}")
    return min(1 << (n - 1).bit_length(), cap)


@dataclass(frozen=True)
class GenerationRequest:
    """Stage-1 result: every setting of one call, preset defaults filled in."""

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


class IDGenerationPipeline:
    """ID-conditioned text-to-image for every preset of :mod:`facegen.models.registry`."""

    def __init__(self, preset: Preset, adapter: IDAdapter, pipe: Any, *, device: Any, dtype: Any,
                 models_dir: str | os.PathLike[str] | None = None, accept_license: bool = False) -> None:
        self.preset = preset
        self.adapter = adapter
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.models_dir = models_dir
        self.accept_license = accept_license
        self._scheduler_config = dict(pipe.scheduler.config)
        self._largest_batch = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, models_dir: str | os.PathLike[str] | None = None, device: str | Any | None = None,
                    dtype: str | Any | None = None, accept_license: bool = False,
                    download: bool | None = None, fast_path: bool | Any = True,
                    quantize: str | None = None) -> IDGenerationPipeline:
        """Resolve (local folder, else hub when online), check the licence, and load a preset.

        ``fast_path``: True (default) applies :func:`facegen.speed.engine.optimize_pipeline`
        with the exact options for the device; a ``FastPathConfig`` sets them; False loads plain.
        ``quantize``: ``"8bit"`` weights where the family offers them (``adapter.quantize_choices``).
        Raises LicenseNotAcceptedError for non-commercial weights without ``accept_license``
        (or ``FACEGEN_ACCEPT_NONCOMMERCIAL=1``), ModelNotFoundError naming the missing files.
        """
        preset = get_preset(name)
        if preset.needs_licence:
            require_licence(f"preset '{preset.name}'", preset.licence, accept_license)
        import torch

        adapter = adapter_for(preset)
        adapter.configure_loading(quantize=quantize)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype if dtype is not None or dev.type != "cuda" else adapter.cuda_dtype, dev)
        if dev.type == "cpu" and dt == torch.float16:
            raise InvalidArgumentError("float16 is not supported on CPU; use dtype='fp32' or 'bf16'")
        resolved = resolve_preset(preset, models_dir, download=download)
        logger.info("loading preset '%s' (%s) from %s", preset.name, preset.family, resolved.root)
        from facegen.models.loading import model_file_errors
        with model_file_errors(resolved.root, f"preset '{preset.name}' cannot be loaded from this folder"):
            pipe = adapter.load(resolved, dt)
        pipe.to(dev)
        if fast_path:
            # exact options only (same pixels within the benchmark's tolerance); an interactive
            # call skips torch.compile, whose warm-up would cost more than one image saves
            from facegen.speed.engine import FastPathConfig, optimize_pipeline
            cfg = fast_path if isinstance(fast_path, FastPathConfig) else FastPathConfig.default_for(dev, interactive=True)
            optimize_pipeline(pipe, cfg)
        return cls(preset, adapter, pipe, device=dev, dtype=dt, models_dir=models_dir, accept_license=accept_license)

    @property
    def encoder(self) -> str:
        """The ID encoder this preset's adapter was trained on (embed photos with it)."""
        return self.adapter.encoder

    def enable_model_cpu_offload(self, gpu_id: int | None = None) -> None:
        """Keep only the running component on the GPU (needs CUDA and accelerate)."""
        import torch

        if not torch.cuda.is_available():
            raise InvalidArgumentError("CPU offload moves models to a CUDA GPU on demand; no CUDA device found")
        self.pipe.enable_model_cpu_offload(gpu_id=gpu_id)

    def enable_vae_tiling(self) -> None:
        """Decode large images tile by tile (less memory, same content up to seams)."""
        self.pipe.vae.enable_tiling()

    def enable_vae_slicing(self) -> None:
        self.pipe.vae.enable_slicing()

    # ------------------------------------------------------------------ stage 1
    def max_steps(self) -> int:
        """The most denoising steps this pipeline takes: ``$FACEGEN_MAX_STEPS`` (default 150),
        at most half its scheduler's ``num_train_timesteps``."""
        return limits.max_steps(self._scheduler_config.get("num_train_timesteps"))

    def check_sampling(self, num_inference_steps: Any, guidance_scale: Any) -> tuple[int, float]:
        """Steps (bounded by the scheduler) and a finite guidance scale, preset defaults filled in."""
        d = self.preset.defaults
        cap = self.max_steps()
        steps = d.steps if num_inference_steps is None else limits.integer(
            "num_inference_steps", num_inference_steps, 1, cap, f"the limit; raise it with {limits.MAX_STEPS_ENV}")
        guidance = d.guidance if guidance_scale is None else limits.finite(
            "guidance_scale", guidance_scale, 0.0, limits.MAX_GUIDANCE)
        return steps, guidance

    def check_inputs(self, *, id_images: Sequence[ImageInput] | None, id_embeds: Sequence[IDEmbedding] | None,
                     num_images: int, seed: int | None, seeds: Sequence[int] | None, num_inference_steps: int | None,
                     guidance_scale: float | None, height: int | None, width: int | None,
                     adapter_scale: float | None, controlnet_scale: float | None, lora_scale: float | None,
                     prompt: str | None, negative_prompt: str | None, id_masks: Sequence[Any] | None,
                     control_kps: Any, scheduler: str | None, batch_size: int | None,
                     face_layout: str | None = None) -> GenerationRequest:
        if (id_images is None) == (id_embeds is None):
            raise InvalidArgumentError("give exactly one of id_images (photos) or id_embeds (IDEmbeddings)")
        items = id_images if id_images is not None else id_embeds
        if len(items) == 0:
            raise InvalidArgumentError("id_images/id_embeds is empty: give at least one photo or embedding")
        if seeds is not None and num_images == 1:
            num_images = len(seeds)
        if not isinstance(num_images, int) or num_images < 1:
            raise InvalidArgumentError(f"num_images must be a positive integer, got {num_images!r}")
        if num_images > limits.max_images():
            raise InvalidArgumentError(f"num_images {num_images} is over the limit of {limits.max_images()} "
                                       f"(raise it with {limits.MAX_IMAGES_ENV})")
        d = self.preset.defaults
        steps, guidance = self.check_sampling(num_inference_steps, guidance_scale)
        h = d.height if height is None else limits.integer("height", height)
        w = d.width if width is None else limits.integer("width", width)
        for name, v in (("height", h), ("width", w)):
            if v < 32 or v % 8 or v > MAX_SIDE:
                raise InvalidArgumentError(f"{name} must be a multiple of 8 in 32..{MAX_SIDE}, got {v}")
        for name, v in (("adapter_scale", adapter_scale), ("controlnet_scale", controlnet_scale),
                        ("lora_scale", lora_scale)):
            if v is not None:
                limits.finite(name, v, 0.0, 5.0)
        limits.check_prompt("prompt", prompt)
        limits.check_prompt("negative_prompt", negative_prompt)
        if id_masks is not None and len(id_masks) != len(items):
            raise InvalidArgumentError(f"got {len(id_masks)} masks for {len(items)} identities (one mask each)")
        if scheduler is not None:
            from facegen.models.loading import SCHEDULERS
            if scheduler not in SCHEDULERS:
                raise InvalidArgumentError(f"unknown scheduler '{scheduler}'; choose one of: {', '.join(SCHEDULERS)}")
        bs = 1 if batch_size is None else int(batch_size)
        if bs < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {bs}")
        cond = ConditionRequest(prompt=prompt, negative_prompt=negative_prompt, guidance_scale=guidance,
                                height=h, width=w, adapter_scale=adapter_scale, controlnet_scale=controlnet_scale,
                                lora_scale=lora_scale, masks=id_masks,
                                control_kps=None if control_kps is None else np.asarray(control_kps, np.float32))
        layouts = self.adapter.face_layouts
        if face_layout is not None and face_layout not in layouts:
            raise InvalidArgumentError(
                f"face_layout {face_layout!r}: preset '{self.preset.name}' takes "
                + (f"one of {', '.join(map(repr, layouts))}" if layouts else "no face layout (it draws no keypoints)"))
        layout = face_layout if face_layout is not None else d.face_layout
        n_ids = len(items) if id_masks is not None else 1
        self.adapter.check_request(cond, n_ids)
        return GenerationRequest(num_images, seeds_for(num_images, seed, seeds), steps, guidance, h, w, cond,
                                 scheduler, bs, layout)

    # ------------------------------------------------------------------ stage 2
    def embed_photos(self, id_images: Sequence[ImageInput]) -> tuple[list[IDEmbedding], list[np.ndarray]]:
        """One embedding per photo (largest face) with the adapter's encoder, and the RGB arrays."""
        from facegen.id.encoders import embed_image
        from facegen.io import load_image

        from facegen.pipelines._roles import about_photo

        embs, rgbs = [], []
        for src in id_images:
            rgb = load_image(src)
            with about_photo("reference", src):
                embs.append(embed_image(rgb, encoder=self.encoder, policy="largest", models_dir=self.models_dir,
                                        accept_license=self.accept_license)[0])
            rgbs.append(rgb)
        return embs, rgbs

    def identities(self, embeddings: Sequence[IDEmbedding], separate: bool) -> list[IDEmbedding]:
        """Checked identities: one per embedding (``separate``, masks) or one averaged identity."""
        for e in embeddings:
            self.adapter.check_embedding(e)
        if separate or len(embeddings) == 1:
            return list(embeddings)
        return [mean_embedding(embeddings)]

    def apply_layout(self, req: GenerationRequest, embeddings: Sequence[IDEmbedding],
                     reference_rgbs: Sequence[np.ndarray] | None, explicit_size: bool) -> GenerationRequest:
        """The ``"reference"`` face layout (upstream InstantID): the first photo's own keypoints on
        the photo resized to the output, which takes the photo's resized size unless a size was
        given.  Nothing changes for the ``"portrait"`` layout, given keypoints, embeddings without
        a photo, or families without layouts."""
        if (req.face_layout != "reference" or req.condition.control_kps is not None or not reference_rgbs
                or embeddings[0].face is None):
            return req
        rgb = reference_rgbs[0]
        size = (req.width, req.height) if explicit_size else None
        w, h, kps, side = self.adapter.photo_layout((rgb.shape[1], rgb.shape[0]), embeddings[0].face.kps, size)
        cond = dataclasses.replace(req.condition, height=h, width=w, control_kps=kps, kps_draw_side=side)
        return dataclasses.replace(req, height=h, width=w, condition=cond)

    # ------------------------------------------------------------------ stage 3
    def condition(self, identities: Sequence[IDEmbedding], request: ConditionRequest) -> dict[str, Any]:
        return self.adapter.condition(self.pipe, identities, request)

    # ------------------------------------------------------------------ stage 4
    def denoise(self, kwargs: dict[str, Any], req: GenerationRequest, progress: bool = True,
                callback: Callable[[int, int], None] | None = None,
                on_batch: Callable[[int, list[Any]], None] | None = None) -> list[Any]:
        """Run the diffusers pipeline in micro-batches, one CPU generator per image;
        ``on_batch(first_index, images)`` is called as each micro-batch is done."""
        import torch
        from tqdm.auto import tqdm

        from facegen.models.loading import make_scheduler

        self.pipe.set_progress_bar_config(disable=not progress or req.batch_size < req.num_images)
        original = self.pipe.scheduler
        if req.scheduler is not None:
            self.pipe.scheduler = make_scheduler(req.scheduler, self._scheduler_config)
        chunks = [req.seeds[i:i + req.batch_size] for i in range(0, req.num_images, req.batch_size)]
        total = req.steps * len(chunks)
        images: list[Any] = []
        try:
            for c, chunk in enumerate(tqdm(chunks, desc="images", unit="batch",
                                           disable=not progress or len(chunks) == 1)):
                extra: dict[str, Any] = {}
                if callback is not None:
                    def on_step(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any], _c: int = c) -> dict[str, Any]:
                        callback(_c * req.steps + step + 1, total)
                        return tensors
                    extra["callback_on_step_end"] = on_step
                gens = [torch.Generator(device="cpu").manual_seed(s) for s in chunk]
                out = self.pipe(**kwargs, **extra, num_images_per_prompt=len(chunk), generator=gens,
                                num_inference_steps=req.steps, guidance_scale=req.guidance_scale,
                                height=req.height, width=req.width, output_type="pil")
                if on_batch is not None:
                    on_batch(len(images), list(out.images))
                images.extend(out.images)
        finally:
            self.pipe.scheduler = original
        return images

    # ------------------------------------------------------------------ stage 5
    def measure(self, images: Sequence[Any], identities: Sequence[IDEmbedding],
                reference_rgbs: Sequence[np.ndarray] | None) -> tuple[list[float | None], str | None]:
        """Similarity of each image to the reference; (scores, judge encoder name)."""
        score, judge = self.scorer(identities, reference_rgbs)
        return score(images), judge

    def scorer(self, identities: Sequence[IDEmbedding], reference_rgbs: Sequence[np.ndarray] | None
               ) -> tuple[Callable[[Sequence[Any]], list[float | None]], str | None]:
        """``(score, judge name)``: ``score(images)`` gives each image's similarity to the
        reference; the judge and the reference embedding are made once, here."""
        def unmeasured(images: Sequence[Any]) -> list[float | None]:
            return [None] * len(images)

        try:
            from facegen.metrics import IDJudge, id_similarity
        except ImportError:  # metrics is optional for the pipeline
            return unmeasured, None

        def guarded(fn: Callable[[Any], float | None]) -> Callable[[Sequence[Any]], list[float | None]]:
            def score(images: Sequence[Any]) -> list[float | None]:
                try:
                    return [fn(np.asarray(im.convert("RGB"))) for im in images]
                except FacegenError as exc:
                    logger.warning("ID similarity not measured: %s", exc)
                    return [None] * len(images)
            return score

        try:
            if reference_rgbs and len(identities) == 1:
                judge = IDJudge.create(exclude=self.encoder, models_dir=self.models_dir,
                                       accept_license=self.accept_license)
                refs = [r for r in (judge.reference(rgb) for rgb in reference_rgbs) if r is not None]
                ref = (mean_embedding(refs) if len(refs) > 1 else refs[0]) if refs else None
                return guarded(lambda rgb: judge.score(ref, rgb)), judge.encoder_name
        except FacegenError as exc:
            logger.warning("ID similarity not measured: %s", exc)
            return unmeasured, None

        # embeddings only (or several identities): the identities' own encoder; min over identities
        def own(rgb: np.ndarray) -> float | None:
            per = [id_similarity(ident, rgb, self.models_dir, self.accept_license) for ident in identities]
            return None if any(s is None for s in per) else min(per)  # type: ignore[type-var]
        return guarded(own), self.encoder

    # ------------------------------------------------------------------ stage 6
    def provenance(self, req: GenerationRequest, judge: str | None, n_photos: int, n_identities: int) -> dict[str, Any]:
        cond = req.condition
        meta: dict[str, Any] = {
            "facegen_version": __version__, "encoder": self.encoder,
            "steps": req.steps, "guidance_scale": req.guidance_scale, "height": req.height, "width": req.width,
            "scheduler": req.scheduler or self.preset.defaults.scheduler, "id_judge": judge,
            "reference_photos": n_photos, "identities": n_identities, "face_layout": req.face_layout,
            "licence": self.preset.licence, "safety_checker": None,
        }
        if self.adapter.supports_prompt:
            meta["prompt"] = cond.prompt if cond.prompt is not None else self.preset.defaults.prompt
            meta["negative_prompt"] = (cond.negative_prompt if cond.negative_prompt is not None
                                       else self.preset.defaults.negative_prompt)
        for key in ("adapter_scale", "controlnet_scale", "lora_scale"):
            value = getattr(cond, key)
            default = getattr(self.preset.defaults, key)
            if value is not None or default is not None:
                meta[key] = value if value is not None else default
        return meta

    # ------------------------------------------------------------------ batches of identities
    def generate_many(self, id_embeds: Sequence[IDEmbedding], seeds: Sequence[int], *,
                      prompts: Sequence[str | None] | None = None,
                      control_kps: Sequence[Any | None] | None = None, num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, height: int | None = None, width: int | None = None,
                      adapter_scale: float | None = None, controlnet_scale: float | None = None,
                      lora_scale: float | None = None, batch_size: int | None = None,
                      progress: bool = False) -> list[np.ndarray]:
        """One image per identity, many identities per diffusers call (the dataset fast path).

        Image i is conditioned on ``id_embeds[i]`` (and ``prompts[i]`` / ``control_kps[i]``: the
        preset's prompt / a frontal portrait when None) and denoised from the noise of its own
        CPU generator seeded ``seeds[i]``, so it is image 0 of ``pipe(id_embeds=[id_embeds[i]],
        seeds=[seeds[i]])`` up to float rounding (batching changes kernel reduction orders; the
        benchmark states the tolerance).  Returns RGB uint8 ``(H, W, 3)`` arrays, converted on
        the device.  ``batch_size`` (default: all at once) caps the samples per call.  On a
        compiled pipeline a short batch is padded (with copies of its last sample, dropped
        afterwards) up to a power of two, at most ``batch_size`` or the largest batch made so
        far, so that a few static shapes (compiled graphs, CUDA graphs) serve every batch.
        """
        import torch
        from tqdm.auto import tqdm

        from facegen.speed.engine import applied_options, images_to_uint8

        embeds = list(id_embeds)
        n = len(embeds)
        if n == 0:
            raise InvalidArgumentError("id_embeds is empty: give at least one embedding")
        seed_list = seeds_for(n, seeds=seeds)
        prompt_list = [None] * n if prompts is None else list(prompts)
        kps_list = [None] * n if control_kps is None else [None if k is None else np.asarray(k, np.float32)
                                                           for k in control_kps]
        if len(prompt_list) != n or len(kps_list) != n:
            raise InvalidArgumentError(f"got {n} identities, {len(prompt_list)} prompts and {len(kps_list)} "
                                       "keypoint sets: give one of each per identity")
        for i, k in enumerate(kps_list):
            if k is not None and k.size != 10:
                raise InvalidArgumentError(f"control_kps[{i}] must be 5 (x, y) points, got shape {k.shape}")
        req = self.check_inputs(id_images=None, id_embeds=embeds[:1], num_images=1, seed=None, seeds=seed_list[:1],
                                num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                height=height, width=width, adapter_scale=adapter_scale,
                                controlnet_scale=controlnet_scale, lora_scale=lora_scale, prompt=None,
                                negative_prompt=None, id_masks=None, control_kps=None, scheduler=None,
                                batch_size=batch_size or n)
        bs = min(req.batch_size, n)
        # padding target: the batch size asked for, else the largest batch this pipeline has made
        cap = req.batch_size if batch_size else max(n, self._largest_batch)
        self._largest_batch = max(self._largest_batch, bs)
        applied = applied_options(self.pipe)
        pad = applied is not None and applied.config.compile and "compile" not in applied.skipped
        self.pipe.set_progress_bar_config(disable=True)
        images: list[np.ndarray] = []
        starts = range(0, n, bs)
        for start in tqdm(starts, desc="images", unit="batch", disable=not progress or len(starts) == 1):
            idx = list(range(start, min(start + bs, n)))
            real = len(idx)
            size = padded_batch_size(real, cap) if pad else real
            idx += [idx[-1]] * (size - real)                # padding repeats the last sample; dropped below
            kwargs = self.adapter.condition_many(self.pipe, [embeds[i] for i in idx], req.condition,
                                                 [prompt_list[i] for i in idx], [kps_list[i] for i in idx])
            gens = [torch.Generator(device="cpu").manual_seed(seed_list[i]) for i in idx]
            out = self.pipe(**kwargs, num_images_per_prompt=1, generator=gens, num_inference_steps=req.steps,
                            guidance_scale=req.guidance_scale, height=req.height, width=req.width,
                            output_type="pt")
            rgb = images_to_uint8(out.images)
            images.extend(rgb[j] for j in range(real))
        return images

    # ------------------------------------------------------------------ call
    def __call__(self, id_images: ImageInput | Sequence[ImageInput] | None = None,
                 id_embeds: IDEmbedding | Sequence[IDEmbedding] | None = None, prompt: str | None = None,
                 negative_prompt: str | None = None, num_images: int = 1, seed: int | None = None,
                 seeds: Sequence[int] | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, height: int | None = None, width: int | None = None,
                 adapter_scale: float | None = None, controlnet_scale: float | None = None,
                 scheduler: str | None = None, progress: bool = True,
                 callback: Callable[[int, int], None] | None = None, *, lora_scale: float | None = None,
                 id_masks: Sequence[Any] | None = None, control_kps: Any = None, batch_size: int | None = None,
                 measure_similarity: bool = True, face_layout: str | None = None,
                 on_image: Callable[[int, Any, dict[str, Any]], None] | None = None) -> PipelineOutput:
        """Generate ``num_images`` images of the identity in ``id_images`` or ``id_embeds``.

        Several photos/embeddings of one person are averaged into one identity; with
        ``id_masks`` (FaceID presets) each one is a separate identity placed in its region.
        ``seed`` gives image i the seed ``seed + i``; ``seeds`` sets them one by one; images
        are denoised ``batch_size`` at a time (default 1: a batch of N has exactly the pixels
        of N single runs; larger batches are faster on GPUs and equal up to float rounding).
        ``prompt``/``negative_prompt`` are refused by presets without text (Arc2Face).
        ``callback(done_steps, total_steps)`` is called after every denoising step.
        ``face_layout`` (presets that draw keypoints, InstantID): ``"reference"`` (default, as
        upstream) keeps the first photo's pose, face scale and placement — the photo resized to
        the output by upstream's ``resize_img`` rule, which also sets the output size unless
        ``height``/``width`` are given (then the photo is fitted inside them, centred);
        ``"portrait"`` re-frames the face into a fixed portrait (what embeddings without a photo
        always get).
        ``on_image(i, image, provenance)`` is called as soon as image i is made and measured
        (``provenance`` is what ``result.provenance(i)`` gives), so a caller can write each
        image as it is done instead of losing everything to an interruption.
        """
        if id_images is not None and not isinstance(id_images, (list, tuple)):
            id_images = [id_images]
        if id_embeds is not None and not isinstance(id_embeds, (list, tuple)):
            id_embeds = [id_embeds]
        # 1. check inputs
        req = self.check_inputs(id_images=id_images, id_embeds=id_embeds, num_images=num_images, seed=seed,
                                seeds=seeds, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                height=height, width=width, adapter_scale=adapter_scale,
                                controlnet_scale=controlnet_scale, lora_scale=lora_scale, prompt=prompt,
                                negative_prompt=negative_prompt, id_masks=id_masks, control_kps=control_kps,
                                scheduler=scheduler, batch_size=batch_size, face_layout=face_layout)
        # 2. identities
        reference_rgbs: list[np.ndarray] | None = None
        if id_images is not None:
            embeddings, reference_rgbs = self.embed_photos(id_images)
        else:
            embeddings = list(id_embeds)  # type: ignore[arg-type]
        idents = self.identities(embeddings, separate=id_masks is not None)
        req = self.apply_layout(req, embeddings, reference_rgbs, explicit_size=height is not None or width is not None)
        # 3. condition
        kwargs = self.condition(idents, req.condition)
        # 4-6. denoise, measure and describe, batch by batch
        if measure_similarity:
            score, judge = self.scorer(idents, reference_rgbs)
        else:
            score, judge = (lambda ims: [None] * len(ims)), None
        meta = self.provenance(req, judge, len(embeddings), len(idents))
        sims: list[float | None] = []

        def batch_done(first: int, batch: list[Any]) -> None:
            scores = score(batch)
            sims.extend(scores)
            if on_image is not None:
                for j, (im, sim) in enumerate(zip(batch, scores)):
                    i = first + j
                    on_image(i, im, {"preset": self.preset.name, "adapter": self.preset.family,
                                     "seed": int(req.seeds[i]), "id_similarity": sim, **meta})

        images = self.denoise(kwargs, req, progress=progress, callback=callback, on_batch=batch_done)
        return PipelineOutput(images=images, seeds=list(req.seeds), preset=self.preset.name,
                              adapter=self.preset.family, id_similarity=sims,
                              metadata=[dict(meta) for _ in images])
