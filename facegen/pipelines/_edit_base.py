"""The one edit path: a **job** on the **edit skeleton**, the same for a photo and a video.

A job (:class:`EditJob`: :class:`~facegen.pipelines.swap.SwapJob`,
:class:`~facegen.pipelines.aging.AgeJob`, :class:`~facegen.pipelines.restoration.RestoreJob`)
is the job's rules, written once: its typed settings (a frozen dataclass, checked when the job
is made), the consent it needs (checked when the job is made: every route — Python, CLI, app,
photo, video — makes one), the pre-pass of each image (GFPGAN), and its **plan** of each face
(:class:`FacePlan`: the face, the identity it is given, whom it is judged against, what is
recorded).  Its per-face edit is its engine's :meth:`EditSkeleton.edit_face`, and the paste of
that edit (with the target's mouth kept when asked) is :meth:`EditJob.paste`.

The skeleton (:class:`EditSkeleton`) runs a job on a photo (:meth:`EditSkeleton.run_job`):
faces by the job's policy → the job's plans → per-face seeds → the job's edit of each face →
paste-back → ID similarity by an independent judge → provenance listing every face.  The video
route (:class:`facegen.video.pipeline.VideoEditPipeline`) runs the same job frame by frame: it
adds tracks, smoothing and segments, and calls the same plan, edit, paste and judge.

Engines: :class:`FaceEditPipeline` re-draws the face with the preset's diffusion model
(ID-conditioned inpainting of an aligned crop — a 4-channel UNet by latent blending, as
diffusers' inpainting pipeline does — colour-matched to the photo, pasted back with the inverse
affine and a feathered mask: nothing outside it changes), with the preset's IDGenerationPipeline
model; :class:`~facegen.pipelines.inswapper.InswapperSwapPipeline` swaps with insightface's 128-px GAN.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
from PIL import Image

from facegen import __version__
from facegen.adapters.base import ConditionRequest, Sample
from facegen.edit import crop_face, face_mask, match_color, mouth_mask, paste_back
from facegen.edit.crop import FaceCrop
from facegen.errors import ConsentRequiredError, InvalidArgumentError
from facegen.faces.align import transform_points
from facegen.faces.detect import FacePolicy, select_faces
from facegen.faces.types import Face
from facegen.id.embedding import IDEmbedding
from facegen.paths import DEFAULT_ACCESS, ModelAccess
from facegen.io import load_image
from facegen.pipelines._roles import about_photo
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


@dataclass(frozen=True)
class EditSettings:
    """Base of a job's typed settings; ``keep_mouth``: the target's mouth region is kept (its
    lips and teeth, from landmarks) over the edited face."""

    keep_mouth: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegeneratedCrop:
    """One face's edit: the crop (colour-matched), its soft paste mask and geometry."""

    crop: np.ndarray       # (S, S, 3) uint8
    mask: np.ndarray       # (S, S) float32 soft mask used for paste-back
    face_crop: FaceCrop

    def paste(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` with this crop pasted back (inverse affine, feathered mask)."""
        return paste_back(rgb, self.crop, self.face_crop.M, self.mask)


@dataclass
class FacePlan:
    """One face of an edit: where it is, the identity it is given, and the photo and face its
    result is judged against (None: not judged); ``info`` is recorded per face (``source``: the
    swap source's index); ``init_crop`` (video: the model crop blended with the previous frame's
    result) is fed to the model instead of the photo's own crop."""

    face: Face
    identity: IDEmbedding
    reference_rgb: np.ndarray | None = None
    reference_face: Face | None = None
    info: dict[str, Any] = field(default_factory=dict)
    init_crop: np.ndarray | None = None


def keep_region(edited: np.ndarray, original: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``edited`` with ``original`` blended back where the soft mask ``alpha`` is on (only the
    mask's box is touched)."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return edited
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    a = alpha[y0:y1, x0:x1, None].astype(np.float32)
    out = edited.copy()
    out[y0:y1, x0:x1] = np.clip(a * original[y0:y1, x0:x1] + (1 - a) * edited[y0:y1, x0:x1] + 0.5,
                                0, 255).astype(np.uint8)
    return out


class EditJob:
    """A job: its rules (written once) and its typed settings, bound to the engine that edits.

    Made by the engine's ``job(...)`` (or the job class with the engine), run on a photo by
    :meth:`EditSkeleton.run_job` (the pipeline's ``__call__``) and on a video by
    :class:`facegen.video.pipeline.VideoEditPipeline`.  Making one checks consent: no route
    edits a real person's face without it.
    """

    task: ClassVar[str] = "edit"
    #: what the consent message calls the job
    what: ClassVar[str] = "an edit"
    #: the edited photo's role in error messages
    image_role: ClassVar[str] = "input"

    def __init__(self, pipe: "EditSkeleton", settings: EditSettings, *, consent: bool,
                 target_face: "str | int | FacePolicy" = "largest",
                 references: Sequence[ImageInput] | None = None) -> None:
        require_consent(consent, self.what)
        self.pipe = pipe
        self.settings = settings
        self.policy = FacePolicy.parse(target_face)
        self.references = list(references) if references else None
        #: what the provenance records of the job's settings
        self.fields: dict[str, Any] = {}

    # ------------------------------------------------------------------ the rules
    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The image (photo or frame) before its faces are found (a restoration pre-pass)."""
        return rgb

    def plan(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[FacePlan]:
        """The plans of the selected faces of a photo (or of a video's first frame with faces)."""
        return [self.plan_face(rgb, f) for f in faces]

    def plan_face(self, rgb: np.ndarray, face: Face, source: int = 0) -> FacePlan:
        """The plan of one face on its own (a face that enters a video later; ``source``: the swap
        source it was matched to)."""
        raise NotImplementedError(f"{type(self).__name__} must implement plan_face")

    def known_plan(self, face: Face, info: dict[str, Any]) -> FacePlan | None:
        """A plan rebuilt from the job's own inputs and a face's recorded ``info`` (a resumed
        video), or None when the plan's identity came from the frame itself."""
        return None

    def record(self, plans: Sequence[FacePlan]) -> dict[str, Any]:
        """What a photo's provenance records of the job, given its plans."""
        return dict(self.fields)

    def identities(self) -> list[IDEmbedding]:
        """The identities the job brings (sources, reference)."""
        return []

    def digest(self) -> str:
        """What identifies the job's people (its identities and reference photos): a resumed
        video run must use the same ones."""
        h = hashlib.sha256(self.task.encode())
        for ident in self.identities():
            h.update(np.ascontiguousarray(ident.vector).tobytes())
        for ref in self.references or []:
            h.update(repr(ref if isinstance(ref, (str, os.PathLike)) else hashlib.sha256(
                np.ascontiguousarray(ref).tobytes()).hexdigest()).encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ the per-face edit
    def edit(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], *, progress: bool = False,
             callback: Any = None) -> RegeneratedCrop:
        """The job's edit of one face of ``rgb`` (the image with the earlier faces already edited)."""
        return self.pipe.edit_face(rgb, plan, seeds, self.settings, progress=progress, callback=callback)

    def paste(self, rgb: np.ndarray, edited: RegeneratedCrop, face: Face) -> np.ndarray:
        """``rgb`` with the edit pasted back; with ``keep_mouth``, ``face``'s mouth stays ``rgb``'s."""
        out = edited.paste(rgb)
        if self.settings.keep_mouth:
            out = keep_region(out, rgb, mouth_mask(face, rgb.shape[:2]))
        return out


class EditSkeleton:
    """What every edit engine shares: faces, identities, the per-face loop of a photo, judging
    and provenance.  An engine supplies its encoder (:meth:`encoder_model`), the crop its model
    sees (:meth:`model_crop`) and its edit of one face (:meth:`edit_face`)."""

    task: ClassVar[str] = "edit"
    #: seeds each face's edit draws (aging: two passes)
    seeds_per_face: ClassVar[int] = 1

    # ------------------------------------------------------------------ what the engine says
    name: str            # recorded as the output's preset
    family: str          # recorded as the output's adapter
    encoder: str         # the encoder name of its identities (the judge is another one)
    licence: str
    access: ModelAccess = DEFAULT_ACCESS     # models folder, licence acceptance, device policy

    def encoder_model(self) -> Any:
        raise NotImplementedError

    def model_crop(self, rgb: np.ndarray, face: Face, settings: EditSettings) -> FaceCrop:
        """The aligned crop of ``face`` the engine's model takes (video: the previous frame's
        result is blended into it, then given as :attr:`FacePlan.init_crop`)."""
        raise NotImplementedError

    def edit_face(self, rgb: np.ndarray, plan: FacePlan, seeds: Sequence[int], settings: EditSettings, *,
                  progress: bool = False, callback: Any = None) -> RegeneratedCrop:
        """The engine's edit of one face of ``rgb`` by the job's ``settings``."""
        raise NotImplementedError(f"{type(self).__name__} must implement edit_face")

    # ------------------------------------------------------------------ faces
    def find_faces(self, rgb: np.ndarray, policy: "str | int | FacePolicy" = "largest") -> list[Face]:
        """The faces to edit, found by the detector of the engine's encoder contract (SCRFD for
        the insightface packs, dlib for the dlib descriptor), so their keypoints — used to align,
        embed, mask and draw IdentityNet's image — are the ones the model was trained on."""
        return select_faces(self.encoder_model().detect(rgb), policy)

    def embed_face(self, rgb: np.ndarray, face: Face) -> IDEmbedding:
        """The identity of an already detected face, by the engine's own encoder."""
        return self.encoder_model().embed(rgb, face)

    def embed_reference(self, src: ImageInput | IDEmbedding) -> tuple[IDEmbedding, np.ndarray | None]:
        """An identity from a photo (its largest face) or an IDEmbedding as given."""
        raise NotImplementedError

    # ------------------------------------------------------------------ a photo
    def run_job(self, job: EditJob, image: ImageInput, seed: int | None = None, *, progress: bool = True,
                callback: Any = None) -> PipelineOutput:
        """The photo route: the image (the job's pre-pass) → its faces (the job's policy) → the
        job's plans → :meth:`run_plans`."""
        with about_photo(job.image_role, image):
            rgb = job.prepare(load_image(image))
            faces = self.find_faces(rgb, job.policy)
        return self.run_plans(rgb, job.plan(rgb, faces), seed, job, progress=progress, callback=callback)

    def run_plans(self, rgb: np.ndarray, plans: Sequence[FacePlan], seed: int | None, job: EditJob, *,
                  progress: bool = True, callback: Any = None) -> PipelineOutput:
        """Edit every planned face in turn (each with its own seeds, ``seed + i`` in face order),
        paste each back, judge each against its own reference, and record every face with the
        job's fields."""
        n = self.seeds_per_face
        seeds = self.seeds(n * len(plans), seed)
        out = rgb.copy()
        for k, plan in enumerate(plans):
            own = seeds[n * k:n * (k + 1)]
            logger.info("%s: face %d/%d (seeds %s)", self.task, k + 1, len(plans), own)
            out = job.paste(out, job.edit(out, plan, own, progress=progress, callback=callback), plan.face)
        sims, judge = self.judge_plans(out, plans)
        faces = [{"face": k, "bbox": [round(float(v), 1) for v in p.face.bbox], "seeds": seeds[n * k:n * (k + 1)],
                  "id_similarity": sim, **p.info} for k, (p, sim) in enumerate(zip(plans, sims))]
        meta = self.provenance(seeds=seeds, id_judge=judge, id_similarity_per_face=sims, faces=faces, **job.record(plans))
        valid = [x for x in sims if x is not None]
        overall = min(valid) if valid and len(valid) == len(sims) else None
        return PipelineOutput(images=[Image.fromarray(out)], seeds=[seeds[0]] if seeds else [seed or 0],
                              preset=self.name, adapter=self.family, id_similarity=[overall], metadata=[meta])

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
            if getattr(self, "_judge", None) is None:
                self._judge = IDJudge.create(exclude=self.encoder, access=self.access)
            judge = self._judge
            ref = judge.encoder.embed(reference_rgb, reference_face) if reference_face is not None \
                else judge.reference(reference_rgb)
            if ref is None:
                return [None] * len(outputs), judge.encoder_name
            return [similarity(ref, judge.encoder.embed(rgb, face)) for rgb, face in outputs], judge.encoder_name
        except FacegenError as exc:
            logger.warning("ID similarity not measured: %s", exc)
            return [None] * len(outputs), None

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
                "encoder": self.encoder, "licence": self.licence, **fields}

    @staticmethod
    def seeds(n: int, seed: int | None) -> list[int]:
        return seeds_for(n, seed)


class FaceEditPipeline(EditSkeleton):
    """The diffusion engine: loads the preset once and re-draws one face by ID-conditioned
    inpainting of its aligned crop (:meth:`regenerate`)."""

    def __init__(self, generator: IDGenerationPipeline) -> None:
        self.check_capabilities(generator.adapter, generator.preset.name)
        self.gen = generator
        self._inpaint: Any = None
        self._judge: Any = None

    @classmethod
    def from_preset(cls, name: str, access: ModelAccess = DEFAULT_ACCESS, device: Any = None,
                    dtype: Any = None) -> "FaceEditPipeline":
        from facegen.adapters.registry import adapter_class  # noqa: PLC0415
        from facegen.models.registry import get_preset  # noqa: PLC0415

        cls.check_capabilities(adapter_class(get_preset(name).family), name)   # before any weight loads
        return cls(IDGenerationPipeline.from_preset(name, access=access, device=device, dtype=dtype))

    @classmethod
    def check_capabilities(cls, adapter: Any, preset_name: str) -> None:
        """Refuse, in one line, a preset this job cannot run, from its adapter's capabilities (class
        data: the adapter class is enough, so :meth:`from_preset` asks before any weight loads).
        Every route (CLI, app, video, Python) builds the job through here."""
        adapter.check_editable(preset_name)

    @property
    def preset(self):  # noqa: ANN201
        return self.gen.preset

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.preset.name

    @property
    def family(self) -> str:  # type: ignore[override]
        return self.preset.family

    @property
    def encoder(self) -> str:  # type: ignore[override]
        return self.gen.encoder

    @property
    def licence(self) -> str:  # type: ignore[override]
        return self.preset.licence

    @property
    def access(self) -> ModelAccess:  # type: ignore[override]
        return self.gen.access

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

    def encoder_model(self) -> Any:
        """The preset's ID encoder (detector + embedder of its contract), loaded once per process."""
        from facegen.id.encoders import get_analyzer  # noqa: PLC0415
        return get_analyzer(self.gen.encoder, self.gen.access)

    def embed_reference(self, src: ImageInput | IDEmbedding) -> tuple[IDEmbedding, np.ndarray | None]:
        """An identity from a photo (with the adapter's encoder) or an IDEmbedding as given."""
        if isinstance(src, IDEmbedding):
            self.gen.adapter.check_embedding(src)
            return src, None
        embs, rgbs = self.gen.embed_photos([src])
        return embs[0], rgbs[0]

    def model_crop(self, rgb: np.ndarray, face: Face, settings: EditSettings) -> FaceCrop:
        return crop_face(rgb, face, size=self.crop_size, template="ffhq",
                         margin=float(getattr(settings, "margin", 0.0) or 0.0))

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

