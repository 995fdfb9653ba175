"""The dataset card: ``README.md`` in the Hugging Face dataset-card format, for every dataset.

A YAML header (between ``---`` lines: licence inherited from the weights that made the
images, task categories, size category, tags, the ``configs`` that let ``datasets.load_dataset``
read the shards or the ImageFolder) and a datasheet: generator and preset, seeds, identity
sampling and variation, filters and rejection counts, the leakage check, the report's headline
figures (when ``facegen dataset-report`` has run; it refreshes the card), intended use,
limitations and provenance.  ``facegen dataset`` writes it at the end of every run; like
every other file of the dataset it depends on the spec only (not on the folder, engine,
workers or batch size), so a resumed or re-engined run writes the same card.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from facegen.dataset import writers as W
from facegen.errors import FacegenError, InvalidArgumentError
from facegen.io.files import parse_json
from facegen.io.storage import Location
from facegen.io.location import LocalLocation, open_location

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
TASK_CATEGORIES = ("image-classification", "image-feature-extraction")
TAGS = ("synthetic", "ai-generated", "faces", "face-recognition", "facegen")
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` value for ``n`` samples."""
    for limit, name in _SIZES:
        if n < limit:
            return name
    return "n>1B"


def _preset(name: str):
    from facegen.models.registry import find_preset

    return find_preset(name)


def licence_of(model: str) -> tuple[str, str | None, str]:
    """(Hub licence id, licence name for ``other``, the licence text) inherited from the
    weights of ``model``: a tiny preset's random weights are Apache-2.0; the real presets
    combine several licences, some non-commercial, so they are ``other``."""
    preset = _preset(model)
    if preset is None:
        return "other", f"facegen-{model}", f"unknown: '{model}' is not a registered facegen preset"
    if preset.tiny:
        return "apache-2.0", None, preset.licence
    return "other", f"facegen-{preset.name}-weights", preset.licence


def _report_for(root: Location, fingerprint: str, report_dir: Path | None) -> dict[str, Any] | None:
    from facegen.dataset.report_source import REPORT_DIR, REPORT_JSON

    try:
        if report_dir is not None:
            path = report_dir / REPORT_JSON
            if not path.is_file():
                return None
            report = json.loads(path.read_text(encoding="utf-8"))
        else:
            if not root.exists(f"{REPORT_DIR}/{REPORT_JSON}"):
                return None
            report = json.loads(root.read_bytes(f"{REPORT_DIR}/{REPORT_JSON}"))
    except (OSError, ValueError, FacegenError):
        return None
    fg = report.get("facegen") or {}
    return report if fg.get("fingerprint") == fingerprint else None   # a report of another dataset


TRAINED_MODEL_FILE = "trained_model.json"


def trained_model_lines(root: Location, fingerprint: str) -> list[str]:
    """The "Trained model" section: what ``facegen fr-eval`` measured of a network trained on
    this dataset (``root/trained_model.json``, written by :mod:`facegen.fr.card`)."""
    try:
        rec = (parse_json(root.read_bytes(TRAINED_MODEL_FILE), name=root.child(TRAINED_MODEL_FILE))
               if root.exists(TRAINED_MODEL_FILE) else None)
    except (OSError, FacegenError):
        rec = None
    if not isinstance(rec, dict) or rec.get("fingerprint") != fingerprint or not isinstance(rec.get("sets"), dict):
        return []
    lines = ["## Trained model", "",
             f"A face-recognition network trained on this dataset (`facegen fr-train`, {rec.get('arch')}, "
             f"{rec.get('steps')} steps) and scored by `facegen fr-eval` (k-fold verification accuracy, mean ± std):", "",
             "| set | pairs | accuracy % | TAR@FAR 1e-3 % |", "|---|---:|---:|---:|"]
    for name, r in rec["sets"].items():
        tar = (r.get("tar_at_far") or {}).get("1e-3")
        lines.append(f"| {name} | {r.get('pairs')} | {100 * float(r.get('accuracy', 0)):.2f} ± "
                     f"{100 * float(r.get('accuracy_std', 0)):.2f} | {'n/a' if tar is None else f'{100 * tar:.2f}'} |")
    lines.append("")
    return lines


