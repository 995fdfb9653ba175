"""``facegen dataset-report``: what a face-recognition dataset is worth, measured by a judge.

Reads a facegen dataset (WebDataset shards or ImageFolder, with its manifest and spec) or any
ImageFolder face dataset (``DIR/<identity>/<image>``: other generators' releases, real sets),
streams its images in batches through an ID encoder (the *judge*, independent of the
generator's encoder: :func:`facegen.metrics.choose_judge`) in worker processes, and measures:

- **faces**: the face found rate; images per identity (balance); unreadable images (counted
  and listed, never fatal);
- **verification**: genuine similarities (all pairs of one identity's images, sampled past
  :data:`MAX_GENUINE_PAIRS_PER_IDENTITY`) and impostor similarities (pairs across identities,
  all of them or a seeded sample of ``max_impostor_pairs``); the accuracy at the judge's
  same-person threshold is *balanced*, ``(true-accept rate + true-reject rate) / 2``, so the
  many impostor pairs do not swamp it (LFW-style protocols use equal numbers); the EER;
- **separability**: each identity's nearest other identity by centroid similarity; the pairs
  of identities closer than the same-person threshold; ``unique_identities`` (no other
  centroid at or above that threshold) and Vec2Face's count (no other centroid with cosine
  above 0.4; for dlib, whose vectors are not centred, on centroids centred at their mean);
- **variation** within identities: the spread (standard deviation, averaged over identities)
  of head pose (:mod:`facegen.faces.headpose`), of brightness and sharpness of the aligned
  112 px face crop, and of the genuine similarities; near-duplicates within an identity
  (average hash within ``dedup_hash_distance`` bits, or judge similarity >= ``dedup_similarity``,
  the dataset filters' rules);
- **leakage** against ``reference`` (real people's embeddings, or a folder of their photos):
  each identity's nearest real person and similarity, and the identities at or above the
  same-person threshold;
- for facegen datasets, the rejection counts of the run and the spec's settings.

Similarities are in the judge's own metric (``facegen.id.encoders.similarity``): cosine for
ArcFace networks, ``1 - Euclidean distance`` for the dlib descriptor.  Centroids are means of
unit vectors (cosine) or of raw vectors (Euclidean).

Outputs (``out``, default ``DIR/report``): ``report.json`` (the schema in the README; a
contract for scripts), ``report.md``, PNG plots (:mod:`facegen.dataset.report_plots`) and
``images.jsonl`` (one line per image: identity, face found, pose, brightness, sharpness,
error).  A facegen dataset's card (``DIR/README.md``) is refreshed with the figures.

The pieces: :mod:`~facegen.dataset.report_source` reads datasets,
:mod:`~facegen.dataset.report_analysis` measures each image (and the reference),
:mod:`~facegen.dataset.report_metrics` computes the figures, :mod:`~facegen.dataset.report_render`
puts them in words; this module builds and writes
the report.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from facegen.errors import InvalidArgumentError
from facegen.dataset.report_analysis import ImageAnalyzer, Measurements, analyse, check_reference, default_workers, load_reference
from facegen.dataset.report_metrics import round_or_none, compute_metrics, verification
from facegen.dataset.report_render import render_markdown
from facegen.io.atomic import atomic_write_bytes
from facegen.paths import DEFAULT_ACCESS, ModelAccess
from facegen.dataset.report_source import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IMPOSTOR_PAIRS,
    IMAGES_JSONL,
    REPORT_DIR,
    REPORT_JSON,
    REPORT_MD,
    SCHEMA_VERSION,
    VEC2FACE_MAX_COSINE,
    DatasetSource,
    encoder_spec_of,
    open_dataset,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the report
def _facegen_section(source: DatasetSource) -> dict[str, Any] | None:
    if source.kind != "facegen":
        return None
    from facegen.dataset.stats import dataset_stats

    summary = dataset_stats(source.root)
    spec = source.spec
    return {"model": spec.model, "fingerprint": summary.fingerprint, "seed": spec.seed, "format": spec.format,
            "num_ids": spec.num_ids, "images_per_id": spec.images_per_id, "expected": summary.expected,
            "accepted": summary.accepted, "generated": summary.generated, "rejected": summary.rejected,
            "rejected_by_reason": dict(sorted(summary.rejected_by_reason.items())), "dropped": summary.dropped,
            "filters": spec.filters, "filter_encoder": spec.filter_encoder,
            "conditioning_encoder": spec.conditioning_encoder(),
            "spec": {k: v for k, v in spec.to_dict().items()
                     if k not in ("out", "models_dir", "accept_license", "engine", "workers", "batch_size")}}


def choose_report_encoder(source: DatasetSource, encoder: str | None, access: ModelAccess) -> str:
    """The judge: ``encoder`` if given, else an installed encoder independent of the one that
    conditioned a facegen dataset's generation."""
    if encoder:
        encoder_spec_of(encoder)                       # unknown name: one-line error
        return encoder
    from facegen.metrics import choose_judge

    exclude = source.spec.conditioning_encoder() if source.spec is not None else None
    return choose_judge(exclude=exclude, access=access)


