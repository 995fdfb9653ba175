"""The fast swap path: insightface ``inswapper_128.onnx``, when the user has its file.

A 128-px GAN swapper (no diffusion): the target face is cropped on the ArcFace template at
128 (the template shifted 8 px in x), the source identity enters as
``normed_embedding @ emap`` re-normalised (``emap`` = the graph's last initializer), and the
RGB [0, 1] output is pasted back exactly as insightface does (its warped box mask eroded and
blurred with kernels sized in target-image pixels,
:func:`facegen.edit.paste.paste_back_inswapper`).  It accepts **only** ``buffalo_l``
(w600k_r50) source embeddings; the weights are non-commercial.  It is an engine of the edit
skeleton: the swap job's rules (:class:`~facegen.pipelines.swap.SwapJob`), seeds, judging and
provenance are the diffusion swap's, and it runs on photos and videos alike.
Its file, places, licence, crop template and encoder are the ``inswapper_128`` entry of
:mod:`facegen.models.auxiliary` (looked for at ``<models folder>/inswapper_128.onnx`` or
``<models folder>/inswapper/inswapper_128.onnx``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from facegen.edit.crop import FaceCrop
from facegen.edit.paste import paste_back_inswapper
from facegen.errors import InvalidArgumentError, MissingDependencyError, ModelNotFoundError
from facegen.faces.align import crop_template, warp_face
from facegen.faces.detect import FacePolicy, select_faces
from facegen.id.embedding import IDEmbedding
from facegen.io import load_image
from facegen.models.auxiliary import get_auxiliary
from facegen.onnx_runtime import create_session
from facegen.paths import DEFAULT_ACCESS, ModelAccess, check_sha256
from facegen.pipelines._edit_base import (EditSettings, EditSkeleton, FacePlan, ImageInput, RegeneratedCrop,
                                          require_consent)
from facegen.pipelines.output import PipelineOutput

if TYPE_CHECKING:
    from facegen.pipelines.swap import SwapJob

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


def find_inswapper(access: ModelAccess = DEFAULT_ACCESS) -> Path:
    root = access.root
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


@dataclass(frozen=True)
class InswapperSettings(EditSettings):
    """inswapper is a GAN: no diffusion settings; ``keep_mouth`` only."""


@dataclass
class SwappedCrop(RegeneratedCrop):
    """inswapper's output crop, pasted back as insightface does (its own warped, eroded box mask)."""

    def paste(self, rgb: np.ndarray) -> np.ndarray:
        return paste_back_inswapper(rgb, self.crop, self.face_crop.M)


