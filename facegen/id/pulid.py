"""PuLID's ID condition as an encoder entry: a recognition vector and an EVA02-CLIP embedding of the
face with its background whitened, plus the EVA hidden states the IDFormer reads.

Upstream (ToTheBeginning/PuLID @1aa2fc7, ``pipeline_v1_1.py`` / ``pipeline_flux.py``
``get_id_embedding``; read, never copied), per face:

1. the antelopev2 ``glintr100`` embedding, raw (512) — here the recogniser entry's vector on its own
   crop of the photo (:attr:`EncoderSpec.recogniser`: ``antelopev2-glintr100``; the tiny twin's dlib);
2. the face aligned on facexlib's FFHQ 512 template (``FaceRestoreHelper(face_size=512)``: grey
   border ``(135, 133, 132)`` BGR), parsed by facexlib's BiSeNet on RGB/255 with ImageNet mean/std;
   the labels background, ears, earring, neck, necklace, cloth and hat (0, 7, 8, 9, 14, 15, 16, 18)
   become white, the rest the grey ``0.299 R + 0.587 G + 0.114 B`` in all three channels;
3. resized to 336 bicubic (torchvision 0.15's tensor ``resize``, which upstream pins: no antialias),
   normalised with the OpenAI CLIP mean/std, through EVA02-CLIP-L-14-336's visual tower with
   ``return_hidden=True``: the CLS embedding (768) is L2-normalised;
4. ``id_cond = cat([ante, eva_cls])`` (1280) and ``id_vit_hidden`` (5 × (1, 577, 1024)).

facegen's differences, on purpose: one detector per entry (the recogniser's: SCRFD for antelopev2)
gives the keypoints of both crops, where upstream pairs insightface's largest face with facexlib
RetinaFace's centre face; the FFHQ warp is facexlib's own (OpenCV's LMedS similarity estimate,
grey border: :class:`FaceRestoreAligner`).  ``IDEmbedding.meta["vit_hidden"]`` is the float32
``(L, T, W)`` array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import InvalidArgumentError
from facegen.faces.align import TemplateName, align_matrix, crop_template, template_points
from facegen.faces.analyzer import Aligner, CropEmbedder, FaceAnalyzer
from facegen.faces.types import AlignedFace, Face
from facegen.id.embedding import IDEmbedding
from facegen.id.registry import EncoderSpec
from facegen.models.eva_clip import CLIP_MEAN, CLIP_STD

#: facexlib parsing labels upstream whitens (bg_label): background, l/r ear, earring, neck, necklace, cloth, hat
BACKGROUND_LABELS = (0, 16, 18, 7, 8, 9, 14, 15)
#: facexlib's warp border, (135, 133, 132) on its BGR image
FFHQ_BORDER_RGB = (132, 133, 135)
GREY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class FaceRestoreAligner:
    """facexlib ``FaceRestoreHelper.align_warp_face``'s crop: ``cv2.estimateAffinePartial2D(kps,
    template, method=cv2.LMEDS)``, bilinear warp, its grey constant border."""

    template: TemplateName
    size: int

    def align(self, rgb: np.ndarray, face: Face) -> AlignedFace:
        import cv2  # noqa: PLC0415

        # facexlib's estimate: OpenCV's LMedS similarity (equal to the least-squares one on consistent
        # points; on a face whose five points disagree it drops one, and so must the crop PuLID was trained on)
        dst = template_points(self.size, self.template)
        m = cv2.estimateAffinePartial2D(np.asarray(face.kps, np.float32), dst, method=cv2.LMEDS)[0]
        if m is None:
            m = align_matrix(face.kps, self.size, self.template)
        crop = cv2.warpAffine(rgb, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=FFHQ_BORDER_RGB)
        return AlignedFace(face, crop, m)


class PulidEncoder:
    """The network half of the ``pulid`` entries: recogniser + face parser + EVA tower."""

    def __init__(self, spec: EncoderSpec, recogniser: CropEmbedder, recogniser_aligner: Aligner,
                 eva_path: Path, parsing_path: Path) -> None:
        from facegen.id.bisenet import load_bisenet  # noqa: PLC0415
        from facegen.id.eva import load_eva  # noqa: PLC0415

        self.spec = spec
        self.recogniser = recogniser
        self.recogniser_aligner = recogniser_aligner
        self.eva = load_eva(eva_path)
        self.parser = load_bisenet(parsing_path)
        crop = crop_template(spec.template)
        if crop.template is None:
            raise InvalidArgumentError(f"encoder '{spec.name}': the EVA crop is a warped template, "
                                       f"not '{spec.template}'")
        self.template = crop.template

    def aligner(self) -> "FaceRestoreAligner":
        """The crop the EVA path starts from (facexlib's FFHQ 512, grey border)."""
        return FaceRestoreAligner(self.template, self.spec.crop_size)

    def features_image(self, crops: Sequence[np.ndarray]) -> Any:
        """``(N, 3, S, S)`` in [0, 1]: the grey face on white (steps 2 of the module docstring)."""
        import torch  # noqa: PLC0415

        from facegen.id.bisenet import IMAGENET_MEAN, IMAGENET_STD  # noqa: PLC0415

        x = torch.from_numpy(np.stack(crops).astype(np.float32)).permute(0, 3, 1, 2) / self.spec.std
        norm = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        with torch.inference_mode():
            labels = self.parser(norm).argmax(dim=1, keepdim=True)
        background = torch.isin(labels, torch.tensor(BACKGROUND_LABELS))
        w = torch.tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
        grey = (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        return torch.where(background, torch.ones_like(x), grey)

    def eva_input(self, image: Any) -> Any:
        """Step 3: 336 px bicubic (no antialias), OpenAI CLIP mean/std."""
        import torch  # noqa: PLC0415
        from torch.nn import functional as F  # noqa: PLC0415

        side = self.eva.cfg.image_size
        x = F.interpolate(image, size=(side, side), mode="bicubic", align_corners=False, antialias=False)
        return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def embed_faces(self, pairs: Sequence[tuple[np.ndarray, Face]]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors (N, D), vit_hidden (N, L, T, W))`` of faces of any images, each network called once."""
        import torch  # noqa: PLC0415

        ante = np.asarray(self.recogniser.embed_crops(
            [self.recogniser_aligner.align(rgb, f).crop for rgb, f in pairs]), dtype=np.float32)
        aligner = self.aligner()
        image = self.features_image([aligner.align(rgb, f).crop for rgb, f in pairs])
        with torch.inference_mode():
            cls, hidden = self.eva(self.eva_input(image))
            cls = cls / cls.norm(dim=1, keepdim=True)
            states = torch.stack(hidden, dim=1)
        vectors = np.concatenate([ante, cls.numpy().astype(np.float32)], axis=1)
        if vectors.shape[1] != self.spec.dim:
            raise InvalidArgumentError(f"encoder '{self.spec.name}' makes {self.spec.dim}-D vectors, but its "
                                       f"networks gave {vectors.shape[1]} (recogniser {ante.shape[1]} + EVA "
                                       f"{cls.shape[1]}): are the weight files the entry's?")
        return vectors, states.numpy().astype(np.float32)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        raise InvalidArgumentError(f"encoder '{self.spec.name}' embeds faces of whole photos (its recogniser and "
                                   "its EVA path crop the photo differently); use analyze/embed, not aligned crops")


class PulidAnalyzer(FaceAnalyzer[IDEmbedding]):
    """The face front door of a ``pulid`` entry: the usual detect → select, then both crops of each
    face from the photo; every embedding carries ``meta["vit_hidden"]``."""

    embedder: PulidEncoder

    def embed_batch(self, pairs: Sequence[tuple[np.ndarray, Face]]) -> list[IDEmbedding]:
        if not pairs:
            return []
        vectors, hidden = self.embedder.embed_faces(pairs)
        return [IDEmbedding(v, self.name, face=f, meta={"vit_hidden": h})
                for v, h, (_, f) in zip(vectors, hidden, pairs)]
