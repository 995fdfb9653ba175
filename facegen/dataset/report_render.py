"""The dataset report in words: its headline figures (the report's table and the dataset card read
them) and its Markdown page (:func:`render_markdown`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facegen.dataset.report_source import VEC2FACE_MAX_COSINE


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
