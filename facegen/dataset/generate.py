"""The dataset runner's generator: work items → images with a preset's pipeline.

Each item is one diffusers call with its own seed (the exact path: an image's pixels never
depend on which other items share its batch, worker or engine).  The conditioning of a
sampled identity is its unit vector, rescaled for adapters trained on raw vectors.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from facegen.dataset.variation import WorkItem
from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.id.registry import get_encoder_spec

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


def make_dataset_generate_fn(preset: str, models_dir: str | None = None, device: str | None = None,
                             accept_license: bool = False, steps: int | None = None,
                             guidance_scale: float | None = None, id_norm: float | None = None,
                             fast_path: bool = True, cpu_threads: int = 1, **_options: Any) -> Callable[[list[WorkItem]], list[np.ndarray]]:
    """Build the pipeline once and return ``generate(items) -> [RGB uint8]``."""
    import torch  # noqa: PLC0415

    from facegen.pipelines.fastpath import FastPathConfig  # noqa: PLC0415
    from facegen.pipelines.generation import IDGenerationPipeline, resolve_device  # noqa: PLC0415

    # batch mode: the full exact fast path, torch.compile and CUDA graphs included on GPUs
    cfg: Any = FastPathConfig.default_for(resolve_device(device), interactive=False) if fast_path else False
    pipe = IDGenerationPipeline.from_preset(preset, models_dir=models_dir, device=device,
                                            accept_license=accept_license, fast_path=cfg)
    scale = identity_scale(pipe.encoder, pipe.adapter.normalise, id_norm)
    text = pipe.adapter.supports_prompt
    # CPU kernels split reductions by thread count, so pixels would change with the number of
    # workers sharing the cores: on CPU every image is made with a fixed thread count.
    threads = cpu_threads if pipe.device.type == "cpu" else None

    def generate(items: list[WorkItem]) -> list[np.ndarray]:
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            images = []
            for it in items:
                vec = np.asarray(it.embedding, dtype=np.float32) * scale
                out = pipe(id_embeds=IDEmbedding(vec, pipe.encoder), seeds=[it.seed],
                           prompt=it.prompt if text else None, num_inference_steps=steps,
                           guidance_scale=guidance_scale, progress=False, measure_similarity=False)
                images.append(out.rgb(0))
            return images
        finally:
            torch.set_num_threads(before)

    return generate
