"""``facegen fr-eval``: score an encoder (a registered one or a trained run) on verification pairs
by the field's protocol (:mod:`facegen.fr.protocol`), and write ``eval.json``, ``eval.md`` and a ROC plot.

``eval.json`` (schema 1)::

    {"schema": 1, "encoder": NAME, "network": "...", "protocol": "...",
     "sets": {SET: {"pairs", "genuine", "impostor", "folds", "accuracy", "accuracy_std", "threshold",
                    "fold_accuracy", "fold_threshold", "val_at_far": {"far_target", "val", "val_std", "far"},
                    "eer", "tar_at_far": {"1e-3": x|null, "1e-4": x|null}, "failed_images", "notes",
                    "groups"?: {"threshold", "groups": {G: {...}}, "gap": {...}, "outside_groups"}}},
     "average_accuracy": mean over the sets}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.errors import FacegenError, InvalidArgumentError
from facegen.fr.pairs import PairSet, read_groups
from facegen.paths import DEFAULT_ACCESS, ModelAccess
from facegen.fr.protocol import VAL_FAR, best_threshold, flip_sum, group_figures, squared_l2, verify_distances

logger = logging.getLogger(__name__)

SCHEMA = 1
EVAL_JSON = "eval.json"
EVAL_MD = "eval.md"
PROTOCOL = ("flip-sum embeddings, L2-normalised; squared L2 distance; unshuffled folds (10, or as the set says), "
            "threshold 0..4 step 0.01 best on the other folds (insightface verification.py); EER and TAR@FAR "
            "from the ROC")
#: the distance given to a pair with an image where no face was found: never a match
FAILED_DISTANCE = 4.0


@dataclass
class EmbeddedImages:
    vectors: np.ndarray          # (N, D) protocol embeddings; rows of failed images are NaN
    failed: list[int]


def _crop_of(analyzer: Any, rgb: np.ndarray, aligned: bool) -> np.ndarray | None:
    """The encoder's aligned crop of an image: the image itself when it is already an aligned crop
    of the encoder's template, else detect (largest face) → align."""
    from facegen.faces.align import crop_template  # noqa: PLC0415
    from facegen.faces.detect import select_faces  # noqa: PLC0415

    spec = analyzer.spec
    if aligned and spec.template.startswith("arcface") and crop_template(spec.template).template is not None:
        if rgb.shape[:2] != (spec.crop_size, spec.crop_size):
            from PIL import Image  # noqa: PLC0415
            rgb = np.asarray(Image.fromarray(rgb).resize((spec.crop_size, spec.crop_size), Image.BICUBIC))
        return rgb
    faces = analyzer.detect(rgb)
    if not faces:
        return None
    return analyzer.align(rgb, select_faces(faces, "largest")[0]).crop


def embed_images(images: Sequence[str | bytes], analyzer: Any, aligned: bool = False, batch_size: int = 64,
                 progress: bool = False, label: str = "") -> EmbeddedImages:
    """Protocol embeddings (image + its mirror, summed, L2-normalised) of every image; an image
    that cannot be read or has no face is counted in ``failed`` (its row NaN)."""
    from facegen.errors import BadImageError, NoFaceError  # noqa: PLC0415
    from facegen.io.images import load_image  # noqa: PLC0415

    vectors: np.ndarray | None = None
    failed: list[int] = []
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        bar = tqdm(total=len(images), desc=f"embedding {label}".strip(), unit="img")
    dim = analyzer.spec.dim
    vectors = np.full((len(images), dim), np.nan, dtype=np.float64)
    for start in range(0, len(images), batch_size):
        idx, crops = [], []
        for i in range(start, min(start + batch_size, len(images))):
            try:
                crop = _crop_of(analyzer, load_image(images[i]), aligned)
            except (BadImageError, NoFaceError) as exc:
                logger.info("image %s skipped: %s", i, exc)
                crop = None
            if crop is None:
                failed.append(i)
                continue
            idx.append(i)
            crops.append(np.ascontiguousarray(crop))
        if crops:
            flipped = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
            out = np.asarray(analyzer.embedder.embed_crops(crops + flipped), dtype=np.float64)
            vectors[idx] = flip_sum(out[: len(crops)], out[len(crops):])
        if bar is not None:
            bar.update(min(batch_size, len(images) - start))
    if bar is not None:
        bar.close()
    return EmbeddedImages(vectors, failed)


