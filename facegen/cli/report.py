"""``facegen dataset-report``: measure what a face-recognition dataset is worth.

    facegen dataset-report ds                               # a facegen dataset: ds/report/
    facegen dataset-report other_release/ --reference real_photos/ --out rep/
    facegen dataset-report ds --reference real.npz --encoder dlib-resnet-v1 --json

Writes ``report.json``, ``report.md``, PNG plots and ``images.jsonl``; refreshes a facegen
dataset's card (``README.md``).  See :mod:`facegen.dataset.report`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from facegen.cli.options import (
    add_encoder_option,
    add_json_option,
    add_models_options,
    add_output_option,
    add_overwrite_option,
    add_progress_option,
    add_seed_option,
    add_workers_option, add_no_plots_option, access_from_args)


def run_report_cmd(args: argparse.Namespace) -> int:
    from facegen.dataset.report import build_report  # noqa: PLC0415

    report = build_report(args.dir, reference=args.reference, encoder=args.encoder, out=args.out,
                          workers=args.workers, batch_size=args.batch_size,
                          max_impostor_pairs=args.max_impostor_pairs, seed=args.seed,
                          progress=not args.no_progress, plots=not args.no_plots, card=not args.no_card,
                          access=access_from_args(args), overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report.data, indent=2, ensure_ascii=False))
    else:
        print(report.markdown)
        print(f"report written to {report.md_path} and {report.json_path}")
    return 0


def add_parser(sub: Any) -> None:
    from facegen.dataset.report_source import DEFAULT_BATCH_SIZE, DEFAULT_MAX_IMPOSTOR_PAIRS  # noqa: PLC0415

    p = sub.add_parser("dataset-report",
                       help="measure a face dataset (facegen's or any ImageFolder): separability, variation, "
                            "leakage; report.json, report.md, plots")
    p.add_argument("dir", metavar="DIR", help="a facegen dataset, or an ImageFolder (one folder per identity)")
    p.add_argument("--reference", default=None, metavar="REAL",
                   help="real people to check leakage against: .npz/.npy of embeddings (encoder recorded) "
                        "or a folder of photos (one per person, or one folder per person)")
    add_encoder_option(p, None, "the judge (default: an installed encoder independent of the generator's)")
    add_output_option(p, "FOLDER", "report folder outside DIR (default: DIR/report, refreshed each run)",
                      required=False)
    add_overwrite_option(p, "the report files of an --out folder that already holds files")
    add_workers_option(p, "worker processes (default: one per core)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per encoder batch")
    p.add_argument("--max-impostor-pairs", type=int, default=DEFAULT_MAX_IMPOSTOR_PAIRS,
                   help="impostor pairs sampled beyond this many")
    add_seed_option(p, "seed of the pair sampling", default=0)
    add_no_plots_option(p, "skip the PNG plots (no matplotlib needed)")
    p.add_argument("--no-card", action="store_true", help="leave a facegen dataset's README.md card as it is")
    add_json_option(p, "print report.json instead of the Markdown")
    add_progress_option(p)
    add_models_options(p, "an insightface judge")
    p.set_defaults(func=run_report_cmd)
