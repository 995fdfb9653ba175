"""The ``facegen`` command line.

Exit codes: 0 success; 2 a user mistake (``error: <one line>`` on stderr, no traceback);
1 an internal failure; 130 interrupted.  Sub-commands live in their own modules and are
registered from :func:`command_modules`, each module exposing ``add_parser(subparsers)``
that sets ``func`` (``args -> int``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from typing import Any, Sequence

from facegen import __version__
from facegen.errors import FacegenError

logger = logging.getLogger("facegen")

#: modules that add sub-commands (in help order); a missing module is skipped
def command_modules() -> list[Any]:
    """The modules that register sub-commands (each exposes ``add_parser(subparsers)``), in help
    order. Plain imports: a broken command module fails loudly instead of vanishing from the CLI."""
    from facegen import (  # noqa: PLC0415 - they import this module's option helpers
        cli_dataset,
        cli_edit,
        cli_generate,
        cli_inspect,
        cli_report,
        cli_serve,
    )

    return [sys.modules[__name__], cli_generate, cli_edit, cli_dataset, cli_report, cli_serve, cli_inspect]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", default=None,
                   help="local weights folder (default: $FACEGEN_HOME/models, ~/.cache/facegen/models)")
    p.add_argument("--accept-license", action="store_true",
                   help="accept non-commercial licences of the weights used (insightface packs, Arc2Face, ...)")


def _about(image: str, exc: Exception) -> str:
    """The error message, prefixed with the image unless it already names it."""
    msg = str(exc)
    return msg if msg.startswith(image) else f"{image}: {msg}"


def _read_image(path: str):
    from facegen.io import load_image  # noqa: PLC0415
    return load_image(path)


# ---------------------------------------------------------------- embed / verify
def cmd_embed(args: argparse.Namespace) -> int:
    from facegen.faces.detect import FacePolicy  # noqa: PLC0415
    from facegen.id.encoders import embed_image  # noqa: PLC0415

    policy = FacePolicy.parse(args.faces)           # a bad policy fails before any work
    failed = 0
    for image in args.images:
        try:
            t0 = time.perf_counter()
            rgb = _read_image(image)
            embs = embed_image(rgb, args.encoder, policy=policy, models_dir=args.models_dir,
                               accept_license=args.accept_license)
            logger.info("%s: %d face(s) in %.3f s", image, len(embs), time.perf_counter() - t0)
        except FacegenError as exc:
            failed += 1
            print(f"error: {_about(image, exc)}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": image, "error": str(exc)}))
            continue
        record = {"image": image, "faces": [{**e.face.to_dict(), **e.to_dict()} for e in embs]}
        if args.json:
            print(json.dumps(record))
        else:
            for i, e in enumerate(embs):
                f = e.face
                print(f"{image}: face {i} bbox={[round(float(v)) for v in f.bbox]} score={f.score:.2f} "
                      f"{e.encoder} {e.dim}-D norm={e.norm:.3f}")
    return 2 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from facegen.id.encoders import embed_image, same_person  # noqa: PLC0415

    embs = []
    for image in (args.a, args.b):
        try:
            embs.append(embed_image(_read_image(image), args.encoder, models_dir=args.models_dir,
                                    accept_license=args.accept_license)[0])
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


# ---------------------------------------------------------------- doctor
def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version  # noqa: PLC0415
        return version(module)
    except Exception:  # noqa: BLE001
        return None


def doctor_report(models_dir: str | None = None) -> dict[str, Any]:
    from facegen.id.registry import ENCODERS  # noqa: PLC0415
    from facegen.paths import facegen_home  # noqa: PLC0415
    from facegen.paths import models_dir as resolve_models_dir  # noqa: PLC0415

    root = resolve_models_dir(models_dir)
    packages = {name: _version(name) for name in (
        "torch", "diffusers", "transformers", "accelerate", "safetensors", "peft", "onnxruntime",
        "dlib-bin", "face_recognition_models", "opencv-python-headless", "insightface", "gradio", "ray",
        "c2pa-python", "invisible-watermark")}
    device: dict[str, Any] = {"cuda": False}
    try:
        import torch  # noqa: PLC0415
        device["cuda"] = bool(torch.cuda.is_available())
        if device["cuda"]:
            device["name"] = torch.cuda.get_device_name(0)
        device["torch_threads"] = torch.get_num_threads()
    except Exception as exc:  # noqa: BLE001
        device["error"] = str(exc)
    try:
        import onnxruntime as ort  # noqa: PLC0415
        device["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:  # noqa: BLE001
        device["onnxruntime_providers"] = []
    encoders = {}
    for name, spec in ENCODERS.items():
        if spec.backend == "dlib":
            try:
                from facegen.faces.dlib_backend import (LANDMARKS_68, RESNET_DESCRIPTOR,  # noqa: PLC0415
                                                        dlib_models_dir)
                d = dlib_models_dir()
                found = all((d / f).is_file() for f in (LANDMARKS_68, RESNET_DESCRIPTOR))
                encoders[name] = {"ready": found, "folder": str(d)}
            except FacegenError as exc:
                encoders[name] = {"ready": False, "missing": str(exc)}
            continue
        missing = [f.relpath for f in spec.files if f.locate(root) is None]
        if spec.detector_pack:
            from facegen.faces.insightface_backend import PACK_DETECTORS  # noqa: PLC0415
            det = f"{spec.detector_pack}/{PACK_DETECTORS.get(spec.detector_pack, 'scrfd_*.onnx')}"
            if not (root / det).is_file():
                missing.append(det)
        encoders[name] = {"ready": not missing, "missing": missing, "licence": spec.licence,
                          "notes": spec.notes}
    from facegen.models.auxiliary import auxiliary_status  # noqa: PLC0415
    report: dict[str, Any] = {"facegen": __version__, "python": sys.version.split()[0],
                              "home": str(facegen_home()), "models_dir": str(root),
                              "packages": packages, "device": device, "encoders": encoders,
                              "auxiliary": auxiliary_status(root)}
    from facegen.models import preset_status  # noqa: PLC0415

    report["presets"] = _with_encoders(preset_status(models_dir), encoders)
    return report


def _with_encoders(presets: dict[str, dict[str, Any]], encoders: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A preset is ready only when its ID encoder is too (its weights alone cannot embed a photo)."""
    for st in presets.values():
        enc = encoders.get(st.get("encoder") or "")
        if st.get("ready") and enc is not None and not enc.get("ready"):
            missing = enc.get("missing") or []
            detail = ", ".join(missing) if isinstance(missing, list) else str(missing)
            st["ready"] = False
            st["reason"] = f"weights found, but its encoder {st['encoder']} is missing {detail or 'files'}"
    return presets


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report(args.models_dir)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"facegen {report['facegen']} (python {report['python']})")
    print(f"models folder: {report['models_dir']}")
    print("packages: " + ", ".join(f"{k} {v or '-'}" for k, v in report["packages"].items()))
    dev = report["device"]
    print(f"device: {'CUDA ' + dev.get('name', '') if dev.get('cuda') else 'CPU only'}; "
          f"onnxruntime: {', '.join(dev.get('onnxruntime_providers', [])) or '-'}")
    for name, st in report["encoders"].items():
        state = "ready" if st["ready"] else "missing " + ", ".join(st.get("missing") or [])
        print(f"encoder {name}: {state}")
    for name, st in report["auxiliary"].items():
        state = "ready" if st["ready"] else "missing " + ", ".join(
            st["missing"] + ([] if st["package_installed"] else [f"package {st['package']}"]))
        print(f"auxiliary {name}: {state}")
    for name, st in report.get("presets", {}).items():
        twin = f" (tiny twin: {st['tiny_twin']})" if st.get("tiny_twin") else ""
        print(f"preset {name}: {'ready' if st.get('ready') else st.get('reason', 'missing')}{twin}")
    return 0


def add_parser(sub: "argparse._SubParsersAction[Any]") -> None:
    from facegen.id.registry import DEFAULT_ENCODER, ENCODERS  # noqa: PLC0415

    p = sub.add_parser("embed", help="detect, align and embed the faces of images (JSON lines with --json)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, choices=sorted(ENCODERS))
    p.add_argument("--faces", default="largest", help="largest (default), all, or an index N (left to right)")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    add_common_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("verify", help="are the largest faces of two photos the same person?")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, choices=sorted(ENCODERS))
    p.add_argument("--json", action="store_true")
    add_common_options(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("doctor", help="what is installed, which model files were found, which device")
    p.add_argument("--json", action="store_true")
    add_common_options(p)
    p.set_defaults(func=cmd_doctor)


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facegen", description="Generative face synthesis on face-identity embeddings.")
    parser.add_argument("--version", action="version", version=f"facegen {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in command_modules():
        module.add_parser(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except FacegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one place internal failures are reported
        if args.debug:
            traceback.print_exc()
        print(f"error: internal failure: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
