"""ID similarity of generated images to a reference, by an *independent* encoder.

The judge must not be the network that conditioned the generation (that would grade the
model on its own exam).  It is the first ArcFace ONNX encoder whose weights are installed
and that differs from the conditioning encoder, else the dlib descriptor (real, offline).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from facegen.errors import FacegenError, NoFaceError
from facegen.id.embedding import IDEmbedding
from facegen.id.encoders import Encoder, embed_image, get_analyzer, similarity
from facegen.id.registry import DEFAULT_ENCODER, ENCODERS
from facegen.paths import DEFAULT_ACCESS, ModelAccess

logger = logging.getLogger(__name__)


def choose_judge(exclude: str | None = None, access: ModelAccess = DEFAULT_ACCESS) -> str:
    """Name of the independent judge encoder for a generation conditioned on ``exclude`` (nor the
    network a composite ``exclude`` starts with: PuLID's is antelopev2's glintr100)."""
    root = access.root
    skip = {exclude}
    if exclude in ENCODERS:
        skip.add(ENCODERS[exclude].recogniser)
    for name, spec in ENCODERS.items():
        if spec.backend != "onnx" or name in skip:
            continue
        if not spec.commercial_use and not access.accepted:
            continue
        if all(f.locate(root) is not None for f in spec.files):
            return name
    return DEFAULT_ENCODER


@dataclass
class IDJudge:
    """Embeds references and outputs with one independent encoder and scores them."""

    encoder_name: str
    encoder: Encoder

    @classmethod
    def create(cls, exclude: str | None = None, access: ModelAccess = DEFAULT_ACCESS) -> "IDJudge":
        name = choose_judge(exclude, access)
        if name == exclude:
            logger.info("no independent ID judge installed: scoring with the conditioning encoder '%s'", name)
        return cls(name, get_analyzer(name, access))

    def reference(self, rgb: np.ndarray) -> IDEmbedding | None:
        """The judge's embedding of the largest face in a reference photo (None: no face)."""
        try:
            return embed_image(rgb, self.encoder)[0]
        except NoFaceError:
            return None

    def score(self, ref: IDEmbedding | None, rgb: np.ndarray) -> float | None:
        """Similarity of the largest face in ``rgb`` to ``ref``; None when either has no face."""
        if ref is None:
            return None
        emb = self.reference(rgb)
        return None if emb is None else similarity(ref, emb)


def id_similarity(ref: IDEmbedding | None, rgb: np.ndarray,
                  access: ModelAccess = DEFAULT_ACCESS) -> float | None:
    """Similarity of the largest face in ``rgb`` to ``ref``, embedded with ``ref``'s encoder (from
    ``access``'s models folder; a non-commercial encoder needs ``access``'s acceptance, never assumed).

    None when ``ref`` is None or no face is found (e.g. the tiny preset's noise images).
    """
    if ref is None:
        return None
    try:
        enc = get_analyzer(ref.encoder, access)
        emb = embed_image(rgb, enc)[0]
    except NoFaceError:
        return None
    except FacegenError as exc:
        logger.warning("ID similarity not measured: %s", exc)
        return None
    return similarity(ref, emb)
