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
:mod:`~facegen.dataset.report_metrics` computes the figures; this module builds, writes and
renders the report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from facegen.errors import InvalidArgumentError
from facegen.dataset.report_analysis import ImageAnalyzer, Measurements, analyse, check_reference, default_workers, load_reference
from facegen.dataset.report_metrics import _r, compute_metrics, verification
from facegen.io.atomic import atomic_write_bytes
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
    _encoder_spec,
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


def choose_report_encoder(source: DatasetSource, encoder: str | None, models_dir: str | None,
                          accept_license: bool) -> str:
    """The judge: ``encoder`` if given, else an installed encoder independent of the one that
    conditioned a facegen dataset's generation."""
    if encoder:
        _encoder_spec(encoder)                       # unknown name: one-line error
        return encoder
    from facegen.metrics import choose_judge

    exclude = source.spec.conditioning_encoder() if source.spec is not None else None
    return choose_judge(exclude=exclude, models_dir=models_dir, accept_license=accept_license)


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
                 plots: bool = True, card: bool = True, models_dir: str | None = None,
                 accept_license: bool = False) -> Report:
    """Measure the dataset in ``root`` and write ``report.json``, ``report.md``, the plots and
    ``images.jsonl`` into ``out`` (default ``root/report``); refresh a facegen dataset's card."""
    from facegen import __version__

    t0 = time.perf_counter()
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise InvalidArgumentError(f"workers must be >= 1, got {workers}")
    source = open_dataset(root)
    judge = choose_report_encoder(source, encoder, models_dir, accept_license)
    spec = _encoder_spec(judge)
    analyzer = ImageAnalyzer(judge, models_dir, accept_license)
    from facegen.id.encoders import get_analyzer

    get_analyzer(judge, models_dir, accept_license=accept_license)  # fail now (weights, licence), not in a worker
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
    out_dir = Path(out) if out is not None else source.root / REPORT_DIR
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "facegen_version": __version__,
        "dataset": {"path": str(source.root), "kind": source.kind, "format": source.format},
        **data,
        "judge_independent": None if conditioning is None else conditioning != judge,
        "conditioning_encoder": conditioning,
        "facegen": fg,
        "warnings": warnings,
        "plots": [],
        "timing": {"seconds": None, "measure_seconds": _r(measure_seconds, 3),
                   "images_per_second": _r(len(source) / measure_seconds, 3) if measure_seconds > 0 else None,
                   "workers": n_workers, "batch_size": batch_size},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        from facegen.dataset.report_plots import make_plots

        report["plots"] = make_plots(report, series, out_dir)
    report["timing"]["seconds"] = _r(time.perf_counter() - t0, 3)
    md = render_markdown(report)
    atomic_write_bytes(out_dir / REPORT_JSON, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode())
    atomic_write_bytes(out_dir / REPORT_MD, md.encode("utf-8"))
    atomic_write_bytes(out_dir / IMAGES_JSONL, _images_jsonl(source, m))
    if card and source.kind == "facegen":
        from facegen.dataset.card import write_dataset_card

        write_dataset_card(source.root, report=report, report_dir=out_dir)
    for w in warnings:
        logger.warning("%s", w)
    return Report(report, out_dir, md)