def score_set(pairs: PairSet, emb: EmbeddedImages, groups: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
    """The protocol's figures of one pair set from its images' embeddings."""
    a, b = emb.vectors[pairs.left], emb.vectors[pairs.right]
    bad = np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)
    dist = np.where(bad, FAILED_DISTANCE, squared_l2(np.nan_to_num(a), np.nan_to_num(b)))
    result = verify_distances(dist, pairs.same, pairs.num_folds)
    row = result.as_dict()
    row["failed_images"] = len(emb.failed)
    row["failed_pairs"] = int(bad.sum())
    row["notes"] = list(pairs.notes)
    if emb.failed:
        row["notes"].append(f"{len(emb.failed)} image(s) unreadable or without a face: their "
                            f"{int(bad.sum())} pair(s) count as non-matches")
    if groups is not None and pairs.identities is not None:
        thr = best_threshold(dist, pairs.same)
        per_pair = [groups.get(x) if groups.get(x) is not None and groups.get(x) == groups.get(y) else None
                    for x, y in pairs.identities]
        row["groups"] = group_figures(dist, pairs.same, per_pair, thr)
    return row, result


def load_sets(bins: Sequence[str] = (), pairs_txt: str | None = None, images: str | None = None,
              pairs_from: str | None = None, seed: int = 0, pairs_per_fold: int = 600,
              aligned: bool = False) -> list[PairSet]:
    """Every pair set asked for, read and checked before any model runs (``aligned``: the images of
    --pairs/--pairs-from are already the encoder's aligned crops; a .bin's always are)."""
    from facegen.fr import pairs as P  # noqa: PLC0415

    sets: list[PairSet] = [P.from_bin(b) for b in bins]
    if (pairs_txt is None) != (images is None):
        raise InvalidArgumentError("--pairs and --images go together (LFW's pairs.txt and its image folder)")
    if pairs_txt is not None:
        sets.append(P.from_pairs_txt(pairs_txt, images))   # type: ignore[arg-type]
    if pairs_from is not None:
        sets.append(P.pairs_from_dir(pairs_from, seed=seed, pairs_per_fold=pairs_per_fold))
    for s in sets:
        s.aligned = s.aligned or aligned
    if not sets:
        raise InvalidArgumentError("nothing to score: give --bin FILE..., --pairs FILE --images DIR, or --pairs-from DIR")
    names = [s.name for s in sets]
    for k, s in enumerate(sets):                  # two sets of one name keep both
        if names.count(s.name) > 1:
            s.name = f"{s.name}-{k}"
    return sets


def evaluate(encoder: str, sets: Sequence[PairSet], out: str | Path | None = None, groups: str | None = None,
             batch_size: int = 64, progress: bool = False, plots: bool = True,
             access: ModelAccess = DEFAULT_ACCESS) -> dict[str, Any]:
    """Score ``encoder`` (a registered name or a trained run's folder) on ``sets``; write
    ``eval.json``, ``eval.md`` (and ``roc.png``) into ``out`` when given.  Every input is checked
    before anything is written."""
    from facegen.id.encoders import get_analyzer  # noqa: PLC0415
    from facegen.id.registry import get_encoder_spec  # noqa: PLC0415

    spec = get_encoder_spec(encoder)
    group_map = None
    if groups is not None:
        with_ids = [s for s in sets if s.identities is not None]
        if not with_ids:
            raise InvalidArgumentError("--groups needs pairs with identities (--pairs or --pairs-from); a .bin "
                                       "names no identities")
        known = {x for s in with_ids for pair in s.identities for x in pair}   # type: ignore[union-attr]
        group_map = read_groups(groups, known)
    if out is not None:
        o = Path(out)
        if o.exists() and not o.is_dir():
            raise InvalidArgumentError(f"{o} exists and is not a folder")
    analyzer = get_analyzer(spec.name, access)
    report: dict[str, Any] = {"schema": SCHEMA, "encoder": spec.name, "network": spec.network, "protocol": PROTOCOL,
                              "val_far": VAL_FAR, "sets": {}}
    rocs: dict[str, Any] = {}
    for s in sets:
        emb = embed_images(s.images, analyzer, aligned=s.aligned, batch_size=batch_size, progress=progress,
                           label=s.name)
        row, result = score_set(s, emb, group_map)
        report["sets"][s.name] = row
        rocs[s.name] = result.roc
    accs = [r["accuracy"] for r in report["sets"].values()]
    report["average_accuracy"] = float(np.mean(accs))
    if out is not None:
        write_eval(Path(out), report, rocs if plots else None)
        if spec.path:
            note_on_dataset_card(Path(spec.path), report)
    return report


