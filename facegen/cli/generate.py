"""``facegen generate``: new images of the person in one or more photos (or saved embeddings).

    facegen generate --model tiny --id photo.jpg --num-images 2 --seed 7 --out out/
    facegen embed photo.jpg --save me.npy && facegen generate --model tiny --id-embeds me.npy --out out/

writes ``out/0000.png``, ``out/0001.png`` … (each PNG marked AI-generated, with preset,
adapter, seed and facegen version) and ``out/metadata.jsonl`` (one JSON object per image).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from facegen import limits
from facegen.choices import FACE_LAYOUT
from facegen.cli.checks import check_inputs_readable, check_steps, previous_run, probe_writable, remove_previous_run
from facegen.cli.options import (
    access_from_args,
    add_adapter_scale_option,
    add_device_options,
    add_model_option,
    add_models_options,
    add_output_option,
    add_overwrite_option,
    add_progress_option,
    add_prompt_option,
    add_provenance_options,
    add_sampling_options,
    bounded_int,
    expand_id_paths,
    finite_float,
    provenance_from_args,
)
from facegen.cli.people import add_people_options
from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

def add_generate_parser(subparsers: Any) -> argparse.ArgumentParser:
    from facegen.models.loading import SCHEDULERS

    p = subparsers.add_parser(
        "generate", help="generate new images of the person in --id photos (ID-preserving generation)",
        description="Generate images of the person in the --id photos (or the --id-embeds saved by "
                    "'facegen embed --save') with an ID-conditioned diffusion preset. Several photos (or a "
                    "folder) or embeddings of one person are averaged into one identity.")
    add_model_option(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--id", dest="ids", action="append", default=None, metavar="IMG",
                     help="reference photo or folder of photos of one person (repeatable)")
    who.add_argument("--id-embeds", dest="id_embeds", action="extend", nargs="+", default=None, metavar="FILE.npy",
                     help="saved embeddings of one person ('facegen embed PHOTO --save FILE.npy', its encoder "
                          "in FILE.json beside it) instead of photos; they must come from the preset's encoder")
    add_people_options(p, who)
    add_prompt_option(p)
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--num-images", "-n", type=bounded_int(1), default=1,
                   help=f"images to make (at most ${limits.MAX_IMAGES_ENV}, default {limits.DEFAULT_MAX_IMAGES})")
    add_sampling_options(p, seed_help="image i gets seed+i (default: random, recorded)")
    p.add_argument("--height", type=bounded_int(32, 4096), default=None)
    p.add_argument("--width", type=bounded_int(32, 4096), default=None)
    add_adapter_scale_option(p)
    p.add_argument("--controlnet-scale", type=finite_float(0, 5), default=None,
                   help="strength of the preset's keypoint ControlNet (presets that have one)")
    p.add_argument("--lora-scale", type=finite_float(0, 5), default=None,
                   help="adapter LoRA strength (presets with an adapter LoRA)")
    p.add_argument("--face-layout", default=None, choices=FACE_LAYOUT.values,
                   help="presets that draw face keypoints: 'reference' (default, as upstream) keeps "
                        "the photo's pose, face scale and placement, resized to the output; 'portrait' re-frames "
                        "the face into a fixed portrait (what --id-embeds always get); presets that take only "
                        "'reference' draw the photo's pose with it (default: none, a black control image)")
    p.add_argument("--scheduler", default=None, choices=sorted(SCHEDULERS))
    p.add_argument("--batch-size", type=bounded_int(1), default=None,
                   help="images denoised together (default 1: exact)")
    add_output_option(p, "DIR", "output folder")
    add_overwrite_option(p, "the images and metadata.jsonl of an earlier run in --out")
    add_device_options(p)
    p.add_argument("--cpu-offload", action="store_true", help="model CPU offload (CUDA, low VRAM)")
    p.add_argument("--quantize", default=None, choices=["8bit"],
                   help="8-bit weights for presets that offer them (needs facegen[flux])")
    p.add_argument("--vae-tiling", action="store_true", help="decode in tiles (large images, low memory)")
    add_progress_option(p)
    add_models_options(p, "the preset's weights and encoders")
    add_provenance_options(p)
    p.set_defaults(func=run_generate)
    return p


add_parser = add_generate_parser  # the name facegen.cli registers sub-commands by


def load_id_embeds_for(model: str, paths: list[str]) -> list[Any]:
    """``--id-embeds``: every file's embeddings, checked against the preset's adapter before any
    model loads (an embedding of another encoder is refused with the adapter's
    :class:`~facegen.errors.EncoderMismatchError`)."""
    from facegen.adapters.registry import adapter_for  # noqa: PLC0415
    from facegen.id.saved import load_id_embeds  # noqa: PLC0415
    from facegen.models.registry import get_preset  # noqa: PLC0415

    adapter = adapter_for(get_preset(model))
    embeds = []
    for path in paths:
        try:
            loaded = load_id_embeds(path)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"--id-embeds {exc}") from None
        for e in loaded:
            adapter.check_embedding(e)
        embeds += loaded
    return embeds


def check_out_dir(out_dir: Path, id_args: list[str], ids: list[Path], overwrite: bool) -> list[str]:
    """``--out`` must not be (or hold) a reference photo's folder and must be writable; an
    earlier run there needs ``--overwrite``. Returns the earlier run's image names."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(f"--out {out_dir} exists and is not a folder")
    for arg in id_args:
        if Path(arg).is_dir() and out_dir.resolve() == Path(arg).resolve():
            raise InvalidArgumentError(f"--out {out_dir} is the --id folder {arg}: the images would overwrite or "
                                       "join the reference photos; give another folder")
    for ref in ids:
        if ref.resolve().parent == out_dir.resolve() and re.fullmatch(r"\d{4,}\.png", ref.name):
            raise InvalidArgumentError(f"--out {out_dir} holds the --id photo {ref}, a name the results take: "
                                       "give another folder")
    previous = previous_run(out_dir) if out_dir.is_dir() else []
    if previous and not overwrite:
        raise InvalidArgumentError(f"--out {out_dir} already holds an earlier run ({len(previous)} images"
                                   f"{', metadata.jsonl' if (out_dir / 'metadata.jsonl').exists() else ''}); give "
                                   "another folder, or --overwrite to replace it")
    probe_writable(out_dir)
    return previous


