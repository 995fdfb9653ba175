"""``facegen dataset`` and ``facegen dataset-stats``: synthetic face-recognition datasets.

    facegen dataset --model tiny --num-ids 8 --images-per-id 3 --seed 11 --format webdataset --out ds
    facegen dataset ... --engine ray --workers 2          # same samples, Ray workers
    accelerate launch -m facegen dataset ... --engine accelerate   # one process per GPU
    facegen dataset-stats ds

Rerunning the same command after a crash resumes: finished shards are kept, partial ones
redone; a different spec in the same folder is refused.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any


def run_dataset_cmd(args: argparse.Namespace) -> int:
    from facegen.dataset.runner import make_generate_fn, run_dataset  # noqa: PLC0415
    from facegen.dataset.spec import spec_from_args  # noqa: PLC0415

    spec = spec_from_args(args)
    generator = dict(spec.generator)
    for key, value in (("steps", args.steps), ("guidance_scale", args.guidance), ("id_norm", args.id_norm)):
        if value is not None:
            generator[key] = value
    spec = replace(spec, generator=generator).validate()   # --steps, --guidance: bounded, finite
    gen = make_generate_fn(spec.model, models_dir=spec.models_dir, device=args.device,
                           accept_license=spec.accept_license, **generator)
    summary = run_dataset(spec, gen, progress=not args.no_progress)
    print(summary.format_text())
    return 0


def run_stats_cmd(args: argparse.Namespace) -> int:
    from facegen.dataset.stats import dataset_stats  # noqa: PLC0415

    embed_fn = None
    if args.measure:
        from facegen.dataset.filters import EncoderEmbedFn  # noqa: PLC0415
        embed_fn = EncoderEmbedFn(args.encoder)
    summary = dataset_stats(args.dir, embed_fn=embed_fn)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format_text())
    return 0


def add_parser(sub: Any) -> None:
    from facegen.dataset.spec import add_spec_arguments  # noqa: PLC0415

    p = sub.add_parser("dataset", help="generate a synthetic face-recognition dataset (resumable)")
    add_spec_arguments(p)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--id-norm", type=float, default=None,
                   help="norm of identity vectors for presets that take raw vectors (InstantID)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--models-dir", default=None)
    p.add_argument("--accept-license", action="store_true", default=None,
                   help="accept the non-commercial licences of the preset's weights and encoders")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_dataset_cmd)

    p = sub.add_parser("dataset-stats", help="summary of an existing dataset folder")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--measure", action="store_true",
                   help="re-embed images to measure intra/inter-identity similarity")
    p.add_argument("--encoder", default="dlib-resnet-v1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_stats_cmd)
