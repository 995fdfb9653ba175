"""The edit job of a ``swap`` / ``age`` / ``restore`` command, its engine loaded: the one job the
photo route (:mod:`facegen.cli.edit`) and the video route (:mod:`facegen.cli.video`) both run."""

from __future__ import annotations

import argparse
from typing import Any

from facegen.cli.options import access_from_args
from facegen.errors import InvalidArgumentError


def load_pipeline(cls: Any, args: argparse.Namespace) -> Any:
    return cls.from_preset(args.model, access=access_from_args(args), dtype=args.dtype)


def make_job(args: argparse.Namespace, command: str) -> Any:
    """The command's job (its engine loaded): the one the photo and the video routes both run."""
    if command == "swap":
        if args.engine == "inswapper":
            from facegen.pipelines.inswapper import InswapperSwapPipeline  # noqa: PLC0415
            pipe = InswapperSwapPipeline(access_from_args(args))
            return pipe.job(args.sources, consent=args.consent, target_face=args.target_face,
                            references=args.references, keep_mouth=args.keep_mouth)
        if args.model is None:
            from facegen.models.auxiliary import SWAP_ENGINE_RULE  # noqa: PLC0415
            raise InvalidArgumentError(f"no --model given ({SWAP_ENGINE_RULE})")
        from facegen.pipelines.swap import FaceSwapPipeline  # noqa: PLC0415
        return load_pipeline(FaceSwapPipeline, args).job(
            args.sources, consent=args.consent, target_face=args.target_face, references=args.references,
            strength=args.strength, num_inference_steps=args.steps, guidance_scale=args.guidance, prompt=args.prompt,
            adapter_scale=args.adapter_scale, keep_mouth=args.keep_mouth)
    if command == "age":
        from facegen.pipelines.aging import FaceAgingPipeline  # noqa: PLC0415
        return load_pipeline(FaceAgingPipeline, args).job(
            args.age, from_age=args.from_age, consent=args.consent, gender=args.gender, face=args.face,
            num_inference_steps=args.steps, guidance_scale=args.guidance)
    from facegen.pipelines.restoration import FaceRestorationPipeline  # noqa: PLC0415
    return load_pipeline(FaceRestorationPipeline, args).job(
        reference=args.reference, consent=args.consent, face=args.face, strength=args.strength,
        num_inference_steps=args.steps, guidance_scale=args.guidance, gfpgan=args.gfpgan)