class ImageWriter:
    """Writes each batch of images as it is made (atomically, watermarked in one call on the
    pipeline's device) and appends their ``metadata.jsonl`` lines (strict JSON, flushed), so an
    interrupted run keeps every finished image, listed. ``ids``: the reference files (photos or
    saved embeddings), recorded by name (no folder: no path of the user's machine is written)
    and never removed."""

    def __init__(self, out_dir: Path, ids: list[Path], previous: list[str], provenance: Any = None) -> None:
        self.out_dir, self.ids, self.previous, self.provenance = out_dir, ids, previous, provenance
        self.records: list[dict[str, Any]] = []
        self._fd: int | None = None

    def __call__(self, first: int, images: list[Any], metas: list[dict[str, Any]]) -> None:
        from facegen.io import save_images
        from facegen.limits import json_safe

        if self._fd is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.previous or (self.out_dir / "metadata.jsonl").exists():
                remove_previous_run(self.out_dir, self.previous, self.ids)   # --overwrite: no stale images
            self._fd = os.open(self.out_dir / "metadata.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                               0o644)
        names = [f"{i:04d}.png" for i in range(first, first + len(images))]
        saved = save_images([(self.out_dir / n, im, m) for n, im, m in zip(names, images, metas)],
                            provenance=self.provenance)
        for name, meta, written in zip(names, metas, saved):
            record = json_safe({"file": name, "ai_generated": True, **meta,
                                "provenance": written.metadata.get("provenance", {}),   # what the file holds
                                "references": [p.name for p in self.ids]})     # names, never paths
            line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
            os.write(self._fd, line)
            os.fsync(self._fd)
            self.records.append(record)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_generate(args: argparse.Namespace) -> int:
    from facegen.cli.people import id_arguments, people_from_args, people_kwargs, people_lines
    from facegen.pipelines.generation import IDGenerationPipeline
    from facegen.pipelines.request import check_face_layout

    # cheap checks first: the signing identity, numbers, photos, the output folder; then the model
    provenance = provenance_from_args(args)          # a bad certificate fails before any model loads
    if args.num_images > limits.max_images():
        raise InvalidArgumentError(f"--num-images {args.num_images} is over the limit of {limits.max_images()} "
                                   f"(raise it with {limits.MAX_IMAGES_ENV})")
    check_steps(args.steps)
    limits.check_prompt("--prompt", args.prompt)
    limits.check_prompt("--negative-prompt", args.negative_prompt)
    people = people_from_args(args)                  # None: one person (--id / --id-embeds)
    if args.id_embeds:
        check_face_layout(args.face_layout, has_photos=False)
        embeds = load_id_embeds_for(args.model, args.id_embeds)
        ids, id_folders = [Path(p) for p in args.id_embeds], []
    else:
        embeds = None
        ids = expand_id_paths(args.ids) if people is None else [p for person in people for p in person]
        id_folders = id_arguments(args)
        check_inputs_readable(("--id" if people is None else "--people", p) for p in ids)
    out_dir = Path(args.out)
    previous = check_out_dir(out_dir, id_folders, ids, args.overwrite)
    t0 = time.perf_counter()
    pipe = IDGenerationPipeline.from_preset(args.model, access=access_from_args(args), dtype=args.dtype,
                                            quantize=args.quantize)
    if args.cpu_offload:
        pipe.enable_model_cpu_offload()
    if args.vae_tiling:
        pipe.enable_vae_tiling()
    t1 = time.perf_counter()
    writer = ImageWriter(out_dir, ids, previous, provenance)
    try:
        who = people_kwargs(args, people, ids) if embeds is None else {"id_embeds": embeds}
        result = pipe(**who, prompt=args.prompt, negative_prompt=args.negative_prompt,
                      num_images=args.num_images, seed=args.seed, num_inference_steps=args.steps,
                      guidance_scale=args.guidance, height=args.height, width=args.width,
                      adapter_scale=args.adapter_scale, controlnet_scale=args.controlnet_scale,
                      lora_scale=args.lora_scale, scheduler=args.scheduler, batch_size=args.batch_size,
                      progress=not args.no_progress, on_images=writer,
                      face_layout=args.face_layout)
    finally:
        writer.close()
    t2 = time.perf_counter()
    logger.info("loaded %s in %.1f s; generated %d images in %.1f s", args.model, t1 - t0, len(result), t2 - t1)
    from facegen.pipelines.similarity import similarity_text  # noqa: PLC0415
    for rec in writer.records:
        sim = similarity_text(rec.get("id_similarity"), rec.get("id_judge"))
        print(f"{out_dir / rec['file']}  seed={rec['seed']}  id_similarity={sim}")
        for line in people_lines(rec):                  # --people: one line per person
            print(line)
    return 0
