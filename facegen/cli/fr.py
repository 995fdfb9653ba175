"""``facegen fr-train`` and ``facegen fr-eval``: train a face-recognition network on a dataset and
score it (or any encoder) the way the field does.

    facegen fr-train ds --out run --recipe vec2face --arch r50          # accelerate launch -m facegen fr-train ...
    facegen fr-eval --model run --bin lfw.bin cfp_fp.bin agedb_30.bin --out run/eval
    facegen fr-eval --encoder dlib-resnet-v1 --pairs-from my_photos/ --groups groups.csv

See :mod:`facegen.fr`.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from facegen.errors import InvalidArgumentError

from facegen.cli.options import (
    access_from_args,
    add_device_options,
    add_encoder_option,
    add_models_options,
    add_output_option,
    add_progress_option,
    add_seed_option,
    bounded_int,
    finite_float, add_no_plots_option)

logger = logging.getLogger(__name__)


def run_eval_cmd(args: argparse.Namespace) -> int:
    from facegen.fr.evaluate import evaluate, load_sets, markdown  # noqa: PLC0415
    from facegen.id.registry import run_encoder_spec  # noqa: PLC0415

    if (args.model is None) == (args.encoder is None):
        raise InvalidArgumentError("give one of --model RUN (a trained run) or --encoder NAME")
    encoder = run_encoder_spec(args.model).name if args.model is not None else args.encoder
    sets = load_sets(args.bin or (), args.pairs, args.images, args.pairs_from, seed=args.seed,
                     pairs_per_fold=args.pairs_per_fold, aligned=args.aligned)
    report = evaluate(encoder, sets, out=args.out, groups=args.groups, batch_size=args.batch_size,
                      progress=not args.no_progress, plots=not args.no_plots,
                      access=access_from_args(args))
    print(markdown(report), end="")
    if args.out:
        print(f"written to {args.out}/eval.md and {args.out}/eval.json")
    return 0


def add_eval_parser(sub: Any) -> None:
    p = sub.add_parser("fr-eval", help="score a trained run or an encoder on face-verification pairs (LFW-style "
                                       "10-fold accuracy, TAR@FAR, EER): eval.json, eval.md, ROC")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", default=None, metavar="RUN", help="a run folder written by 'facegen fr-train'")
    add_encoder_option(who, None, "the encoder to score")
    p.add_argument("--bin", nargs="+", default=None, metavar="FILE",
                   help="insightface verification sets (lfw.bin cfp_fp.bin agedb_30.bin calfw.bin cplfw.bin)")
    p.add_argument("--pairs", default=None, metavar="PAIRS_TXT", help="LFW-format pairs.txt (with --images)")
    p.add_argument("--images", default=None, metavar="DIR", help="the image folder of --pairs (DIR/name/name_0001.jpg)")
    p.add_argument("--pairs-from", default=None, metavar="DIR",
                   help="draw balanced pairs in identity-disjoint folds from identity folders (DIR/<identity>/<image>)")
    p.add_argument("--pairs-per-fold", type=bounded_int(2, 1_000_000), default=600,
                   help="pairs per fold of --pairs-from (half genuine, half impostor; default 600 as LFW)")
    add_seed_option(p, "seed of --pairs-from's draw", default=0)
    p.add_argument("--aligned", action="store_true",
                   help="the images of --pairs/--pairs-from are aligned ArcFace 112 crops already (no detection)")
    p.add_argument("--groups", default=None, metavar="CSV",
                   help="identity,group rows: accuracy, FNMR and FMR per group at one global threshold")
    add_output_option(p, "FOLDER", "write eval.json, eval.md and roc.png here", required=False)
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=64, help="images per encoder call")
    add_no_plots_option(p, "skip the ROC plot")
    add_progress_option(p)
    add_models_options(p, "a registered encoder")
    p.set_defaults(func=run_eval_cmd)


def run_train_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from facegen.fr.data import open_train_set, prepare_aligned  # noqa: PLC0415
    from facegen.fr.recipes import get_recipe  # noqa: PLC0415
    from facegen.fr.train import check_run_folder, train  # noqa: PLC0415

    recipe = get_recipe(args.recipe, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        image_size=args.image_size)
    if args.show_recipe:
        print(json.dumps(recipe.as_dict(), indent=2))
        return 0
    if args.dataset is None or args.out is None:
        raise InvalidArgumentError("give the DATASET folder and --out RUN")
    run = Path(args.out)
    check_run_folder(run)
    ts = open_train_set(args.dataset)
    if not args.no_align:
        ts = prepare_aligned(ts, run / "aligned", progress=not args.no_progress)
    for note in ts.notes:
        logger.warning("%s", note)
    result = train(ts, recipe, run, seed=args.seed, checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                   max_steps=args.max_steps, workers=args.workers, device=args.device, progress=not args.no_progress,
                   plot=not args.no_plots)
    print(f"trained {result.steps} steps ({ts.num_classes} identities, {len(ts)} images"
          + (f", {ts.skipped_identities} single-image identities skipped" if ts.skipped_identities else "")
          + (f", resumed from step {result.resumed_from}" if result.resumed_from else "")
          + f"); final loss {result.final_loss:.4f}; the run is {run} (use it as --encoder {run})")
    return 0


def add_train_parser(sub: Any) -> None:
    from facegen.fr.recipes import RECIPES  # noqa: PLC0415
    from facegen.id.iresnet import ARCHS  # noqa: PLC0415

    p = sub.add_parser("fr-train", help="train a face-recognition network (IResNet + margin head) on a dataset; "
                                        "the run is an encoder (--encoder RUN)")
    p.add_argument("dataset", nargs="?", metavar="DATASET",
                   help="a facegen dataset (WebDataset or ImageFolder) or any folder of identity folders")
    add_output_option(p, "RUN", "the run folder (model.safetensors, config.json, train.jsonl, loss.png)",
                      required=False)
    p.add_argument("--recipe", default="vec2face", choices=list(RECIPES),
                   help="backbone, head, optimiser, schedule, augmentation (see --show-recipe)")
    p.add_argument("--show-recipe", action="store_true", help="print the recipe (with overrides) and stop")
    p.add_argument("--arch", default=None, choices=list(ARCHS), help="override the recipe's IResNet")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), default=None)
    p.add_argument("--batch-size", type=bounded_int(2, 65_536), default=None, help="global batch (all processes)")
    p.add_argument("--lr", type=finite_float(0, 10, lo_open=True), default=None)
    p.add_argument("--image-size", type=bounded_int(16, 224), default=None, help="network input side (×16)")
    p.add_argument("--max-steps", type=bounded_int(1), default=None, help="stop after this many steps")
    p.add_argument("--checkpoint-every", type=bounded_int(1), default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=bounded_int(1), default=10, help="steps between train.jsonl lines")
    p.add_argument("--workers", type=bounded_int(0, 64), default=0, help="data-loading worker processes")
    add_device_options(p, dtype=False)
    p.add_argument("--no-align", action="store_true", help="take every image as an aligned crop as it is")
    add_no_plots_option(p, "skip loss.png")
    add_seed_option(p, "seed of the initialisation, data order and augmentation", default=0)
    add_progress_option(p)
    p.set_defaults(func=run_train_cmd)


def add_parser(sub: Any) -> None:
    add_train_parser(sub)
    add_eval_parser(sub)
