"""``facegen generate``: new images of the person in one or more photos.

    facegen generate --model tiny --id photo.jpg --num-images 2 --seed 7 --out out/

writes ``out/0000.png``, ``out/0001.png`` … (each PNG marked AI-generated, with preset,
adapter, seed and facegen version) and ``out/metadata.jsonl`` (one JSON object per image).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def expand_id_paths(paths: list[str]) -> list[Path]:
    """``--id`` values: files, or folders whose photos (sorted) are all references of one person."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            photos = sorted(x for x in p.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
            if not photos:
                raise InvalidArgumentError(f"--id {p}: the folder holds no photos")
            out.extend(photos)
        else:
            out.append(p)
    return out


def add_generate_parser(subparsers: Any) -> argparse.ArgumentParser:
    from facegen.models.loading import SCHEDULERS
    from facegen.models.registry import list_presets

    p = subparsers.add_parser(
        "generate", help="generate new images of the person in --id photos (ID-preserving generation)",
        description="Generate images of the person in the --id photos with an ID-conditioned diffusion preset. "
                    "Several --id photos (or a folder) of one person are averaged into one identity.")
    p.add_argument("--model", "-m", required=True, choices=list_presets(), metavar="PRESET",
                   help=f"model preset: {', '.join(list_presets())}")
    p.add_argument("--id", dest="ids", action="append", required=True, metavar="IMG",
                   help="reference photo or folder of photos of one person (repeatable)")
    p.add_argument("--prompt", default=None, help="text prompt (not for Arc2Face presets, which take no text)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--num-images", "-n", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="image i gets seed+i (default: random, recorded)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--adapter-scale", type=float, default=None, help="ID adapter strength (FaceID, InstantID)")
    p.add_argument("--controlnet-scale", type=float, default=None, help="IdentityNet strength (InstantID)")
    p.add_argument("--lora-scale", type=float, default=None, help="FaceID LoRA strength")
    p.add_argument("--scheduler", default=None, choices=sorted(SCHEDULERS))
    p.add_argument("--batch-size", type=int, default=None, help="images denoised together (default 1: exact)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    p.add_argument("--cpu-offload", action="store_true", help="model CPU offload (CUDA, low VRAM)")
    p.add_argument("--vae-tiling", action="store_true", help="decode in tiles (large images, low memory)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--models-dir", default=None,
                   help="local weights folder in the hub layout (default: $FACEGEN_HOME/models)")
    p.add_argument("--accept-license", action="store_true",
                   help="accept the non-commercial licences of the preset's weights and encoders")
    from facegen.cli_inspect import add_provenance_options  # noqa: PLC0415
    add_provenance_options(p)
    p.set_defaults(func=run_generate)
    return p


add_parser = add_generate_parser  # the name facegen.cli registers sub-commands by


def run_generate(args: argparse.Namespace) -> int:
    from facegen.cli_inspect import provenance_from_args
    from facegen.io import read_metadata, save_image
    from facegen.pipelines.generation import IDGenerationPipeline

    provenance = provenance_from_args(args)          # a bad certificate fails before any model loads
    ids = expand_id_paths(args.ids)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(f"--out {out_dir} exists and is not a folder")
    t0 = time.perf_counter()
    pipe = IDGenerationPipeline.from_preset(args.model, models_dir=args.models_dir, device=args.device,
                                            dtype=args.dtype, accept_license=args.accept_license)
    if args.cpu_offload:
        pipe.enable_model_cpu_offload()
    if args.vae_tiling:
        pipe.enable_vae_tiling()
    t1 = time.perf_counter()
    result = pipe(id_images=ids, prompt=args.prompt, negative_prompt=args.negative_prompt,
                  num_images=args.num_images, seed=args.seed, num_inference_steps=args.steps,
                  guidance_scale=args.guidance, height=args.height, width=args.width,
                  adapter_scale=args.adapter_scale, controlnet_scale=args.controlnet_scale,
                  lora_scale=args.lora_scale, scheduler=args.scheduler, batch_size=args.batch_size,
                  progress=not args.no_progress)
    t2 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i, image in enumerate(result.images):
        name = f"{i:04d}.png"
        meta = result.provenance(i)
        save_image(out_dir / name, image, metadata=meta, provenance=provenance)
        written = read_metadata(out_dir / name)["metadata"].get("provenance", {})
        records.append({"file": name, "ai_generated": True, **meta, "provenance": written,
                        "references": [str(p) for p in ids]})
    tmp = out_dir / "metadata.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    tmp.replace(out_dir / "metadata.jsonl")
    logger.info("loaded %s in %.1f s; generated %d images in %.1f s", args.model, t1 - t0, len(result), t2 - t1)
    for rec in records:
        sim = rec.get("id_similarity")
        print(f"{out_dir / rec['file']}  seed={rec['seed']}  id_similarity={'-' if sim is None else f'{sim:.3f}'}")
    return 0