def _images_jsonl(source: DatasetSource, m: Measurements) -> bytes:
    lines = []
    found = m.found
    for i, name in enumerate(source.names):
        rec: dict[str, Any] = {"image": name, "identity": source.identities[int(source.labels[i])],
                               "face": bool(found[i])}
        if i in m.errors:
            rec["error"] = m.errors[i]
        if found[i]:
            rec.update(yaw=_r(m.pose[i, 0], 2), pitch=_r(m.pose[i, 1], 2), roll=_r(m.pose[i, 2], 2),
                       brightness=_r(m.brightness[i], 2), sharpness=_r(m.sharpness[i], 2))
        lines.append(json.dumps(rec, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------------- Markdown
def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _stat(s: dict[str, Any], nd: int = 3) -> str:
    if not s.get("count"):
        return "n/a (no pairs)"
    return f"{_f(s['mean'], nd)} ± {_f(s['std'], nd)} (p05 {_f(s['p05'], nd)}, p95 {_f(s['p95'], nd)}; n={s['count']})"


def metric_label(metric: str, threshold: float) -> str:
    return f"cosine ≥ {threshold:g}" if metric == "cosine" else f"1 − Euclidean ≥ {threshold:g}"


def headline(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's main figures as (measure, value) rows (the Markdown table, the card)."""
    r = report
    thr = r["threshold"]
    ipi = r["images_per_identity"]
    sep = r["separability"]
    var = r["variation"]
    ver = r["verification"]
    readable = r["images"] - r["unreadable"]["count"]
    rate = r["face_found_rate"]
    rows = [
        ("identities / images", f"{r['identities']} / {r['images']}"),
        ("faces found", f"{r['faces_found']} of {readable} readable images"
                        + (f" ({100 * rate:.1f} %)" if rate is not None else "")),
        ("images per identity", f"{_f(ipi['mean'], 1)} ± {_f(ipi['std'], 1)} (min {ipi['min']}, max {ipi['max']})"),
        ("genuine similarity", _stat(r["genuine"])),
        ("impostor similarity", _stat(r["impostor"]) + (" (sampled)" if r["impostor"].get("sampled") else "")),
        (f"verification accuracy at {thr:g} (balanced)",
         "n/a" if ver["accuracy"] is None else f"{ver['accuracy']:.3f} (EER {ver['eer']:.3f})"),
        ("nearest other identity (centroids)", f"mean {_f(sep['nearest_other_mean'])}"),
        (f"identity pairs too close (≥ {thr:g})", f"{sep['too_close_pairs']}"
         + (f" ({100 * sep['too_close_fraction']:.1f} % of identities)" if sep["too_close_fraction"] is not None else "")),
        (f"unique identities (nearest other < {thr:g})",
         "n/a" if sep["unique_identities"] is None else f"{sep['unique_identities']} of {sep['identities_with_faces']}"),
        (f"unique identities, Vec2Face rule (no other with cosine > {VEC2FACE_MAX_COSINE:g}"
         + (", centred" if sep["vec2face_rule"]["centred"] else "") + ")",
         "n/a" if sep["vec2face_unique_identities"] is None
         else f"{sep['vec2face_unique_identities']} of {sep['identities_with_faces']}"),
        ("pose spread within identities (yaw / pitch / roll std)",
         "n/a" if var["yaw_std"] is None
         else f"{var['yaw_std']:.1f}° / {var['pitch_std']:.1f}° / {var['roll_std']:.1f}°"),
        ("brightness / sharpness spread within identities",
         f"{_f(var['brightness_std'], 1)} / {_f(var['sharpness_std'], 1)}"),
        ("genuine similarity spread within identities", _f(var["genuine_std"])),
        ("near-duplicates within an identity", str(r["duplicates"]["count"])),
    ]
    lk = r["leakage"]
    if lk is None:
        rows.append(("leakage vs real people", "not checked (no --reference)"))
    else:
        flagged = lk["flagged"]
        rows.append((f"leakage vs {lk['reference_count']} real people (≥ {thr:g})",
                     f"{len(flagged)} identities flagged" + (f": {', '.join(flagged[:10])}" if flagged else "")
                     + (" ..." if len(flagged) > 10 else "")))
    if r["unreadable"]["count"]:
        rows.append(("unreadable images", str(r["unreadable"]["count"])))
    fg = r.get("facegen")
    if fg:
        reasons = ", ".join(f"{k} {v}" for k, v in fg["rejected_by_reason"].items() if v) or "none"
        rows.append(("rejected during generation", f"{fg['rejected']} ({reasons}); {fg['dropped']} dropped"))
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    r = report
    name = Path(r["dataset"]["path"]).name or r["dataset"]["path"]
    judge = f"{r['encoder']} ({metric_label(r['metric'], r['threshold'])} = same person)"
    indep = {True: "independent of the generator's encoder", False: "NOT independent of the generator's encoder",
             None: "not a facegen dataset: the generator's encoder is unknown"}[r["judge_independent"]]
    lines = [f"# Dataset report: {name}", "",
             f"{r['dataset']['kind']} dataset ({r['dataset']['format']}) · judge {judge} · {indep}", ""]
    if r["warnings"]:
        lines += [f"> **Note:** {w}" for w in r["warnings"]] + [""]
    lines += ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in headline(r)]
    lines.append("")
    if r["plots"]:
        lines += ["## Figures", ""] + [f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in r["plots"]] + [""]
    sep = r["separability"]
    if sep["identities_too_close"]:
        lines += [f"## Identities closer than the same-person threshold ({sep['too_close_pairs']} pairs)", "",
                  "| identity | identity | similarity |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {s:.3f} |" for a, b, s in sep["identities_too_close"][:50]] + [""]
    lk = r["leakage"]
    if lk is not None:
        lines += [f"## Leakage against {lk['reference_count']} real people ({lk['reference']})", ""]
        if lk["nearest"]:
            lines += ["| identity | nearest real person | similarity | flagged |", "|---|---|---|---|"]
            ranked = sorted(lk["nearest"].items(), key=lambda kv: -(kv[1]["similarity"] or -9))
            lines += [f"| {k} | {v['reference']} | {v['similarity']:.3f} | {'yes' if k in lk['flagged'] else ''} |"
                      for k, v in ranked[:50]] + [""]
        else:
            lines += ["No identity has a face to compare.", ""]
    dup = r["duplicates"]
    if dup["pairs"]:
        lines += [f"## Near-duplicates ({dup['count']})", "", "| identity | image | image | hash distance | similarity |",
                  "|---|---|---|---|---|"]
        lines += [f"| {i} | {a} | {b} | {h} | {_f(s)} |" for i, a, b, h, s in dup["pairs"][:50]] + [""]
    if r["unreadable"]["count"]:
        lines += [f"## Unreadable images ({r['unreadable']['count']})", ""]
        lines += [f"- `{f}`: {e}" for f, e in r["unreadable"]["files"][:50]] + [""]
    fg = r.get("facegen")
    if fg:
        lines += ["## Generation (facegen)", "",
                  f"model `{fg['model']}`, seed {fg['seed']}, fingerprint `{fg['fingerprint']}`; "
                  f"{fg['accepted']}/{fg['expected']} images written from {fg['generated']} generated; "
                  f"filters {'on (judge ' + str(fg['filter_encoder']) + ')' if fg['filters'] else 'off'}; "
                  f"rejected: {json.dumps(fg['rejected_by_reason'])}, dropped {fg['dropped']}.", ""]
    t = r["timing"]
    lines += [f"Measured in {_f(t['seconds'], 1)} s ({_f(t['images_per_second'], 2)} images/s, {t['workers']} "
              f"worker(s)) by facegen {r['facegen_version']}. Figures: `report.json`; per image: `images.jsonl`.", ""]
    return "\n".join(lines)
