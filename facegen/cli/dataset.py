"""``facegen dataset`` and ``facegen dataset-stats``: synthetic face-recognition datasets.

    facegen dataset --model tiny --num-ids 8 --images-per-id 3 --seed 11 --format webdataset --out ds
    facegen dataset ... --engine ray --workers 2          # same samples, Ray workers
    accelerate launch -m facegen dataset ... --engine accelerate   # one process per GPU
    facegen dataset-stats ds

Rerunning the same command after a crash resumes: finished shards are kept, partial ones
redone; a different spec in the same folder is refused. The options are a
:class:`~facegen.dataset.spec.DatasetSpec`: ``--spec FILE`` and/or flags (flags override).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from facegen.cli.options import (
    access_from_args,
    add_device_options,
    add_encoder_option,
    add_json_option,
    add_models_options,
    add_output_option,
    add_progress_option,
    add_sampling_options,
    add_workers_option,
)
from facegen.errors import InvalidArgumentError

#: the flags that set a spec field of the same name (unset flags leave the spec file's value)
SPEC_FLAGS = ("model", "num_ids", "images_per_id", "seed", "format", "out", "shard_size", "max_cosine",
              "prior", "reject_near", "filter_encoder", "max_attempts", "crops", "engine", "workers",
              "batch_size", "models_dir", "accept_license", "allow_new_numerics")


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    """The ``facegen dataset`` options (``--spec FILE`` or the flags; flags override)."""
    from facegen.dataset.spec import ENGINES, FORMATS  # noqa: PLC0415

    p.add_argument("--spec", default=None, help="a dataset spec YAML (flags given override it)")
    p.add_argument("--model", default=None, help="generation preset (default tiny)")
    p.add_argument("--num-ids", type=int, default=None, help="number of synthetic identities")
    p.add_argument("--images-per-id", type=int, default=None, help="images per identity")
    add_sampling_options(p, seed_help="run seed (every image's seed derives from it)", max_guidance=None,
                         steps_limit="at most the spec limit 'steps'")
    p.add_argument("--format", choices=FORMATS, default=None, help="webdataset .tar shards or ImageFolder")
    add_output_option(p, "DIR", "output folder (resumable: rerun the same command)", required=False)
    p.add_argument("--shard-size", type=int, default=None, help="identities per shard (default 100)")
    p.add_argument("--max-cosine", type=float, default=None, help="max cosine between identities (0.4)")
    p.add_argument("--prior", default=None, help=".npy of real embeddings to fit a PCA Gaussian prior on")
    p.add_argument("--reject-near", default=None, help=".npy of real embeddings identities must stay away from")
    p.add_argument("--filters", choices=("on", "off"), default=None,
                   help="face + ID-consistency filters (default: on, off for tiny presets)")
    p.add_argument("--filter-encoder", default=None, help="independent encoder of the ID filter")
    p.add_argument("--max-attempts", type=int, default=None, help="tries per image before it is dropped (3)")
    p.add_argument("--crops", action="store_true", default=None, help="also write 112x112 aligned crops")
    p.add_argument("--engine", choices=ENGINES, default=None, help="local (default), accelerate or ray")
    add_workers_option(p, "worker processes (local, ray)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per generator call (GPU: one diffusers call, default 32 for SD1.5 / 8 for SDXL; "
                        "CPU: 8, pixels unaffected)")
    p.add_argument("--allow-new-numerics", action="store_true", default=None,
                   help="resume a dataset under other library versions or kernels than it was started with "
                        "(refused otherwise: its images would mix two numerics; the card records it)")
    add_models_options(p, "the preset's weights and encoders")


def spec_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~facegen.dataset.spec.DatasetSpec` from ``--spec`` (if any) overridden by the
    flags given, validated."""
    from facegen.dataset.spec import DatasetSpec  # noqa: PLC0415

    data: dict[str, Any] = {}
    if getattr(args, "spec", None):
        data = DatasetSpec.from_yaml(args.spec, out=getattr(args, "out", None)).to_dict()
    for name in SPEC_FLAGS:
        value = getattr(args, name, None)
        if value is not None and not (name in ("accept_license", "allow_new_numerics") and value is False):
            data[name] = value
    if getattr(args, "filters", None) is not None:
        data["filters"] = args.filters == "on"
    if data.get("out") is None:
        raise InvalidArgumentError("give the output folder with --out (or 'out' in the spec file)")
    return DatasetSpec.from_mapping(data).validate()


def run_dataset_cmd(args: argparse.Namespace) -> int:
    from facegen.dataset.generator import make_generate_fn  # noqa: PLC0415
    from facegen.dataset.runner import check_location, run_dataset  # noqa: PLC0415

    spec = spec_from_args(args)
    generator = dict(spec.generator)
    for key, value in (("steps", args.steps), ("guidance_scale", args.guidance), ("id_norm", args.id_norm)):
        if value is not None:
            generator[key] = value
    spec = replace(spec, generator=generator).validate()   # --steps, --guidance: within the spec limits
    check_location(spec.out)    # a store that refuses us (no bucket, access denied): before any model loads
    gen = make_generate_fn(spec.model, access=spec.access(args.device), **generator)
    summary = run_dataset(spec, gen, progress=not args.no_progress)
    print(summary.format_text())
    return 0


def run_stats_cmd(args: argparse.Namespace) -> int:
    from facegen.dataset.stats import dataset_stats  # noqa: PLC0415

    embed_fn = None
    if args.measure:
        from facegen.dataset.filters import EncoderEmbedFn  # noqa: PLC0415
        embed_fn = EncoderEmbedFn(args.encoder, access_from_args(args))
    summary = dataset_stats(args.dir, embed_fn=embed_fn)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format_text())
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dataset", help="generate a synthetic face-recognition dataset (resumable)")
    add_spec_arguments(p)
    p.add_argument("--id-norm", type=float, default=None,
                   help="norm of identity vectors for presets that take raw (un-normalised) vectors")
    add_device_options(p, dtype=False)
    add_progress_option(p)
    p.set_defaults(func=run_dataset_cmd, on_interrupt="rerun the same command to resume: finished shards are kept")

    p = sub.add_parser("dataset-stats", help="summary of an existing dataset folder")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--measure", action="store_true",
                   help="re-embed images to measure intra/inter-identity similarity")
    add_encoder_option(p, "dlib-resnet-v1", "the encoder of --measure")
    add_json_option(p)
    add_models_options(p, "the --measure encoder")
    p.set_defaults(func=run_stats_cmd)
