"""ID similarity of generated images to a reference, by an *independent* encoder.

The judge must not be the network that conditioned the generation (that would grade the
model on its own exam).  It is the first ArcFace ONNX encoder whose weights are installed
and that differs from the conditioning encoder, else the dlib descriptor (real, offline).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.errors import FacegenError, NoFaceError
from facegen.id.embedding import IDEmbedding
from facegen.id.encoders import Encoder, embed_image, get_analyzer, similarity
from facegen.id.registry import DEFAULT_ENCODER, ENCODERS
from facegen.paths import licence_accepted
from facegen.paths import models_dir as default_models_dir

logger = logging.getLogger(__name__)


def choose_judge(exclude: str | None = None, models_dir: str | Path | None = None,
                 accept_license: bool = False) -> str:
    """Name of the independent judge encoder for a generation conditioned on ``exclude``."""
    root = default_models_dir(models_dir)
    for name, spec in ENCODERS.items():
        if spec.backend != "onnx" or name == exclude:
            continue
        if not spec.commercial_use and not licence_accepted(accept_license):
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
    def create(cls, exclude: str | None = None, models_dir: str | Path | None = None,
               accept_license: bool = False) -> "IDJudge":
        name = choose_judge(exclude, models_dir, accept_license)
        if name == exclude:
            logger.info("no independent ID judge installed: scoring with the conditioning encoder '%s'", name)
        return cls(name, get_analyzer(name, models_dir, accept_license=accept_license))

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


def id_similarity(ref: IDEmbedding | None, rgb: np.ndarray, models_dir: str | Path | None = None,
                  accept_license: bool = False) -> float | None:
    """Similarity of the largest face in ``rgb`` to ``ref``, embedded with ``ref``'s encoder (from
    ``models_dir``; a non-commercial encoder needs the caller's ``accept_license``, never assumed).

    None when ``ref`` is None or no face is found (e.g. the tiny preset's noise images).
    """
    if ref is None:
        return None
    try:
        enc = get_analyzer(ref.encoder, models_dir, accept_license=accept_license)
        emb = embed_image(rgb, enc)[0]
    except NoFaceError:
        return None
    except FacegenError as exc:
        logger.warning("ID similarity not measured: %s", exc)
        return None
    return similarity(ref, emb)