@dataclass
class Report:
    data: dict[str, Any]
    out: Path
    markdown: str

    @property
    def json_path(self) -> Path:
        return self.out / REPORT_JSON

    @property
    def md_path(self) -> Path:
        return self.out / REPORT_MD


def build_report(root: str | Path, reference: str | Path | None = None, encoder: str | None = None,
                 out: str | Path | None = None, workers: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_impostor_pairs: int = DEFAULT_MAX_IMPOSTOR_PAIRS, seed: int = 0, progress: bool = True,
                 plots: bool = True, card: bool = True, access: ModelAccess = DEFAULT_ACCESS,
                 overwrite: bool = False) -> Report:
    """Measure the dataset in ``root`` and write ``report.json``, ``report.md``, the plots and
    ``images.jsonl`` into ``out`` (default ``root/report``, refreshed each run); refresh a facegen
    dataset's card. An ``out`` given that already holds files needs ``overwrite``; an ``out``
    inside the dataset (other than its ``report`` folder) is refused."""
    from facegen import __version__

    t0 = time.perf_counter()
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise InvalidArgumentError(f"workers must be >= 1, got {workers}")
    source = open_dataset(root)
    store = None if isinstance(source.root, Path) else source.root   # a store location: publish there
    if store is not None and out is None:
        out_dir = Path(tempfile.mkdtemp(prefix="facegen-report-"))          # then copied to <url>/report/
    else:
        out_dir = check_report_folder(source.root, out, overwrite)
    judge = choose_report_encoder(source, encoder, access)
    spec = encoder_spec_of(judge)
    analyzer = ImageAnalyzer(judge, access)
    from facegen.id.encoders import get_analyzer

    get_analyzer(judge, access)  # fail now (weights, licence), not in a worker
    n_workers = workers or default_workers(len(source), batch_size)
    warnings = list(source.warnings)
    ref = None
    if reference is not None:
        ref = load_reference(reference, analyzer, workers=1, batch_size=batch_size, progress=False)
        check_reference(ref, judge, spec.dim)
        warnings.extend(ref.warnings)
    logger.info("report on %s: %d images, %d identities, judge %s, %d worker(s)", source.root, len(source),
                len(source.identities), judge, n_workers)
    t_measure = time.perf_counter()
    m = analyse(source.iter_items(), len(source), analyzer, spec.dim, workers=n_workers, batch_size=batch_size,
                progress=progress)
    measure_seconds = time.perf_counter() - t_measure
    dedup = {}
    if source.spec is not None:
        dedup = {"dedup_hash_distance": source.spec.dedup_hash_distance,
                 "dedup_similarity": source.spec.dedup_similarity}
    data = compute_metrics(source, m, judge, ref, max_impostor_pairs=max_impostor_pairs, seed=seed, **dedup)
    series = data.pop("_series")
    fg = _facegen_section(source)
    conditioning = fg["conditioning_encoder"] if fg else None
    if conditioning is not None and conditioning == judge:
        warnings.append(f"the judge '{judge}' is the encoder that conditioned this dataset's generation: the "
                        "figures grade the generator on its own exam")
    if data["faces_found"] == 0:
        tiny = " (a tiny preset draws noise, not faces)" if source.spec is not None and source.spec.is_tiny() else ""
        warnings.append(f"no face found in any of the {data['images']} images{tiny}: similarity, separability, "
                        "pose and leakage figures need faces")
    elif data["face_found_rate"] is not None and data["face_found_rate"] < 1.0:
        missing = int(m.readable.sum()) - data["faces_found"]
        warnings.append(f"faces not found in {missing} of {int(m.readable.sum())} readable images")
    if data["unreadable"]["count"]:
        warnings.append(f"{data['unreadable']['count']} unreadable image(s) counted and left out "
                        "(listed under unreadable)")
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "facegen_version": __version__,
        "dataset": {"path": str(source.root), "kind": source.kind, "format": source.format},
        **data,
        "judge_independent": None if conditioning is None else conditioning != judge,
        "conditioning_encoder": conditioning,
        "facegen": fg,
        "warnings": warnings,
        "plots": [],
        "timing": {"seconds": None, "measure_seconds": round_or_none(measure_seconds, 3),
                   "images_per_second": round_or_none(len(source) / measure_seconds, 3) if measure_seconds > 0 else None,
                   "workers": n_workers, "batch_size": batch_size},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        from facegen.dataset.report_plots import make_plots

        report["plots"] = make_plots(report, series, out_dir)
    report["timing"]["seconds"] = round_or_none(time.perf_counter() - t0, 3)
    md = render_markdown(report)
    atomic_write_bytes(out_dir / REPORT_JSON, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(out_dir / REPORT_MD, md.encode("utf-8"))
    atomic_write_bytes(out_dir / IMAGES_JSONL, _images_jsonl(source, m))
    if store is not None and out is None:
        for f in sorted(p for p in out_dir.rglob("*") if p.is_file()):
            store.publish_file(f"{REPORT_DIR}/{f.relative_to(out_dir).as_posix()}", f)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir = Path(REPORT_DIR)
    if card and source.kind == "facegen":
        from facegen.dataset.card import write_dataset_card

        write_dataset_card(source.root, report=report,
                           report_dir=None if store is not None and out is None else out_dir)
    for w in warnings:
        logger.warning("%s", w)
    return Report(report, out_dir, md)


def check_report_folder(root: Any, out: str | Path | None, overwrite: bool) -> Path:
    """The report folder: ``root/report`` by default (the report's own, refreshed each run); a
    folder given with ``out`` must be outside the dataset (inside, the next report would read it
    as an identity, or drop one) and empty or new unless ``overwrite``."""
    own = root / REPORT_DIR if isinstance(root, Path) else None   # a store's: published to <url>/report/
    if out is None:
        assert own is not None, "a dataset on a store has its report written locally, then published"
        return own
    out_dir = Path(out)
    resolved = out_dir.resolve()
    if own is not None and resolved != own.resolve():
        base = root.resolve()
        if resolved == base or base in resolved.parents:
            raise InvalidArgumentError(f"--out {out} is inside the dataset {root}: write the report outside it "
                                       f"(or leave --out out: {own})")
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(f"--out {out} is a file, not a folder")
    if (own is None or resolved != own.resolve()) and out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InvalidArgumentError(f"--out {out} already holds files: give --overwrite to replace its report "
                                   "files, or name a new folder")
    return out_dir


def _images_jsonl(source: DatasetSource, m: Measurements) -> bytes:
    lines = []
    found = m.found
    for i, name in enumerate(source.names):
        rec: dict[str, Any] = {"image": name, "identity": source.identities[int(source.labels[i])],
                               "face": bool(found[i])}
        if i in m.errors:
            rec["error"] = m.errors[i]
        if found[i]:
            rec.update(yaw=round_or_none(m.pose[i, 0], 2), pitch=round_or_none(m.pose[i, 1], 2), roll=round_or_none(m.pose[i, 2], 2),
                       brightness=round_or_none(m.brightness[i], 2), sharpness=round_or_none(m.sharpness[i], 2))
        lines.append(json.dumps(rec, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")
