"""ID-preserving generation: photos (or an ID embedding) of a person → new images of them.

One entry point, ``__call__``, for every preset and every caller (the CLI, the app, the
dataset job), in numbered stages, each a method or function you can call alone::

    1. people_stage      (``people=``) several people, before anything is conditioned: their
                         checks, the layout's regions and keypoints, each person's identity
                         (:mod:`facegen.pipelines.people`) — the arguments of the stages below
    2. check_inputs      argument sanity only (raises, changes nothing)
       fill_defaults     the preset's defaults in every place the caller left empty
    3. samples           photos → IDEmbedding(s) with the adapter's own encoder (averaged),
                         one Sample per image (or the caller's own per-image samples)
    4. scorer            the independent judge (ID similarity) and the run's provenance
       provenance        (AI-generated, preset, adapter, seeds, version), made once
    5. denoise           per micro-batch: the adapter conditions (samples → diffusers kwargs),
                         one CPU torch.Generator per image: image i depends on its seed only
    6. measure           each batch's images judged and recorded as they come (``on_images``)
    7. output            the PipelineOutput (several people: each person's report on it)

Example::

    pipe = IDGenerationPipeline.from_preset("tiny")
    out = pipe(id_images=["me.jpg"], num_images=2, seed=7)
    out.images[0].save("0.png")

    # many identities in one call (what ``facegen dataset`` runs): one Sample per image
    out = pipe(samples=[Sample.of(e) for e in embeddings], seeds=seeds, batch_size=8, output_type="np")
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from facegen import __version__, limits
from facegen.adapters.base import IDAdapter, Sample
from facegen.adapters.registry import adapter_for
from facegen.errors import InvalidArgumentError, ModelNotFoundError
from facegen.id.embedding import IDEmbedding, mean_embedding
from facegen.models.registry import Preset, get_preset
from facegen.models.resolve import resolve_preset
from facegen.paths import DEFAULT_ACCESS, ModelAccess
from facegen.pipelines.output import PipelineOutput
from facegen.pipelines.request import (MAX_SIDE, CallArgs, GenerationRequest, check_call, check_face_layout,
                                       check_sampling, fill_defaults)
from facegen.pipelines.runtime import SEED_MAX, padded_batch_size, resolve_device, resolve_dtype, seeds_for
from facegen.pipelines.similarity import BatchScorer, Scorer, batch_scorer, make_scorer

logger = logging.getLogger(__name__)

ImageInput = Any  # path, bytes, PIL image or RGB array (anything facegen.io.load_image reads)

__all__ = ["GenerationRequest", "IDGenerationPipeline", "MAX_SIDE", "SEED_MAX", "Sample", "padded_batch_size",
           "resolve_device", "resolve_dtype", "seeds_for"]


class IDGenerationPipeline:
    """ID-conditioned text-to-image for every preset of :mod:`facegen.models.registry`."""

    def __init__(self, preset: Preset, adapter: IDAdapter, pipe: Any, *, device: Any, dtype: Any,
                 access: ModelAccess = DEFAULT_ACCESS) -> None:
        self.preset = preset
        self.adapter = adapter
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.access = access
        self._scheduler_config = dict(pipe.scheduler.config)
        self._largest_batch = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, access: ModelAccess = DEFAULT_ACCESS, device: str | Any | None = None,
                    dtype: str | Any | None = None,
                    download: bool | None = None, fast_path: bool | Any = True,
                    quantize: str | None = None) -> IDGenerationPipeline:
        """Resolve (local folder, else hub when online), check the licence, and load a preset.

        ``fast_path``: True (default) applies :func:`facegen.speed.engine.optimize_pipeline`
        with the exact options for the device; a ``FastPathConfig`` sets them; False loads plain.
        ``quantize``: ``"8bit"`` weights where the family offers them (``adapter.quantize_choices``).
        ``access``: the models folder, the licence acceptance and the device policy (``device``, when
        given, overrides ``access.device`` for this pipeline).
        Raises LicenseNotAcceptedError for non-commercial weights without ``access.accept_license``
        (or ``FACEGEN_ACCEPT_NONCOMMERCIAL=1``), ModelNotFoundError naming the missing files.
        """
        preset = get_preset(name)
        if preset.needs_licence:
            access.require(f"preset '{preset.name}'", preset.licence)
        import torch

        adapter = adapter_for(preset)
        adapter.configure_loading(quantize=quantize)
        dev = resolve_device(device if device is not None else access.device)
        dt = resolve_dtype(dtype if dtype is not None or dev.type != "cuda" else adapter.cuda_dtype, dev)
        if dev.type == "cpu" and dt == torch.float16:
            raise InvalidArgumentError("float16 is not supported on CPU; use dtype='fp32' or 'bf16'")
        try:
            resolved = resolve_preset(preset, access, download=download)
        except ModelNotFoundError as exc:      # name everything the preset needs: its encoder's files too
            from facegen.id.encoders import missing_files
            from facegen.id.registry import get_encoder_spec
            extra = missing_files(get_encoder_spec(adapter.encoder), access)
            if not extra:
                raise
            raise ModelNotFoundError(exc.what, exc.files + [f"{f} (encoder {adapter.encoder})" for f in extra],
                                     exc.folder, exc.hint) from None
        logger.info("loading preset '%s' (%s) from %s", preset.name, preset.family, resolved.root)
        from facegen.models.loading import model_file_errors
        with model_file_errors(resolved.root, f"preset '{preset.name}' cannot be loaded from this folder"):
            pipe = adapter.load(resolved, dt)
        pipe.to(dev)
        if fast_path:
            # exact options only (same pixels within the benchmark's tolerance); an interactive
            # call skips torch.compile, whose warm-up would cost more than one image saves
            from facegen.speed.config import FastPathConfig
            from facegen.speed.engine import optimize_pipeline
            cfg = fast_path if isinstance(fast_path, FastPathConfig) else FastPathConfig.default_for(dev, interactive=True)
            optimize_pipeline(pipe, cfg)
        return cls(preset, adapter, pipe, device=dev, dtype=dt, access=access)

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

    # ------------------------------------------------------------------ stage 2
    def max_steps(self) -> int:
        """The most denoising steps this pipeline takes: ``$FACEGEN_MAX_STEPS`` (default 150),
        at most half its scheduler's ``num_train_timesteps``."""
        return limits.max_steps(self._scheduler_config.get("num_train_timesteps"))

    def check_sampling(self, num_inference_steps: Any, guidance_scale: Any) -> tuple[int, float]:
        """Steps (bounded by the scheduler) and a finite guidance scale, preset defaults filled in."""
        return check_sampling(self.preset, self.max_steps(), num_inference_steps, guidance_scale)

    def check_inputs(self, *, id_images: Sequence[ImageInput] | None = None,
                     id_embeds: Sequence[IDEmbedding] | None = None, samples: Sequence[Sample] | None = None,
                     **args: Any) -> None:
        """Refuse a bad call (a :class:`~facegen.errors.FacegenError` naming the argument); changes nothing."""
        items = id_images if id_images is not None else id_embeds
        if id_images is not None and id_embeds is not None:
            raise InvalidArgumentError("give exactly one of id_images (photos) or id_embeds (IDEmbeddings)")
        if samples is not None and items is not None:
            raise InvalidArgumentError("give samples or id_images/id_embeds, not both")
        check_call(self.preset, self.adapter, self.max_steps(), CallArgs(**args),
                   n_items=None if items is None else len(items), samples=samples)
        check_face_layout(args.get("face_layout"), id_images is not None)

    def fill_defaults(self, args: CallArgs, samples: Sequence[Sample] | None = None) -> GenerationRequest:
        """The checked call with the preset's defaults filled in (one named step)."""
        return fill_defaults(self.preset, self.max_steps(), args, samples)

    # ------------------------------------------------------------------ stage 3
    def embed_photos(self, id_images: Sequence[ImageInput]) -> tuple[list[IDEmbedding], list[np.ndarray]]:
        """One embedding per photo (largest face) with the adapter's encoder, and the RGB arrays."""
        from facegen.id.encoders import embed_image
        from facegen.io import load_image
        from facegen.pipelines._roles import about_photo

        embs, rgbs = [], []
        for src in id_images:
            rgb = load_image(src)
            with about_photo("reference", src):
                embs.append(embed_image(rgb, encoder=self.encoder, policy="largest", access=self.access)[0])
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
                     reference_rgbs: Sequence[np.ndarray] | None) -> GenerationRequest:
        """The ``"reference"`` face layout (upstream InstantID): the first photo's own keypoints on
        the photo resized to the output, which takes the photo's resized size unless a size was
        given.  Nothing changes for the ``"portrait"`` layout, given keypoints, embeddings without
        a photo, or families without layouts."""
        if (req.face_layout != "reference" or req.condition.control_kps is not None or not reference_rgbs
                or embeddings[0].face is None):
            return req
        rgb = reference_rgbs[0]
        size = (req.width, req.height) if req.explicit_size else None
        w, h, kps, side = self.adapter.photo_layout((rgb.shape[1], rgb.shape[0]), embeddings[0].face.kps, size)
        cond = dataclasses.replace(req.condition, height=h, width=w, control_kps=kps, kps_draw_side=side)
        return dataclasses.replace(req, height=h, width=w, condition=cond)

    # ------------------------------------------------------------------ stage 5
    def condition(self, samples: Sequence[Sample], req: GenerationRequest) -> dict[str, Any]:
        return self.adapter.condition(self.pipe, samples, req.condition)

    def denoise(self, samples: Sequence[Sample], req: GenerationRequest, progress: bool = True,
                callback: Callable[[int, int], None] | None = None,
                on_batch: Callable[[int, list[np.ndarray]], None] | None = None) -> list[np.ndarray]:
        """Condition and denoise ``samples`` in micro-batches of ``req.batch_size``, one CPU
        generator per image (``req.seeds[i]``); RGB uint8 arrays, converted on the device by
        diffusers' own PIL arithmetic.  ``on_batch(first_index, images)`` follows each batch.

        Samples that are all the same object (N images of one person) are conditioned once
        per batch size.  On a compiled pipeline a short batch is padded (with copies of its last
        sample, dropped afterwards) up to a power of two, at most the batch size or the largest
        batch made so far, so that a few static shapes serve every batch.
        """
        import torch
        from tqdm.auto import tqdm

        from facegen.models.loading import make_scheduler
        from facegen.speed.engine import applied_options, images_to_uint8

        n = len(samples)
        bs = min(req.batch_size, n)
        cap = max(req.batch_size, self._largest_batch)      # padding target: the asked or largest batch
        self._largest_batch = max(self._largest_batch, bs)
        applied = applied_options(self.pipe)
        pad = applied is not None and applied.config.compile and "compile" not in applied.skipped
        uniform = all(s is samples[0] for s in samples)
        conditioned: dict[int, dict[str, Any]] = {}
        self.pipe.set_progress_bar_config(disable=not progress or bs < n)
        original = self.pipe.scheduler
        if req.scheduler is not None:
            self.pipe.scheduler = make_scheduler(req.scheduler, self._scheduler_config)
        starts = range(0, n, bs)
        total = req.steps * len(starts)
        images: list[np.ndarray] = []
        try:
            for c, start in enumerate(tqdm(starts, desc="images", unit="batch",
                                           disable=not progress or len(starts) == 1)):
                idx = list(range(start, min(start + bs, n)))
                real = len(idx)
                idx += [idx[-1]] * ((padded_batch_size(real, cap) if pad else real) - real)
                if uniform:
                    if len(idx) not in conditioned:
                        conditioned[len(idx)] = self.condition([samples[0]] * len(idx), req)
                    kwargs = conditioned[len(idx)]
                else:
                    kwargs = self.condition([samples[i] for i in idx], req)
                extra: dict[str, Any] = {}
                if callback is not None:
                    def on_step(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any], _c: int = c) -> dict[str, Any]:
                        callback(_c * req.steps + step + 1, total)
                        return tensors
                    extra["callback_on_step_end"] = on_step
                gens = [torch.Generator(device="cpu").manual_seed(req.seeds[i]) for i in idx]
                out = self.pipe(**kwargs, **extra, num_images_per_prompt=1, generator=gens,
                                num_inference_steps=req.steps, guidance_scale=req.guidance_scale,
                                height=req.height, width=req.width, output_type="pt")
                rgb = images_to_uint8(out.images)
                batch = [rgb[j] for j in range(real)]
                if on_batch is not None:
                    on_batch(len(images), batch)
                images.extend(batch)
        finally:
            self.pipe.scheduler = original
        return images

    # ------------------------------------------------------------------ stages 4 + 6: the judge
    def scorer(self, identities: Sequence[IDEmbedding], reference_rgbs: Sequence[np.ndarray] | None
               ) -> tuple[Scorer, str | None]:
        """``(score, judge name)``: ``score(images)`` gives each image's similarity to the reference."""
        return make_scorer(self.encoder, identities, reference_rgbs, self.access)

    def measure(self, images: Sequence[Any], identities: Sequence[IDEmbedding],
                reference_rgbs: Sequence[np.ndarray] | None) -> tuple[list[float | None], str | None]:
        """Similarity of each image to the reference; (scores, judge encoder name)."""
        score, judge = self.scorer(identities, reference_rgbs)
        return score(images), judge

    # ------------------------------------------------------------------ stage 4: the provenance
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

    # ------------------------------------------------------------------ the call
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
                 on_images: Callable[[int, list[Any], list[dict[str, Any]]], None] | None = None,
                 samples: Sequence[Sample] | None = None, output_type: str = "pil",
                 people: Sequence[Any] | None = None, layout: Any = None) -> PipelineOutput:
        """Generate ``num_images`` images of the identity in ``id_images`` or ``id_embeds`` — or one
        image per entry of ``samples`` (each its own identity, prompt and pose: the dataset's call).

        Several photos/embeddings of one person are averaged into one identity; with
        ``id_masks`` (FaceID presets) each one is a separate identity placed in its region.
        ``seed`` gives image i the seed ``seed + i``; ``seeds`` sets them one by one; images
        are denoised ``batch_size`` at a time (default 1: a batch of N has exactly the pixels
        of N single runs; larger batches are faster on GPUs and equal up to float rounding).
        ``prompt``/``negative_prompt`` are refused by presets without text (Arc2Face); a
        sample's own prompt / keypoints take the place of ``prompt`` / ``control_kps``.
        ``callback(done_steps, total_steps)`` is called after every denoising step.
        ``face_layout`` (presets that draw keypoints, InstantID): ``"reference"`` (default, as
        upstream) keeps the first photo's pose, face scale and placement — the photo resized to
        the output by upstream's ``resize_img`` rule, which also sets the output size unless
        ``height``/``width`` are given (then the photo is fitted inside them, centred);
        ``"portrait"`` re-frames the face into a fixed portrait (what embeddings without a photo
        always get).
        ``on_images(first, images, provenances)`` is called as soon as each batch (images
        ``first``, ``first + 1``, ...) is made and measured (``provenances[j]`` is what
        ``result.provenance(first + j)`` gives), so a caller can write (and watermark) the batch
        in one call as it is done instead of losing everything to an interruption.
        ``output_type``: ``"pil"`` (PIL images) or ``"np"`` (RGB uint8 arrays).
        ``people`` (photos or embeddings, one entry per person) and ``layout`` (``"side-by-side"``,
        ``"group"``, face boxes): several people in one image (:mod:`facegen.pipelines.people`).
        """
        if id_images is not None and not isinstance(id_images, (list, tuple)):
            id_images = [id_images]
        if id_embeds is not None and not isinstance(id_embeds, (list, tuple)):
            id_embeds = [id_embeds]
        args = CallArgs(num_images=num_images, seed=seed, seeds=seeds, num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale, height=height, width=width, adapter_scale=adapter_scale,
                        controlnet_scale=controlnet_scale, lora_scale=lora_scale, prompt=prompt,
                        negative_prompt=negative_prompt, id_masks=id_masks, control_kps=control_kps,
                        scheduler=scheduler, batch_size=batch_size, face_layout=face_layout,
                        output_type=output_type)
        # 1. people: several people, each in their own region (their checks, places and identities,
        # before anything is conditioned); one person: their photos or embeddings
        stage = None
        if people is not None or layout is not None:
            from facegen.pipelines.people import people_stage
            stage = people_stage(self, people, layout, args, given=dict(id_images=id_images, id_embeds=id_embeds,
                                 samples=samples), measure_similarity=measure_similarity, on_images=on_images)
            id_images, id_embeds, args = stage.id_images, stage.id_embeds, stage.args
            measure_similarity, on_images = stage.measure_similarity, stage.on_images
        # 2. check, then fill the preset's defaults
        self.check_inputs(id_images=id_images, id_embeds=id_embeds, samples=samples, **dataclasses.asdict(args))
        req = self.fill_defaults(args, samples)
        # 3. identities → one sample per image
        reference_rgbs: list[np.ndarray] | None = None
        if samples is not None:
            samples = list(samples)
            for s in samples:
                for e in s.identities:
                    self.adapter.check_embedding(e)
            idents = [e for s in samples for e in s.identities]
            n_photos = 0
        else:
            if id_images is not None:
                embeddings, reference_rgbs = self.embed_photos(id_images)
            else:
                embeddings = list(id_embeds)  # type: ignore[arg-type]
            idents = self.identities(embeddings, separate=args.id_masks is not None)
            req = self.apply_layout(req, embeddings, reference_rgbs)
            samples = [Sample(tuple(idents))] * req.num_images
            n_photos = len(reference_rgbs) if reference_rgbs is not None else 0
        # 4. the judge and the provenance, made once (6: applied batch by batch as images come)
        score = self._scorer_for(samples, idents, reference_rgbs, measure_similarity)
        judge = score.judge
        meta = self.provenance(req, judge, n_photos, len(samples[0].identities))
        if id_embeds is not None:
            meta["reference_embeddings"] = len(id_embeds)     # identities given as vectors, no photo
        sims: list[float | None] = []
        made: list[Any] = []

        def batch_done(first: int, batch: list[np.ndarray]) -> None:
            out = [im if req.output_type == "np" else _to_pil(im) for im in batch]
            scores = score(first, out)
            sims.extend(scores)
            made.extend(out)
            if on_images is not None:
                on_images(first, out, [{"preset": self.preset.name, "adapter": self.preset.family,
                                        "seed": int(req.seeds[first + j]), "id_similarity": sim,
                                        **self._image_meta(meta, samples[first + j])}
                                       for j, sim in enumerate(scores)])

        # 5. condition and denoise, batch by batch → 6. each batch measured and recorded (batch_done)
        self.denoise(samples, req, progress=progress, callback=callback, on_batch=batch_done)
        # 7. the output (several people: each person's report on it)
        out = PipelineOutput(images=made, seeds=list(req.seeds), preset=self.preset.name,
                             adapter=self.preset.family, id_similarity=sims,
                             metadata=[self._image_meta(meta, s) for s in samples])
        return out if stage is None else stage.finish(out)

    def _scorer_for(self, samples: Sequence[Sample], idents: Sequence[IDEmbedding],
                    reference_rgbs: Sequence[np.ndarray] | None, measure: bool) -> BatchScorer:
        return batch_scorer(self.encoder, samples, idents, reference_rgbs, measure, self.access)

    def _image_meta(self, meta: dict[str, Any], sample: Sample) -> dict[str, Any]:
        out = dict(meta)
        if sample.prompt is not None:
            out["prompt"] = sample.prompt
        return out


def _to_pil(rgb: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(rgb, "RGB")
