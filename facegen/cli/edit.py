"""``facegen swap | age | restore``: ID-conditioned edits that touch only the face.

    facegen swap --model tiny --source me.jpg --target photo.jpg --out swapped.png --consent
    facegen age --model tiny-faceid --image photo.jpg --age 70 --from-age 35 --out old.png --consent
    facegen restore --model tiny --image blurry.jpg [--reference sharp.jpg] --out restored.png --consent

Each writes one image (same size and orientation as the input, tagged AI-edited in its
metadata) and prints its path, seed and ID similarity; with a video in, the same job runs on
every frame (``facegen.cli.video``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from facegen.choices import AGE, FACE, GENDER, RESTORE_STRENGTH, SWAP_ENGINE, SWAP_STRENGTH
from facegen.cli.checks import check_inputs_readable, check_output_file, check_steps
from facegen.cli.jobs import make_job
from facegen.cli.options import (
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
    finite_float,
    provenance_from_args,
)
from facegen.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

OUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def _common(p: argparse.ArgumentParser, offline_model: str, model_required: bool = True) -> None:
    add_model_option(p, offline=offline_model, required=model_required)
    add_output_option(p, "FILE", "output image (.png, .jpg, .webp)")
    p.add_argument("--consent", action="store_true",
                   help="I have the right to edit the face of the person in this photo (required)")
    add_sampling_options(p, seed_help="default: random, recorded in the output")
    add_device_options(p)
    add_progress_option(p)
    add_models_options(p, "the preset's weights and encoders")
    add_overwrite_option(p, "an existing --out file")
    add_provenance_options(p)
    from facegen.cli.video import add_video_arguments  # noqa: PLC0415
    add_video_arguments(p)


def _check_out(args: argparse.Namespace, inputs: list[tuple[str, str]]) -> Path:
    """Everything cheap, before a model loads: numbers, the output file, every input photo, and
    the provenance options (a bad certificate is refused here)."""
    check_steps(args.steps)
    out = check_output_file(args.out, [path for _, path in inputs], args.overwrite, OUT_SUFFIXES)
    check_inputs_readable(inputs)
    args.provenance = provenance_from_args(args)
    return out


def _write(result: Any, out: Path, t0: float, args: argparse.Namespace) -> int:
    from facegen.io import save_image  # noqa: PLC0415

    save_image(out, result.images[0], metadata={"ai_edited": True, **result.provenance(0)},
               provenance=getattr(args, "provenance", None))
    from facegen.pipelines.similarity import similarity_text  # noqa: PLC0415

    judge = result.metadata[0].get("id_judge")
    print(f"{out}  seed={result.seeds[0]}  id_similarity={similarity_text(result.id_similarity[0], judge)}  "
          f"({time.perf_counter() - t0:.1f} s)")
    faces = result.metadata[0].get("faces") or []
    if len(faces) > 1:
        for f in faces:
            print(f"  face {f['face']} at {[int(v) for v in f['bbox']]}: seeds={f['seeds']}  "
                  f"id_similarity={similarity_text(f.get('id_similarity'), judge)}")
    return 0


def _run_photo(args: argparse.Namespace, command: str, image: str, out: Path) -> int:
    t0 = time.perf_counter()
    job = make_job(args, command)
    result = job.pipe.run_job(job, image, args.seed, progress=not args.no_progress)
    return _write(result, out, t0, args)


def run_swap(args: argparse.Namespace) -> int:
    from facegen.pipelines._edit_base import require_consent  # noqa: PLC0415
    from facegen.cli.video import maybe_run_video  # noqa: PLC0415

    if (code := maybe_run_video(args, "swap")) is not None:
        return code
    from facegen.pipelines.swap import check_swap_choices  # noqa: PLC0415

    require_consent(args.consent, "face swap")          # refuse before loading any model
    check_swap_choices(len(args.sources), args.references, args.target_face)
    inputs = [("--source", s) for s in args.sources] + [("--target", args.target)]
    inputs += [("--reference", r) for r in args.references or []]
    out = _check_out(args, inputs)
    return _run_photo(args, "swap", args.target, out)


def run_age(args: argparse.Namespace) -> int:
    from facegen.pipelines._edit_base import require_consent  # noqa: PLC0415
    from facegen.cli.video import maybe_run_video  # noqa: PLC0415

    if (code := maybe_run_video(args, "age")) is not None:
        return code
    require_consent(args.consent, "aging")
    out = _check_out(args, [("--image", args.image)])
    if args.from_age is None:
        raise InvalidArgumentError("the current age is needed: give --from-age N "
                                   "(no age-estimation model is installed)")
    return _run_photo(args, "age", args.image, out)


def run_restore(args: argparse.Namespace) -> int:
    from facegen.pipelines._edit_base import require_consent  # noqa: PLC0415
    from facegen.cli.video import maybe_run_video  # noqa: PLC0415

    if (code := maybe_run_video(args, "restore")) is not None:
        return code
    require_consent(args.consent, "restoration")
    out = _check_out(args, [("--image", args.image)] + ([("--reference", args.reference)] if args.reference else []))
    return _run_photo(args, "restore", args.image, out)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("swap", help="put the source person's identity on the target photo's face(s)")
    p.add_argument("--source", dest="sources", action="append", required=True, metavar="IMG",
                   help="photo of the person to put in (repeat for several target faces)")
    p.add_argument("--target", required=True, metavar="IMG", help="the photo to edit")
    p.add_argument("--target-face", default=FACE.default, help=f"{FACE.words()} (default {FACE.default}) or an index N (left to right)")
    p.add_argument("--reference", dest="references", action="append", default=None, metavar="IMG",
                   help="one per --source: a photo of the target person that source replaces")
    p.add_argument("--strength", type=finite_float(SWAP_STRENGTH.lo, SWAP_STRENGTH.hi, lo_open=SWAP_STRENGTH.lo_open),
                   default=SWAP_STRENGTH.default,
                   help="how much of the target face is re-drawn (0-1]")
    add_prompt_option(p)
    add_adapter_scale_option(p)
    p.add_argument("--engine", default=SWAP_ENGINE.default, choices=SWAP_ENGINE.values,
                   help="diffusion (ID-conditioned inpainting, --model) or inswapper (inswapper_128.onnx + "
                        "buffalo_l in --models-dir, 128 px, fast)")
    p.add_argument("--keep-mouth", action="store_true",
                   help="keep the target's own mouth (lips and teeth, from landmarks) over the swapped face")
    _common(p, "tiny", model_required=False)
    p.set_defaults(func=run_swap)

    p = sub.add_parser("age", help="age or rejuvenate the face in a photo (two passes, identity restored)")
    p.add_argument("--image", required=True, metavar="IMG")
    p.add_argument("--age", type=bounded_int(int(AGE.lo), int(AGE.hi)), required=True, help="target age in years")
    p.add_argument("--from-age", type=bounded_int(int(AGE.lo), int(AGE.hi)), default=None,
                   help="the person's current age (required)")
    p.add_argument("--gender", default=GENDER.default, choices=GENDER.values, help="word used in the prompt")
    p.add_argument("--face", default=FACE.default, help=f"{FACE.words()} (default {FACE.default}) or an index N")
    _common(p, "tiny-faceid")
    p.set_defaults(func=run_age)

    p = sub.add_parser("restore", help="restore a degraded face, ID from a reference photo or the input")
    p.add_argument("--image", required=True, metavar="IMG")
    p.add_argument("--reference", default=None, metavar="IMG", help="a clean photo of the same person")
    p.add_argument("--face", default=FACE.default, help=f"{FACE.words()} (default {FACE.default}) or an index N")
    p.add_argument("--strength", type=finite_float(RESTORE_STRENGTH.lo, RESTORE_STRENGTH.hi,
                                                   lo_open=RESTORE_STRENGTH.lo_open), default=None,
                   help="default: adapted to the measured degradation")
    p.add_argument("--gfpgan", action="store_true", help="GFPGAN v1.4 pre-pass (pip install gfpgan + weights)")
    _common(p, "tiny")
    p.set_defaults(func=run_restore)
