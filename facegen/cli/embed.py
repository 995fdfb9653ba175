"""``facegen embed`` and ``facegen verify``: the face front end (detect → align → embed).

    facegen embed photo.jpg group.jpg --faces all --json    # one JSON object per image per line
    facegen embed me.jpg me2.jpg --save me.npy              # one person's embeddings, for generate --id-embeds
    facegen verify a.jpg b.jpg --json                       # {"similarity", "threshold", "same", "encoder"}
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from facegen.choices import FACE
from facegen.cli.checks import probe_writable, refuse_input_as_output
from facegen.cli.options import (access_from_args, add_encoder_option, add_json_option, add_models_options,
                                 add_overwrite_option)
from facegen.errors import FacegenError, InvalidArgumentError

logger = logging.getLogger("facegen")


def _about(image: str, exc: Exception) -> str:
    """The error message, prefixed with the image unless it already names it."""
    msg = str(exc)
    return msg if msg.startswith(image) else f"{image}: {msg}"


def _read_image(path: str) -> Any:
    from facegen.io import load_image  # noqa: PLC0415
    return load_image(path)


def check_save(args: argparse.Namespace, policy: Any) -> Path | None:
    """``--save FILE.npy``: one person's embeddings (not ``--faces all``), not an input, not an
    existing file unless ``--overwrite``, in a writable folder: all checked before any work."""
    from facegen.id.saved import sidecar_of  # noqa: PLC0415

    if args.save is None:
        return None
    out = Path(args.save)
    if out.suffix.lower() != ".npy":
        raise InvalidArgumentError(f"--save {out}: give an .npy file name (the encoder goes in "
                                   f"{sidecar_of(out).name} beside it)")
    if policy.kind == "all":
        raise InvalidArgumentError("--save keeps one person's embeddings: use --faces largest or an index, "
                                   "not --faces all")
    for target in (out, sidecar_of(out)):
        refuse_input_as_output(target, args.images, "--save")
        if (target.exists() or target.is_symlink()) and not args.overwrite:
            raise InvalidArgumentError(f"--save: {target} already exists; give another name, or --overwrite")
    probe_writable(out.parent if str(out.parent) else Path("."), "--save")
    return out


def cmd_embed(args: argparse.Namespace) -> int:
    from facegen.faces.detect import FacePolicy  # noqa: PLC0415
    from facegen.id.encoders import embed_image  # noqa: PLC0415

    policy = FacePolicy.parse(args.faces)           # a bad policy fails before any work
    save = check_save(args, policy)
    failed = 0
    saved: list[Any] = []
    sources: list[dict[str, Any]] = []
    for image in args.images:
        try:
            t0 = time.perf_counter()
            rgb = _read_image(image)
            embs = embed_image(rgb, args.encoder, policy=policy, access=access_from_args(args))
            logger.info("%s: %d face(s) in %.3f s", image, len(embs), time.perf_counter() - t0)
        except FacegenError as exc:
            failed += 1
            print(f"error: {_about(image, exc)}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": image, "error": str(exc)}))
            continue
        saved += embs
        sources += [{"image": image, **e.face.to_dict()} if e.face is not None else {"image": image} for e in embs]
        record = {"image": image, "faces": [{**e.face.to_dict(), **e.to_dict()} for e in embs]}
        if args.json:
            print(json.dumps(record))
        else:
            for i, e in enumerate(embs):
                f = e.face
                print(f"{image}: face {i} bbox={[round(float(v)) for v in f.bbox]} score={f.score:.2f} "
                      f"{e.encoder} {e.dim}-D norm={e.norm:.3f}")
    if save is not None:
        if failed:       # a saved identity missing one of its photos would pass unnoticed
            print(f"error: --save {save} not written: {failed} image(s) failed", file=sys.stderr)
        else:
            from facegen.id.saved import save_id_embeds  # noqa: PLC0415
            npy, side = save_id_embeds(save, saved, sources)
            print(f"saved {len(saved)} {saved[0].encoder} embedding(s) to {npy} (encoder in {side.name})",
                  file=sys.stderr if args.json else sys.stdout)
    return 2 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from facegen.id.encoders import embed_image, same_person  # noqa: PLC0415

    embs = []
    for image in (args.a, args.b):
        try:
            embs.append(embed_image(_read_image(image), args.encoder,
                                    access=access_from_args(args))[0])
        except FacegenError as exc:
            exc.args = (_about(image, exc),)
            raise
    same, sim, thr = same_person(embs[0], embs[1])
    result = {"similarity": round(sim, 4), "threshold": thr, "same": bool(same), "encoder": embs[0].encoder}
    if args.json:
        print(json.dumps(result))
    else:
        verdict = "same person" if same else "different people"
        print(f"{verdict}: similarity {sim:.3f} (threshold {thr}, encoder {embs[0].encoder})")
    return 0


def add_parser(sub: "argparse._SubParsersAction[Any]") -> None:
    from facegen.id.registry import DEFAULT_ENCODER  # noqa: PLC0415

    p = sub.add_parser("embed", help="detect, align and embed the faces of images (JSON lines with --json)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_encoder_option(p, DEFAULT_ENCODER, "the ID encoder (a preset's own for generate --id-embeds)")
    p.add_argument("--faces", default=FACE.default, help=f"{FACE.words()} (default {FACE.default}) or an index N (left to right)")
    add_json_option(p, "one JSON object per image per line")
    p.add_argument("--save", default=None, metavar="FILE.npy",
                   help="also save the embeddings (one person: one row per image) to FILE.npy, its encoder "
                        "in FILE.json beside it, for 'facegen generate --id-embeds FILE.npy'")
    add_overwrite_option(p, "an existing --save file")
    add_models_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("verify", help="are the largest faces of two photos the same person?")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    add_encoder_option(p, DEFAULT_ENCODER, "the ID encoder")
    add_json_option(p)
    add_models_options(p)
    p.set_defaults(func=cmd_verify)