class InswapperSwapPipeline(EditSkeleton):
    """Face swap with inswapper_128 on the edit skeleton: the swap job's rules and call
    (:class:`~facegen.pipelines.swap.SwapJob`), this engine's edit of a face."""

    task = "swap"
    name = INSWAPPER.name
    family = "inswapper"
    encoder = INSWAPPER_ENCODER
    licence = INSWAPPER_LICENCE

    def __init__(self, access: ModelAccess = DEFAULT_ACCESS,
                 providers: str | Sequence[str] | None = None, session_factory: Any = None,
                 emap: np.ndarray | None = None, encoder: Any = None) -> None:
        if not INSWAPPER.commercial_use:
            access.require(INSWAPPER.name, INSWAPPER_LICENCE)
        self.access = access
        self._judge: Any = None
        self.path = find_inswapper(access)
        self.session = create_session(self.path, providers, session_factory)
        names = [i.name for i in self.session.get_inputs()]
        if len(names) != 2:
            raise InvalidArgumentError(f"{self.path.name} has {len(names)} inputs: not an inswapper model")
        self.target_name, self.source_name = names
        self.emap = load_emap(self.path) if emap is None else emap
        if encoder is None:
            from facegen.id.encoders import get_analyzer  # noqa: PLC0415
            encoder = get_analyzer(INSWAPPER_ENCODER, access, providers)
        self._encoder = encoder
        self._latents: dict[int, tuple[IDEmbedding, np.ndarray]] = {}

    def encoder_model(self) -> Any:
        return self._encoder

    def embed_reference(self, src: ImageInput | IDEmbedding) -> tuple[IDEmbedding, np.ndarray | None]:
        """A buffalo_l identity: from a photo (its largest face) or an IDEmbedding as given."""
        if isinstance(src, IDEmbedding):
            source_latent(src, self.emap)            # refuses another encoder's embedding now
            return src, None
        rgb = load_image(src)
        emb = self._encoder.embed(rgb, select_faces(self._encoder.detect(rgb), "largest")[0])
        source_latent(emb, self.emap)
        return emb, rgb

    def latent(self, identity: IDEmbedding) -> np.ndarray:
        """``identity``'s source latent (computed once per identity)."""
        hit = self._latents.get(id(identity))
        if hit is None or hit[0] is not identity:
            hit = self._latents[id(identity)] = (identity, source_latent(identity, self.emap))
        return hit[1]

    def model_crop(self, rgb: np.ndarray, face: Any, settings: EditSettings) -> FaceCrop:
        crop, m = warp_face(rgb, face.kps, CROP, _TEMPLATE)
        return FaceCrop(crop, m, CROP, "arcface", 0.0, rgb.shape[:2])

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], settings: EditSettings, *,
                  progress: bool = False, callback: Any = None) -> RegeneratedCrop:
        """The GAN's swap of one face (its aligned 128-px crop, or ``plan.init_crop``)."""
        fc = self.model_crop(rgb, plan.face, settings)
        fake = self.swap_crop(fc.crop if plan.init_crop is None else plan.init_crop, self.latent(plan.identity))
        return SwappedCrop(fake, np.ones((CROP, CROP), np.float32), fc)

    def swap_crop(self, crop: np.ndarray, latent: np.ndarray) -> np.ndarray:
        """The GAN on one aligned 128-px crop: the swapped crop (RGB uint8)."""
        blob = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.target_name: blob, self.source_name: latent})[0]
        return np.clip(255 * out[0].transpose(1, 2, 0), 0, 255).astype(np.uint8)   # insightface truncates

    def swap_face(self, rgb: np.ndarray, face: Any, latent: np.ndarray) -> np.ndarray:
        """One face of ``rgb`` swapped to the identity behind ``latent`` and pasted back."""
        fc = self.model_crop(rgb, face, InswapperSettings())
        return paste_back_inswapper(rgb, self.swap_crop(fc.crop, latent), fc.M)

    def job(self, source: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding], *, consent: bool = False,
            target_face: "str | int | FacePolicy" = "largest", references: Sequence[ImageInput] | None = None,
            strength: float | None = None, num_inference_steps: int | None = None,
            guidance_scale: float | None = None, prompt: str | None = None, adapter_scale: float | None = None,
            margin: float = 0.0, keep_mouth: bool = False) -> "SwapJob":
        """The swap job of :meth:`FaceSwapPipeline.job`: sources mapped to target faces the same way
        (one source → every selected face; several → reading order, or by ``references``).
        inswapper is a GAN, not a diffusion model: the diffusion settings (strength, steps,
        guidance, prompt, adapter scale, margin) are refused by name rather than ignored."""
        from facegen.pipelines.swap import SwapJob  # noqa: PLC0415

        require_consent(consent, SwapJob.what)
        given = {"strength": strength, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                 "prompt": prompt, "adapter_scale": adapter_scale, "margin": margin or None}
        unused = [k for k, v in given.items() if v is not None]
        if unused:
            raise InvalidArgumentError(f"the inswapper engine is not a diffusion model: it takes no {', '.join(unused)}")
        job = SwapJob(self, source, InswapperSettings(keep_mouth=keep_mouth), consent=consent,
                      target_face=target_face, references=references)
        job.fields["engine"] = INSWAPPER.name
        if keep_mouth:
            job.fields["keep_mouth"] = True
        return job

    def __call__(self, source: ImageInput | IDEmbedding | Sequence[ImageInput | IDEmbedding], target: ImageInput, *,
                 consent: bool = False, target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[ImageInput] | None = None, seed: int | None = None,
                 strength: float | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, prompt: str | None = None, adapter_scale: float | None = None,
                 margin: float = 0.0, keep_mouth: bool = False, progress: bool = True,
                 callback: Any = None) -> PipelineOutput:
        """The call of :class:`~facegen.pipelines.swap.FaceSwapPipeline` (its job, then the edit
        skeleton); ``seed`` is recorded only (the GAN swap is deterministic)."""
        job = self.job(source, consent=consent, target_face=target_face, references=references, strength=strength,
                       num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, prompt=prompt,
                       adapter_scale=adapter_scale, margin=margin, keep_mouth=keep_mouth)
        return self.run_job(job, target, seed, progress=progress, callback=callback)
