"""``facegen fr-train`` and ``facegen fr-eval``: train a face-recognition network on a dataset and
score it (or any encoder) the way the field does.

    facegen fr-train ds --out run --recipe vec2face --arch r50          # accelerate launch -m facegen fr-train ...
    facegen fr-eval --model run --bin lfw.bin cfp_fp.bin agedb_30.bin --out run/eval
    facegen fr-eval --encoder dlib-resnet-v1 --pairs-from my_photos/ --groups groups.csv

See :mod:`facegen.fr`.
"""

from __future__ import annotations

import argparse
from typing import Any

from facegen.cli.options import (
    add_models_options,
    add_output_option,
    add_progress_option,
    add_seed_option,
    bounded_int,
    encoder_name,
    finite_float,
)


def run_eval_cmd(args: argparse.Namespace) -> int:
    from facegen.errors import InvalidArgumentError  # noqa: PLC0415
    from facegen.fr.evaluate import evaluate, load_sets, markdown  # noqa: PLC0415
    from facegen.id.registry import run_encoder_spec  # noqa: PLC0415

    if (args.model is None) == (args.encoder is None):
        raise InvalidArgumentError("give one of --model RUN (a trained run) or --encoder NAME")
    encoder = run_encoder_spec(args.model).name if args.model is not None else args.encoder
    sets = load_sets(args.bin or (), args.pairs, args.images, args.pairs_from, seed=args.seed,
                     pairs_per_fold=args.pairs_per_fold)
    report = evaluate(encoder, sets, out=args.out, groups=args.groups, batch_size=args.batch_size,
                      progress=not args.no_progress, plots=not args.no_plots, models_dir=args.models_dir,
                      accept_license=args.accept_license)
    print(markdown(report), end="")
    if args.out:
        print(f"written to {args.out}/eval.md and {args.out}/eval.json")
    return 0


def add_eval_parser(sub: Any) -> None:
    p = sub.add_parser("fr-eval", help="score a trained run or an encoder on face-verification pairs (LFW-style "
                                       "10-fold accuracy, TAR@FAR, EER): eval.json, eval.md, ROC")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", default=None, metavar="RUN", help="a run folder written by 'facegen fr-train'")
    who.add_argument("--encoder", default=None, type=encoder_name, metavar="NAME|RUN_DIR",
                     help="a registered ID encoder (dlib-resnet-v1, ...) or a run folder")
    p.add_argument("--bin", nargs="+", default=None, metavar="FILE",
                   help="insightface verification sets (lfw.bin cfp_fp.bin agedb_30.bin calfw.bin cplfw.bin)")
    p.add_argument("--pairs", default=None, metavar="PAIRS_TXT", help="LFW-format pairs.txt (with --images)")
    p.add_argument("--images", default=None, metavar="DIR", help="the image folder of --pairs (DIR/name/name_0001.jpg)")
    p.add_argument("--pairs-from", default=None, metavar="DIR",
                   help="draw balanced pairs in identity-disjoint folds from identity folders (DIR/<identity>/<image>)")
    p.add_argument("--pairs-per-fold", type=bounded_int(2, 1_000_000), default=600,
                   help="pairs per fold of --pairs-from (half genuine, half impostor; default 600 as LFW)")
    add_seed_option(p, "seed of --pairs-from's draw", default=0)
    p.add_argument("--groups", default=None, metavar="CSV",
                   help="identity,group rows: accuracy, FNMR and FMR per group at one global threshold")
    add_output_option(p, "FOLDER", "write eval.json, eval.md and roc.png here", required=False)
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=64, help="images per encoder call")
    p.add_argument("--no-plots", action="store_true", help="skip the ROC plot")
    add_progress_option(p)
    add_models_options(p, "a registered encoder")
    p.set_defaults(func=run_eval_cmd)


def add_parser(sub: Any) -> None:
    add_eval_parser(sub)
