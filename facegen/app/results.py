"""Write results as PNG files with provenance metadata, and describe them for the page.

The gallery and the download list serve these very files (Gradio copies bytes, it does
not re-encode a file path), so a downloaded image keeps its ``ai_generated`` marker,
preset, adapter and seed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegen.io import save_images
from facegen.pipelines.similarity import similarity_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavedResult:
    path: Path
    seed: int | None
    id_similarity: float | None
    preset: str

    def caption(self) -> str:
        seed = "?" if self.seed is None else str(self.seed)
        return f"seed {seed} · ID similarity {similarity_text(self.id_similarity)} · {self.preset}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path.name, "seed": self.seed, "id_similarity": self.id_similarity,
                "preset": self.preset}


def _item(seq: Sequence[Any] | None, i: int) -> Any:
    return seq[i] if seq is not None and i < len(seq) else None


def save_results(images: Sequence[Any], out_dir: Path, *, job: str, preset: str,
                 seeds: Sequence[int | None] | None = None,
                 similarities: Sequence[float | None] | None = None,
                 metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
                 ) -> list[SavedResult]:
    """Save each image as ``<job>-<n>-seed<seed>.png`` with its provenance; return them.

    metadata: one mapping for the whole run, or one per image (the pipeline's own
    provenance); ``job``, ``preset``, ``seed`` and ``id_similarity`` are added.
    """
    items, kept = [], []
    for i, image in enumerate(images):
        seed = _item(seeds, i)
        sim = _item(similarities, i)
        sim = None if sim is None else float(sim)
        if isinstance(metadata, Mapping) or metadata is None:
            base = dict(metadata or {})
        else:
            base = dict(_item(metadata, i) or {})
        meta = {**_plain(base), "job": job, "preset": preset, "seed": seed, "id_similarity": sim,
                "source": "facegen web demo"}
        name = f"{job}-{i:02d}" + (f"-seed{seed}" if seed is not None else "") + ".png"
        items.append((out_dir / name, image, meta))
        kept.append((None if seed is None else int(seed), sim))
    saved = save_images(items)                      # the batch watermarked in one call
    results = [SavedResult(s.path, seed, sim, preset) for s, (seed, sim) in zip(saved, kept)]
    logger.info("saved %d %s result(s) in %s", len(results), job, out_dir)
    return results


#: provenance fields save_image writes itself (it refuses them in ``metadata``)
WRITER_OWNED = frozenset({"ai_generated", "software", "digitalsourcetype", "facegen", "xml:com.adobe.xmp",
                          "provenance"})


def _plain(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Keep values that fit a PNG text chunk as JSON; drop pixel arrays, objects and the
    fields the writer owns (``ai_generated`` is always written by save_image)."""
    out = {}
    for k, v in meta.items():
        if str(k).lower() in WRITER_OWNED:
            continue
        if hasattr(v, "shape") and getattr(v, "size", 0) > 64:
            continue
        if isinstance(v, (str, int, float, bool, type(None), list, tuple, dict, Path)) or hasattr(v, "item"):
            out[str(k)] = v
    return out


def results_markdown(results: Sequence[SavedResult], reference: str = "the reference photo") -> str:
    """A table of the results: file, seed, ID similarity to the reference, preset."""
    if not results:
        return ""
    rows = [f"| # | seed | ID similarity to {reference} | preset |", "|---|---|---|---|"]
    for i, r in enumerate(results):
        rows.append(f"| {i} | {r.seed if r.seed is not None else '?'} | "
                    f"{similarity_text(r.id_similarity)} | `{r.preset}` |")
    return "\n".join(rows)


def gallery_value(results: Sequence[SavedResult]) -> list[tuple[str, str]]:
    return [(str(r.path), r.caption()) for r in results]


def file_value(results: Sequence[SavedResult]) -> list[str]:
    return [str(r.path) for r in results]


def ui_outputs(results: Sequence[SavedResult], reference: str = "the reference photo"
               ) -> tuple[list[tuple[str, str]], list[str], str, list[dict[str, Any]]]:
    """What a job tab returns: gallery items, download files, the table, the JSON details."""
    return (gallery_value(results), file_value(results), results_markdown(results, reference),
            [r.to_dict() for r in results])
