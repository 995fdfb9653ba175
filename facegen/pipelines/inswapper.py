"""The fast swap path: insightface ``inswapper_128.onnx``, when the user has its file.

A 128-px GAN swapper (no diffusion): the target face is cropped on the ArcFace template at
128 (the template shifted 8 px in x), the source identity enters as
``normed_embedding @ emap`` re-normalised (``emap`` = the graph's last initializer), and the
RGB [0, 1] output is pasted back exactly as insightface does (its warped box mask eroded and
blurred with kernels sized in target-image pixels,
:func:`facegen.edit.paste.paste_back_inswapper`).  It accepts **only** ``buffalo_l``
(w600k_r50) source embeddings; the weights are non-commercial.
Its file, places, licence, crop template and encoder are the ``inswapper_128`` entry of
:mod:`facegen.models.auxiliary` (looked for at ``<models_dir>/inswapper_128.onnx`` or
``<models_dir>/inswapper/inswapper_128.onnx``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from facegen import __version__
from facegen.edit.paste import paste_back_inswapper
from facegen.errors import InvalidArgumentError, MissingDependencyError, ModelNotFoundError
from facegen.faces.align import crop_template, warp_face
from facegen.faces.detect import FacePolicy, select_faces
from facegen.id.embedding import IDEmbedding
from facegen.io import load_image
from facegen.models.auxiliary import get_auxiliary
from facegen.onnx_runtime import create_session
from facegen.paths import models_dir as default_models_dir
from facegen.paths import check_sha256, require_licence
from facegen.pipelines._edit_base import ImageInput, require_consent
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

INSWAPPER = get_auxiliary("inswapper_128")
INSWAPPER_FILE = Path(INSWAPPER.file("swapper").relpath).name
INSWAPPER_ENCODER: str = INSWAPPER.encoder or ""
INSWAPPER_LICENCE = INSWAPPER.licence
_CROP = crop_template(INSWAPPER.template or "")
CROP = _CROP.size
if _CROP.template is None:
    raise InvalidArgumentError(f"inswapper_128 needs a warped crop template, not '{_CROP.name}'")
_TEMPLATE = _CROP.template


def find_inswapper(models_dir: str | os.PathLike[str] | None = None) -> Path:
    root = default_models_dir(models_dir)
    weights = INSWAPPER.file("swapper")
    path = weights.locate(root)
    if path is None:
        raise ModelNotFoundError(f"{INSWAPPER.name} ({INSWAPPER.purpose})", [weights.relpath], root,
                                 hint=INSWAPPER.hint)
    check_sha256(path, weights.sha256)
    return path


def load_emap(path: Path) -> np.ndarray:
    """The 512×512 embedding map stored as the graph's last initializer."""
    try:
        import onnx  # noqa: PLC0415
        from onnx import numpy_helper  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("onnx", feature="the inswapper fast swap") from None
    graph = onnx.load(str(path)).graph
    emap = numpy_helper.to_array(graph.initializer[-1]).astype(np.float32)
    if emap.shape != (512, 512):
        raise InvalidArgumentError(f"{path.name}: last initializer has shape {emap.shape}, not (512, 512): "
                                   "not an inswapper_128 model")
    return emap


def source_latent(embedding: IDEmbedding, emap: np.ndarray) -> np.ndarray:
    """``normed_embedding @ emap`` re-normalised, as insightface's INSwapper does."""
    if embedding.encoder != INSWAPPER_ENCODER:
        from facegen.errors import EncoderMismatchError  # noqa: PLC0415
        raise EncoderMismatchError(f"inswapper accepts only '{INSWAPPER_ENCODER}' embeddings, got "
                                   f"'{embedding.encoder}'")
    latent = embedding.normalised().reshape(1, -1) @ emap
    return (latent / np.linalg.norm(latent)).astype(np.float32)


