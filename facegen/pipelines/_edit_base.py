"""The edit skeleton the three edit jobs (swap, aging, restoration) share.

Each job finds the faces to edit in a real photo and says, per face, what to do: its
**plan** (:class:`FacePlan`: the face, the identity it is regenerated with, whom it is judged
against, what to record).  The skeleton does the rest, the same way for every job
(:meth:`FaceEditPipeline.run_plans`): per-face seeds, the face's edit (the job's
:meth:`~FaceEditPipeline.edit_face`: ID-conditioned inpainting of an aligned crop at the
model's resolution — a 4-channel UNet by latent blending, as diffusers' inpainting pipeline
does — colour-matched to the photo), paste-back with the inverse affine and a feathered mask
(nothing outside it changes), per-face ID similarity by an independent judge, and
provenance listing every face's seeds and similarity.  The diffusion model is the one
:class:`IDGenerationPipeline` loaded for the preset: same weights, same adapter contract.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
from PIL import Image

from facegen import __version__
from facegen.adapters.base import ConditionRequest, Sample
from facegen.edit import crop_face, face_mask, match_color, paste_back
from facegen.edit.crop import FaceCrop
from facegen.errors import ConsentRequiredError, InvalidArgumentError
from facegen.faces.align import transform_points
from facegen.faces.detect import FacePolicy, select_faces
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding
from facegen.pipelines.generation import IDGenerationPipeline, seeds_for
from facegen.pipelines.output import PipelineOutput

logger = logging.getLogger(__name__)

ImageInput = Any


def require_consent(consent: bool, task: str) -> None:
    """Edits of a real person's face need the user's explicit attestation."""
    if not consent:
        raise ConsentRequiredError(
            f"{task} edits a real person's face: confirm you have the right to do so with --consent "
            "(consent=True in Python)")


@dataclass
class RegeneratedCrop:
    crop: np.ndarray       # (S, S, 3) uint8, colour-matched
    mask: np.ndarray       # (S, S) float32 soft mask used for paste-back
    face_crop: FaceCrop


@dataclass
class FacePlan:
    """One face of an edit: where it is, the identity it is regenerated with, and the photo and
    face its result is judged against (None: not judged); ``info`` is recorded per face;
    ``init_crop`` (video: its crop blended with the previous frame's result) is fed to the model
    instead of the photo's own aligned crop."""

    face: Face
    identity: IDEmbedding
    reference_rgb: np.ndarray | None = None
    reference_face: Face | None = None
    info: dict[str, Any] = field(default_factory=dict)
    init_crop: np.ndarray | None = None


class FaceEditPipeline:
    """Base of the edit pipelines: loads the preset once; a job plans its faces and edits one
    face (:meth:`edit_face`), :meth:`run_plans` does the per-face loop for every job."""

    task: ClassVar[str] = "edit"
    #: seeds each face's edit draws (aging: two passes)
    seeds_per_face: ClassVar[int] = 1

    def __init__(self, generator: IDGenerationPipeline) -> None:
        generator.adapter.check_editable(generator.preset.name)
        self.gen = generator
        self._inpaint: Any = None
        self._judge: Any = None

    @classmethod
    def from_preset(cls, name: str, models_dir: str | os.PathLike[str] | None = None, device: Any = None,
                    dtype: Any = None, accept_license: bool = False) -> "FaceEditPipeline":
        from facegen.adapters.registry import adapter_class  # noqa: PLC0415
        from facegen.models.registry import get_preset  # noqa: PLC0415

        adapter_class(get_preset(name).family).check_editable(name)
        return cls(IDGenerationPipeline.from_preset(name, models_dir=models_dir, device=device, dtype=dtype,
                                                    accept_license=accept_license))

    @property
    def preset(self):  # noqa: ANN201
        return self.gen.preset

    @property
    def crop_size(self) -> int:
        return int(self.preset.defaults.height)

    # ------------------------------------------------------------------ model
    def inpaint_pipe(self) -> Any:
        """The preset's weights in diffusers' inpainting pipeline (components shared, not copied)."""
        if self._inpaint is None:
            cls = self.gen.adapter.inpaint_pipeline_class()
            from facegen.models.loading import pipeline_kwargs  # noqa: PLC0415
            self._inpaint = cls.from_pipe(self.gen.pipe, **pipeline_kwargs(cls))
        return self._inpaint

    # ------------------------------------------------------------------ faces
    def find_faces(self, rgb: np.ndarray, policy: "str | int | FacePolicy" = "largest") -> list[Face]:
        """The faces to edit, found by the detector of the preset's encoder contract (SCRFD for
        the insightface packs, dlib for the dlib descriptor), so their keypoints — used to align,
        embed, mask and draw IdentityNet's image — are the ones the adapter was trained on."""
        return select_faces(self.encoder_model().detect(rgb), policy)

    def encoder_model(self) -> Any:
        """The preset's ID encoder (detector + embedder of its contract), loaded once per process."""
        from facegen.id.encoders import get_analyzer  # noqa: PLC0415
        return get_analyzer(self.gen.encoder, self.gen.models_dir, accept_license=self.gen.accept_license)

    def embed_reference(self, src: ImageInput | IDEmbedding) -> tuple[IDEmbedding, np.ndarray | None]:
        """An identity from a photo (with the adapter's encoder) or an IDEmbedding as given."""
        if isinstance(src, IDEmbedding):
            self.gen.adapter.check_embedding(src)
            return src, None
        embs, rgbs = self.gen.embed_photos([src])
        return embs[0], rgbs[0]

    def embed_face(self, rgb: np.ndarray, face: Face) -> IDEmbedding:
        """The identity of an already detected face, by the adapter's own encoder."""
        return self.encoder_model().embed(rgb, face)

    # ------------------------------------------------------------------ regenerate
    def regenerate(self, rgb: np.ndarray, face: Face, identity: IDEmbedding, *, strength: float, seed: int,
                   steps: int | None = None, guidance_scale: float | None = None, prompt: str | None = None,
                   negative_prompt: str | None = None, adapter_scale: float | None = None,
                   margin: float = 0.0, source_crop: np.ndarray | None = None, progress: bool = False,
                   callback: Any = None) -> RegeneratedCrop:
        """Re-draw ``face`` of ``rgb`` with ``identity`` (ID-conditioned inpainting of its crop).

        ``source_crop`` replaces the crop fed to the model (a second pass starts from the
        first pass's result); colour matching always targets the photo's own crop.
        """
        import torch  # noqa: PLC0415
        from PIL import Image  # noqa: PLC0415

        if not 0.0 < strength <= 1.0:
            raise InvalidArgumentError(f"strength must be in (0, 1], got {strength}")
        size = self.crop_size
        fc = crop_face(rgb, face, size=size, template="ffhq", margin=margin)
        mask = face_mask(fc, face)
        n_steps, guidance = self.gen.check_sampling(steps, guidance_scale)   # bounded, finite
        if n_steps * strength < 1:           # img2img runs int(steps * strength) steps: keep at least one
            n_steps = math.ceil(1.0 / strength)
            logger.info("strength %.3f needs %d steps for one denoising step; using %d", strength, n_steps, n_steps)
        adapter = self.gen.adapter
        request = ConditionRequest(prompt=prompt, negative_prompt=negative_prompt, guidance_scale=guidance,
                                   height=size, width=size, adapter_scale=adapter_scale,
                                   control_kps=transform_points(face.kps, fc.M) if adapter.supports_control_kps
                                   else None)       # keypoint-controlled families: the target face's pose
        kwargs = adapter.inpaint_kwargs(adapter.condition(self.gen.pipe, [Sample.of(identity)], request))
        pipe = self.inpaint_pipe()
        pipe.set_progress_bar_config(disable=not progress)
        extra: dict[str, Any] = {}
        if callback is not None:
            def on_step(_p: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                callback(step + 1, max(1, int(n_steps * strength)))
                return tensors
            extra["callback_on_step_end"] = on_step
        init = source_crop if source_crop is not None else fc.crop
        mask_img = Image.fromarray(((mask > 0.02) * 255).astype(np.uint8), "L")
        out = pipe(**kwargs, **extra, image=Image.fromarray(init), mask_image=mask_img, strength=float(strength),
                   height=size, width=size, num_inference_steps=n_steps, guidance_scale=guidance,
                   generator=torch.Generator(device="cpu").manual_seed(int(seed)), output_type="np")
        gen_crop = (np.clip(out.images[0], 0, 1) * 255).round().astype(np.uint8)
        matched = match_color(gen_crop, fc.crop, mask)
        return RegeneratedCrop(matched, mask, fc)

    # ------------------------------------------------------------------ measure / provenance
    def judge(self, reference_rgb: np.ndarray | None, reference_face: Face | None,
              outputs: Sequence[tuple[np.ndarray, Face]]) -> tuple[list[float | None], str | None]:
        """ID similarity of each edited face to the reference, by an independent encoder."""
        if reference_rgb is None:
            return [None] * len(outputs), None
        from facegen.errors import FacegenError  # noqa: PLC0415
        from facegen.id.encoders import similarity  # noqa: PLC0415
        from facegen.metrics import IDJudge  # noqa: PLC0415
        try:
            if self._judge is None:
                self._judge = IDJudge.create(exclude=self.gen.encoder, models_dir=self.gen.models_dir,
                                             accept_license=self.gen.accept_license)
            judge = self._judge
            ref = judge.encoder.embed(reference_rgb, reference_face) if reference_face is not None \
                else judge.reference(reference_rgb)
            if ref is None:
                return [None] * len(outputs), judge.encoder_name
            return [similarity(ref, judge.encoder.embed(rgb, face)) for rgb, face in outputs], judge.encoder_name
        except FacegenError as exc:
            logger.warning("ID similarity not measured: %s", exc)
            return [None] * len(outputs), None

    # ------------------------------------------------------------------ the per-face skeleton
    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], *, progress: bool,
                  callback: Any, **settings: Any) -> RegeneratedCrop:
        """The job's edit of one face of ``rgb`` (the photo with the earlier faces already edited);
        ``settings`` are the call's edit settings, as given to :meth:`run_plans`."""
        raise NotImplementedError(f"{type(self).__name__} must implement edit_face")

    def run_plans(self, rgb: np.ndarray, plans: Sequence[FacePlan], seed: int | None, *,
                  settings: dict[str, Any] | None = None, progress: bool = True, callback: Any = None,
                  **fields: Any) -> PipelineOutput:
        """Edit every planned face in turn (each with its own seeds, ``seed + i`` in face order,
        and the call's ``settings``), paste each back, judge each against its own reference, and
        record every face; ``fields`` go into the provenance."""
        n = self.seeds_per_face
        seeds = self.seeds(n * len(plans), seed)
        out = rgb.copy()
        for k, plan in enumerate(plans):
            own = seeds[n * k:n * (k + 1)]
            logger.info("%s: face %d/%d (seeds %s)", self.task, k + 1, len(plans), own)
            out = self.paste(out, self.edit_face(out, plan, own, progress=progress, callback=callback,
                                                 **(settings or {})))
        sims, judge = self.judge_plans(out, plans)
        faces = [{"face": k, "bbox": [round(float(v), 1) for v in p.face.bbox], "seeds": seeds[n * k:n * (k + 1)],
                  "id_similarity": sim, **p.info} for k, (p, sim) in enumerate(zip(plans, sims))]
        meta = self.provenance(seeds=seeds, id_judge=judge, id_similarity_per_face=sims, faces=faces, **fields)
        valid = [x for x in sims if x is not None]
        overall = min(valid) if valid and len(valid) == len(sims) else None
        return PipelineOutput(images=[Image.fromarray(out)], seeds=[seeds[0]], preset=self.preset.name,
                              adapter=self.preset.family, id_similarity=[overall], metadata=[meta])

    def judge_plans(self, out: np.ndarray, plans: Sequence[FacePlan]) -> tuple[list[float | None], str | None]:
        """Each edited face's similarity to its own reference (each reference embedded once)."""
        sims: list[float | None] = [None] * len(plans)
        judge_name = None
        groups: dict[tuple[int, tuple[float, ...] | None], list[int]] = {}
        for k, p in enumerate(plans):
            if p.reference_rgb is not None:
                key = (id(p.reference_rgb), None if p.reference_face is None else tuple(map(float, p.reference_face.bbox)))
                groups.setdefault(key, []).append(k)
        for ks in groups.values():
            first = plans[ks[0]]
            scores, name = self.judge(first.reference_rgb, first.reference_face, [(out, plans[k].face) for k in ks])
            judge_name = judge_name or name
            for k, score in zip(ks, scores):
                sims[k] = score
        return sims, judge_name

    def provenance(self, **fields: Any) -> dict[str, Any]:
        return {"task": self.task, "ai_edited": True, "facegen_version": __version__,
                "encoder": self.gen.encoder, "licence": self.preset.licence, **fields}

    @staticmethod
    def seeds(n: int, seed: int | None) -> list[int]:
        return seeds_for(n, seed)

    @staticmethod
    def paste(rgb: np.ndarray, regen: RegeneratedCrop) -> np.ndarray:
        return paste_back(rgb, regen.crop, regen.face_crop.M, regen.mask)
