"""The output record every facegen pipeline returns: images plus per-image provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PipelineOutput:
    """Images of one call, with what is needed to reproduce and judge each of them.

    images: PIL RGB images, in order.
    seeds: the seed of each image's own CPU ``torch.Generator`` (rerun with ``seeds=[s]`` for
        the same pixels).
    preset / adapter: the model preset name and the adapter family.
    id_similarity: similarity of each image's face to the reference identity by an
        independent encoder, in that encoder's metric; ``None`` when no face was found (e.g.
        tiny random weights) or nothing to compare with.
    metadata: one JSON-serialisable dict per image (the provenance written next to it).
    people: with ``people=``, per image one report per person (face box, face found there,
        ID similarity, similarity to the others: :class:`~facegen.pipelines.people_report.PersonReport`).
    """

    images: list[Any]
    seeds: list[int]
    preset: str
    adapter: str
    id_similarity: list[float | None]
    metadata: list[dict[str, Any]] = field(default_factory=list)
    people: list[list[Any]] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.seeds) == len(self.id_similarity) == n) or (self.metadata and len(self.metadata) != n):
            raise ValueError("images, seeds, id_similarity and metadata must have one entry per image")
        if not self.metadata:
            self.metadata = [{} for _ in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def rgb(self, i: int) -> np.ndarray:
        """Image ``i`` as an RGB uint8 ``(H, W, 3)`` array."""
        return np.asarray(self.images[i].convert("RGB"), dtype=np.uint8)

    def provenance(self, i: int) -> dict[str, Any]:
        """The metadata to embed in image ``i``'s file (``facegen.io.save_image``)."""
        return {"preset": self.preset, "adapter": self.adapter, "seed": int(self.seeds[i]),
                "id_similarity": self.id_similarity[i], **self.metadata[i]}