class InswapperSwapPipeline:
    """Face swap with inswapper_128 (same call and output as FaceSwapPipeline)."""

    task = "swap"

    def __init__(self, models_dir: str | os.PathLike[str] | None = None, accept_license: bool = False,
                 providers: str | Sequence[str] | None = None, session_factory: Any = None,
                 emap: np.ndarray | None = None, encoder: Any = None) -> None:
        if not INSWAPPER.commercial_use:
            require_licence(INSWAPPER.name, INSWAPPER_LICENCE, accept_license)
        self.path = find_inswapper(models_dir)
        self.session = create_session(self.path, providers, session_factory)
        names = [i.name for i in self.session.get_inputs()]
        if len(names) != 2:
            raise InvalidArgumentError(f"{self.path.name} has {len(names)} inputs: not an inswapper model")
        self.target_name, self.source_name = names
        self.emap = load_emap(self.path) if emap is None else emap
        if encoder is None:
            from facegen.id.encoders import get_analyzer  # noqa: PLC0415
            encoder = get_analyzer(INSWAPPER_ENCODER, models_dir, providers, accept_license)
        self.encoder = encoder

    def swap_face(self, rgb: np.ndarray, face: Any, latent: np.ndarray) -> np.ndarray:
        crop, m = warp_face(rgb, face.kps, CROP, _TEMPLATE)
        blob = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.target_name: blob, self.source_name: latent})[0]
        fake = np.clip(255 * out[0].transpose(1, 2, 0), 0, 255).astype(np.uint8)   # insightface truncates
        return paste_back_inswapper(rgb, fake, m)

    def __call__(self, source: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding], target: ImageInput, *,
                 consent: bool = False, target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[ImageInput] | None = None, seed: int | None = None,
                 strength: float | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None, adapter_scale: float | None = None,
                 margin: float = 0.0, progress: bool = True, callback: Any = None) -> PipelineOutput:
        """The call of :class:`~facegen.pipelines.swap.FaceSwapPipeline`: sources mapped to target
        faces the same way (one source → every selected face; several → reading order, or by
        ``references``).  inswapper is a GAN, not a diffusion model: the diffusion settings
        (strength, steps, guidance, prompt, adapter scale, margin) are refused by name rather than
        ignored; ``seed`` is recorded only (the swap is deterministic)."""
        from facegen.pipelines.swap import map_sources  # noqa: PLC0415

        require_consent(consent, "face swap")
        given = {"strength": strength, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                 "prompt": prompt, "adapter_scale": adapter_scale, "margin": margin or None}
        unused = [k for k, v in given.items() if v is not None]
        if unused:
            raise InvalidArgumentError(f"the inswapper engine is not a diffusion model: it takes no {', '.join(unused)}")
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        if not sources:
            raise InvalidArgumentError("give at least one source photo or embedding")
        latents = []
        for src in sources:
            if isinstance(src, IDEmbedding):
                emb = src
            else:
                src_rgb = load_image(src)
                emb = self.encoder.embed(src_rgb, select_faces(self.encoder.detect(src_rgb), "largest")[0])
            latents.append(source_latent(emb, self.emap))
        rgb = load_image(target)
        faces = select_faces(self.encoder.detect(rgb), target_face)
        pairs = map_sources(rgb, faces, len(sources), references)
        out = rgb.copy()
        for f, i in pairs:
            out = self.swap_face(out, f, latents[i])
        run_seed = 0 if seed is None else int(seed)
        per_face = [{"face": k, "bbox": [round(float(v), 1) for v in f.bbox], "source": i, "seeds": [run_seed],
                     "id_similarity": None} for k, (f, i) in enumerate(pairs)]
        meta = {"task": "swap", "ai_edited": True, "facegen_version": __version__, "engine": INSWAPPER.name,
                "encoder": INSWAPPER_ENCODER, "licence": INSWAPPER_LICENCE, "faces_swapped": len(pairs),
                "faces": per_face, "seeds": [run_seed] * len(pairs)}
        return PipelineOutput(images=[Image.fromarray(out)], seeds=[run_seed], preset=INSWAPPER.name,
                              adapter="inswapper", id_similarity=[None], metadata=[meta])