def dataset_card(root: str | Path, spec: Any = None, summary: Any = None, report: dict[str, Any] | None = None,
                 report_dir: str | Path | None = None) -> str:
    """The card's text for the facegen dataset in ``root`` (spec and summary read from the
    folder when not given; the report from ``report_dir``/``root/report`` when it is this
    dataset's)."""
    from facegen import __version__
    from facegen.dataset.spec import DatasetSpec
    from facegen.dataset.stats import SPEC_FILE, dataset_stats, spec_file_of

    root = open_location(root)
    spec_file = spec_file_of(root)
    if spec is None:
        if spec_file is None:
            raise InvalidArgumentError(f"{root} is not a facegen dataset (no {SPEC_FILE})")
        spec = DatasetSpec.from_yaml(spec_file, out=root.url)
    if summary is None:
        summary = dataset_stats(root)
    rdir = Path(report_dir) if report_dir is not None else None
    if report is None:
        report = _report_for(root, summary.fingerprint, rdir)
    licence, licence_name, licence_text = licence_of(spec.model)
    preset = _preset(spec.model)
    data_path = "shards/*.tar" if spec.format == "webdataset" else f"{W.IMAGES_DIR}/**/*.png"
    header: dict[str, Any] = {"license": licence}
    if licence_name:
        header["license_name"] = licence_name
    header.update({
        "pretty_name": f"facegen synthetic faces ({spec.model}, {summary.num_ids} identities)",
        "task_categories": list(TASK_CATEGORIES),
        "tags": list(TAGS),
        "size_categories": [size_category(summary.accepted)],
        "annotations_creators": ["machine-generated"],
        "source_datasets": ["original"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}],
    })
    yaml_text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, default_flow_style=False)

    def q(v: Any) -> str:
        return f"`{v}`"

    tiny = bool(preset is not None and preset.tiny)
    lines = ["---", yaml_text.rstrip(), "---", "",
             f"# facegen synthetic faces ({spec.model}, {summary.num_ids} identities)", "",
             f"{summary.accepted} AI-generated face images of {summary.num_ids} synthetic identities "
             f"({spec.images_per_id} images each requested), made by facegen {__version__} with the preset "
             f"{q(spec.model)}. No image shows a real person by design; see the leakage check below."
             + (" **The tiny preset has random weights: its images are noise, not faces (for tests and demos).**"
                if tiny else ""), ""]

    lines += ["## Dataset structure", ""]
    if spec.format == "webdataset":
        lines += [f"WebDataset shards `shards/shard-NNNNNN.tar` ({summary.shards} shard(s) of up to "
                  f"{spec.shard_size} identities): per sample `<key>.png` (the image) and `<key>.json` (its record)"
                  + (", `<key>.crop112.png` (112×112 ArcFace-aligned crop)" if spec.crops else "")
                  + "; the key is `<identity:06d>_<index:03d>`."]
    else:
        lines += ["ImageFolder: `images/<identity:06d>/<index:03d>.png`, one folder per identity (the label)"
                  + (", crops in `crops112/`" if spec.crops else "") + "."]
    lines += ["`manifest.jsonl` has one record per image: identity, index, seed, attempt, noise level, prompt, pose, "
              "the sha256 of its conditioning embedding and of its identity vector, the filter scores. "
              "`spec.yaml` is the full recipe; `identities.npy` the identity vectors.", ""]

    lines += ["## Generation", ""]
    if preset is not None:
        lines.append(f"- generator: {preset.description} (family `{preset.family}`, base `{preset.base}`), "
                     f"conditioned on `{preset.encoder}` embeddings ({spec.embedding_dim}-D)")
    else:
        lines.append(f"- generator: `{spec.model}` (not a registered preset)")
    lines += [
        f"- seeds: run seed {spec.seed}; every image's seed and perturbed embedding derive from (run seed, identity, "
        "index, attempt), so the dataset regenerates bit for bit on the CPU under the numerics named in "
        "Provenance (and only there)",
        f"- identities: {spec.num_ids} unit vectors with pairwise cosine ≤ {spec.max_cosine}"
        + (f", drawn from a PCA Gaussian prior fitted to `{Path(spec.prior).name}`" if spec.prior else
           ", isotropic Gaussian"),
        f"- variation: Vec2Face-style noise levels {list(spec.noise_levels)} on shares {list(spec.noise_shares)}"
        + (f"; {len(spec.prompts)} prompts" if spec.prompts else "")
        + (f"; {len(spec.poses)} poses" if spec.poses else ""),
    ]
    if spec.generator:
        lines.append(f"- generator options: {json.dumps(spec.generator, sort_keys=True)}")
    lines.append("")

    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.rejected_by_reason.items()) if v) or "none"
    lines += ["## Filters and rejections", ""]
    if spec.filters:
        thr = spec.min_id_similarity if spec.min_id_similarity is not None else "its registry threshold"
        indep = ("independent of the conditioning encoder" if spec.filter_encoder != spec.conditioning_encoder()
                 else "NOT independent: the conditioning encoder itself")
        lines.append(f"- face found and ID consistency judged by `{spec.filter_encoder}` ({indep}), minimum "
                     f"similarity {thr}")
    else:
        lines.append("- face and ID-consistency filters: off" + (" (a tiny preset cannot draw faces)" if tiny else ""))
    lines += [f"- near-duplicates: {'on' if spec.dedup else 'off'} (average hash ≤ {spec.dedup_hash_distance} bits "
              f"or similarity ≥ {spec.dedup_similarity})"
              + (f"; minimum sharpness {spec.min_quality}" if spec.min_quality is not None else ""),
              f"- {summary.generated} images generated, {summary.accepted} kept; {summary.rejected} rejections "
              f"({reasons}), each regenerated with the next attempt's seed; {summary.dropped} images dropped "
              f"after {spec.max_attempts} attempts", ""]

    lines += ["## Leakage check", ""]
    if spec.reject_near:
        lines.append(f"- at sampling: identity vectors kept below cosine {spec.leakage_threshold} of the real "
                     f"embeddings in `{Path(spec.reject_near).name}` (conditioning space)")
    else:
        lines.append("- at sampling: none (no `--reject-near` file of real embeddings was given)")
    lk = report.get("leakage") if report else None
    if lk:
        flagged = lk["flagged"]
        lines.append(f"- report: identities compared with {lk['reference_count']} real people by `{report['encoder']}`: "
                     f"{len(flagged)} at or above the same-person threshold {report['threshold']:g}"
                     + (f" ({', '.join(flagged[:20])})" if flagged else ""))
    else:
        lines.append("- report: not checked against real people yet "
                     "(`facegen dataset-report DIR --reference real.npz|real_photos/`)")
    lines.append("")

    lines += ["## Quality report", ""]
    if report:
        import os

        from facegen.dataset.report_render import headline
        from facegen.dataset.report_source import REPORT_DIR

        where = REPORT_DIR if rdir is None else (
            Path(os.path.relpath(rdir.absolute(), root.path)).as_posix() if isinstance(root, LocalLocation) else "..")
        if where.startswith(".."):
            where = str(rdir)                                  # a report kept outside the dataset

        lines += [f"Measured by `facegen dataset-report` with the judge `{report['encoder']}`"
                  + ("" if report.get("judge_independent") is not False else " (NOT independent of the generator)")
                  + f"; full figures in `{where}/report.md` and `{where}/report.json`.", "",
                  "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in headline(report)]
        lines += [f"\n> {w}" for w in report.get("warnings", [])]
    else:
        lines.append("Not measured yet: run `facegen dataset-report DIR` (it refreshes this card).")
    lines.append("")
    lines += trained_model_lines(root, summary.fingerprint)

    lines += ["## Intended use", "",
              "Training and evaluating face-recognition models without scraped photos of real people; research on "
              "synthetic data. Not for identifying, impersonating or profiling anyone; not a substitute for "
              "consented real data when a system is evaluated for deployment.", "",
              "## Limitations", "",
              "- Identities are as distinct and as varied as the report measures, with one judge network; a "
              "different recognition model may disagree.",
              "- The generator inherits the biases of its training data (demographics, pose, lighting, age); the "
              "dataset is not balanced by construction.",
              "- A synthetic identity can still resemble a real person: the leakage check covers only the real "
              "embeddings it was given."]
    if tiny:
        lines.append("- Made with a tiny random-weight preset: the images contain no faces.")
    lines.append("")

    lines += ["## Provenance", "",
              f"- facegen {__version__}, spec fingerprint `{summary.fingerprint}` (`spec.yaml` regenerates it)",
              *_numerics_lines(spec_file),
              "- every PNG is tagged as AI-generated in its metadata (`ai_generated`, IPTC DigitalSourceType "
              "`trainedAlgorithmicMedia`, the preset, seed and dataset fingerprint)", "",
              "## Licence", "",
              f"Inherited from the weights that made the images: {licence_text}."
              + (" Several of these are non-commercial: so is this dataset's use." if licence == "other"
                 and preset is not None and not preset.commercial_use else ""), ""]
    return "\n".join(lines)


def _numerics_lines(spec_file: Path | None) -> list[str]:
    """What the card says of the numerics the images were made with (``spec.yaml``'s record)."""
    from facegen.dataset.spec import stored_numerics
    from facegen.numerics import describe_change

    record = stored_numerics(spec_file) if spec_file is not None else []
    if not record:
        return ["- numerics: not recorded (a dataset started before facegen recorded them)"]
    first = record[0]
    libs = ", ".join(f"{k} {v}" for k, v in sorted((first.get("libraries") or {}).items()) if v != "absent")
    where = ("on the CPU with " + f"{first.get('threads')} torch thread(s)" if first.get("device") == "cpu"
             else f"on {first.get('device')}")
    lines = [f"- numerics: made {where}, numerics fingerprint `{first.get('fingerprint')}`, with {libs}. "
             + ("Bit-for-bit regeneration holds on the CPU in that environment: install these versions "
                "(facegen's `requirements.lock`) and the same fingerprint."
                if first.get("device") == "cpu" else
                "On a GPU, regeneration is equal up to float rounding; bit for bit only on the same card and versions.")]
    for before, after in zip(record, record[1:]):
        lines.append(f"- **resumed under other numerics** ({after.get('allowed_by', '--allow-new-numerics')}): "
                     f"{describe_change(before, after)} (fingerprint `{after.get('fingerprint')}`): the images "
                     "made before and after differ in float rounding, so this dataset does not regenerate bit for "
                     "bit in any one environment")
    return lines


def write_dataset_card(root: Any, spec: Any = None, summary: Any = None, report: dict[str, Any] | None = None,
                       report_dir: str | Path | None = None) -> str:
    """Write (or refresh) ``root/README.md`` (``root``: a folder or a store location); return where."""
    loc = open_location(root)
    loc.write_bytes(CARD_FILE, dataset_card(loc, spec, summary, report, report_dir).encode("utf-8"))
    logger.info("dataset card written: %s", loc.child(CARD_FILE))
    return loc.child(CARD_FILE)


def read_card_header(path: str | Path) -> dict[str, Any]:
    """The YAML header of a card (the text between the first two ``---`` lines)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    head, sep, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(head) or {} if sep else {}