def markdown(report: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    lines = [f"# Face verification: {report['encoder']}", "", f"Network: {report['network']}.", "",
             f"Protocol: {report['protocol']}.", "",
             "| set | pairs | folds | accuracy % | ± std | VAL@FAR 1e-3 % | EER % | TAR@FAR 1e-3 % | TAR@FAR 1e-4 % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["sets"].items():
        lines.append(f"| {name} | {r['pairs']} | {r['folds']} | {pct(r['accuracy'])} | {pct(r['accuracy_std'])} | "
                     f"{pct(r['val_at_far']['val'])} | {pct(r['eer'])} | {pct(r['tar_at_far'].get('1e-3'))} | "
                     f"{pct(r['tar_at_far'].get('1e-4'))} |")
    lines += ["", f"Average accuracy over the sets: {pct(report['average_accuracy'])} %.", ""]
    for name, r in report["sets"].items():
        for note in r["notes"]:
            lines.append(f"- {name}: {note}")
        if any(v is None for v in r["tar_at_far"].values()):
            lines.append(f"- {name}: {r['impostor']} impostor pairs cannot measure a TAR at a FAR below "
                         f"1/{r['impostor']} (n/a)")
        g = r.get("groups")
        if g:
            lines += ["", f"### {name}: by group (one global threshold, squared L2 < {g['threshold']:.2f})", "",
                      "| group | pairs | accuracy % | FNMR % | FMR % |", "|---|---:|---:|---:|---:|"]
            for gname, gr in g["groups"].items():
                lines.append(f"| {gname} | {gr['pairs']} | {pct(gr['accuracy'])} | {pct(gr['fnmr'])} | {pct(gr['fmr'])} |")
            gap = g["gap"]
            lines += ["", f"Gap between groups: accuracy {pct(gap['accuracy'])}, FNMR {pct(gap['fnmr'])}, "
                          f"FMR {pct(gap['fmr'])} points; {g['outside_groups']} cross-group or ungrouped pairs "
                          "left out.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_eval(out: Path, report: dict[str, Any], rocs: dict[str, Any] | None) -> None:
    from facegen.io.atomic import atomic_write_bytes  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    if rocs:
        try:
            plot_roc(rocs, out / "roc.png")
        except FacegenError as exc:          # matplotlib absent: the figures still stand
            logger.warning("no ROC plot: %s", exc)
    atomic_write_bytes(out / EVAL_MD, markdown(report).encode("utf-8"))
    atomic_write_bytes(out / EVAL_JSON, (json.dumps(report, indent=2) + "\n").encode("utf-8"))


def plot_roc(rocs: dict[str, Any], path: Path) -> None:
    from facegen.dataset.report_plots import pyplot  # noqa: PLC0415
    from facegen.io.atomic import atomic_write  # noqa: PLC0415

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for name, roc in rocs.items():
        fpr = np.maximum(np.asarray(roc["fpr"]), 1e-6)
        ax.plot(fpr, roc["tpr"], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)


def note_on_dataset_card(run: Path, report: dict[str, Any]) -> None:
    """When the run was trained on a facegen dataset, the figures go in that dataset's card
    (a "Trained model" section, replaced on each evaluation)."""
    from facegen.fr.card import add_trained_model_section  # noqa: PLC0415

    add_trained_model_section(run, report)
