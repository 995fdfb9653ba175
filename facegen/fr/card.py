"""A trained run's figures in the card of the facegen dataset it was trained on."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def add_trained_model_section(run: Path, report: dict[str, Any]) -> str | None:
    """Record ``report`` (``fr-eval``'s) beside the facegen dataset ``run`` was trained on and
    refresh that dataset's card; nothing when the run was not trained on a facegen dataset."""
    from facegen.dataset.card import TRAINED_MODEL_FILE, write_dataset_card  # noqa: PLC0415
    from facegen.dataset.stats import SPEC_FILE, dataset_stats  # noqa: PLC0415
    from facegen.id.iresnet import read_run_config  # noqa: PLC0415
    from facegen.io.location import open_location  # noqa: PLC0415

    cfg = read_run_config(run)
    ds = cfg.get("dataset")
    root = open_location(ds) if ds else None
    if root is None or not root.exists(SPEC_FILE):
        return None
    summary = dataset_stats(root)
    if cfg.get("dataset_fingerprint") not in (None, summary.fingerprint):
        logger.info("%s was trained on an earlier version of %s: its card is left as it is", run, root)
        return None
    rec = {"run": str(run), "arch": cfg.get("arch"), "steps": cfg.get("steps"), "fingerprint": summary.fingerprint,
           "sets": {k: {"pairs": v["pairs"], "accuracy": v["accuracy"], "accuracy_std": v["accuracy_std"],
                        "tar_at_far": v["tar_at_far"]} for k, v in report["sets"].items()}}
    root.write_bytes(TRAINED_MODEL_FILE, (json.dumps(rec, indent=2) + "\n").encode("utf-8"))
    return write_dataset_card(root, summary=summary)
