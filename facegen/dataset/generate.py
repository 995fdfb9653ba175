"""The dataset runner's generator: work items → images with a preset's pipeline.

Two modes, both seeding each item's noise with its own CPU generator:

* **batched** (default on a GPU): the runner's batch of items — different identities, prompts
  and poses — goes through *one* diffusers call (:meth:`IDGenerationPipeline.__call__(samples=...)`),
  on the compiled fast path.  An image equals its single-item run up to float rounding (GPU
  kernels reduce in batch-dependent orders; ``benchmarks/bench_generation.py`` states the
  tolerance), so on a GPU the dataset is the same for any engine or worker count and, up to
  that rounding, for any batch size.
* **per item** (default on the CPU): one call per item with a fixed thread count: the pixels
  are bit-for-bit the same for any engine, worker count and batch size.

The conditioning of a sampled identity is its unit vector, rescaled for adapters trained on
raw vectors.  A pose (InstantID presets only, drawn as IdentityNet's keypoint image) is a yaw
angle in degrees, a mapping of ``yaw`` / ``pitch`` / ``roll``, or 5 ``[x, y]`` keypoints in
fractions of the output size (:func:`facegen.faces.pose.pose_kps`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from facegen.adapters.base import Sample
from facegen.adapters.registry import refusal
from facegen.dataset.variation import WorkItem
from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.id.registry import get_encoder_spec
from facegen.paths import DEFAULT_ACCESS, ModelAccess

logger = logging.getLogger(__name__)


def identity_scale(encoder: str, normalise: bool, id_norm: float | None) -> float:
    """How to scale a unit identity vector for an adapter: 1 for unit-norm adapters, else the
    given ``id_norm`` or the encoder's measured typical norm."""
    if normalise:
        return 1.0
    norm = id_norm if id_norm is not None else get_encoder_spec(encoder).typical_norm
    if norm is None:
        raise InvalidArgumentError(
            f"this preset takes raw '{encoder}' vectors and no typical norm is recorded for them: give the norm "
            "of real embeddings with id_norm (or sample identities from a --prior of real embeddings)")
    return float(norm)


def make_dataset_generate_fn(preset: str, access: ModelAccess = DEFAULT_ACCESS, steps: int | None = None,
                             guidance_scale: float | None = None, id_norm: float | None = None,
                             fast_path: bool = True, cpu_threads: int = 1, batched: bool | None = None,
                             ) -> Callable[[list[WorkItem]], list[np.ndarray]]:
    """Build the pipeline once and return ``generate(items) -> [RGB uint8]``.

    ``batched``: one diffusers call per batch of items (None: on CUDA only; see the module doc).
    """
    import torch  # noqa: PLC0415

    from facegen.speed.config import FastPathConfig  # noqa: PLC0415
    from facegen.pipelines.generation import IDGenerationPipeline, resolve_device  # noqa: PLC0415

    # batch mode: the full exact fast path, torch.compile and CUDA graphs included on GPUs
    cfg: Any = FastPathConfig.default_for(resolve_device(access.device), interactive=False) if fast_path else False
    pipe = IDGenerationPipeline.from_preset(preset, access=access, fast_path=cfg)
    scale = identity_scale(pipe.encoder, pipe.adapter.normalise, id_norm)
    text = pipe.adapter.supports_prompt
    # CPU kernels split reductions by thread count, so pixels would change with the number of
    # workers sharing the cores: on CPU every image is made with a fixed thread count.
    threads = cpu_threads if pipe.device.type == "cpu" else None
    one_call = pipe.device.type == "cuda" if batched is None else bool(batched)
    defaults = pipe.preset.defaults
    logger.info("dataset generator: preset %s on %s, %s", preset, pipe.device,
                "batched across identities" if one_call else "one call per image")

    def kps_of(it: WorkItem) -> np.ndarray | None:
        if it.pose is None:
            return None
        if not pipe.adapter.supports_control_kps:
            raise InvalidArgumentError(refusal(preset, "takes no pose control (remove the poses from the dataset "
                                               "spec)", lambda a: a.supports_control_kps))
        return pipe.adapter.pose_keypoints(it.pose, defaults.width, defaults.height)

    def generate(items: list[WorkItem]) -> list[np.ndarray]:
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            embeds = [IDEmbedding(np.asarray(it.embedding, dtype=np.float32) * scale, pipe.encoder) for it in items]
            prompts = [it.prompt if text else None for it in items]
            kps = [kps_of(it) for it in items]
            samples = [Sample.of(e, p, k) for e, p, k in zip(embeds, prompts, kps)]
            out = pipe(samples=samples, seeds=[it.seed for it in items], num_inference_steps=steps,
                       guidance_scale=guidance_scale, batch_size=len(items) if one_call else 1, progress=False,
                       measure_similarity=False, output_type="np")
            return list(out.images)
        finally:
            torch.set_num_threads(before)

    return generate
