"""``facegen doctor``: what is installed, which model files were found, which device.

    facegen doctor            # one line per package, encoder, auxiliary weight and preset
    facegen doctor --json     # the same as one JSON object
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from facegen import __version__
from facegen.cli.options import access_from_args, add_json_option, add_models_options
from facegen.errors import FacegenError
from facegen.paths import DEFAULT_ACCESS, ModelAccess


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version  # noqa: PLC0415
        return version(module)
    except Exception:  # noqa: BLE001
        return None


def doctor_report(access: ModelAccess = DEFAULT_ACCESS) -> dict[str, Any]:
    from facegen.id.registry import ENCODERS  # noqa: PLC0415
    from facegen.paths import facegen_home  # noqa: PLC0415

    root = access.root
    packages = {name: _version(name) for name in (
        "torch", "diffusers", "transformers", "accelerate", "safetensors", "peft", "onnxruntime",
        "dlib-bin", "face_recognition_models", "opencv-python-headless", "insightface", "gradio", "ray",
        "c2pa-python")}
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
        from facegen.id.encoders import missing_files  # noqa: PLC0415
        missing = missing_files(spec, access)
        encoders[name] = {"ready": not missing, "missing": missing, "licence": spec.licence,
                          "notes": spec.notes}
    from facegen.models.auxiliary import auxiliary_status  # noqa: PLC0415
    report: dict[str, Any] = {"facegen": __version__, "python": sys.version.split()[0],
                              "home": str(facegen_home()), "models_dir": str(root),
                              "packages": packages, "device": device, "encoders": encoders,
                              "auxiliary": auxiliary_status(root)}
    from facegen.models import preset_status  # noqa: PLC0415

    report["presets"] = _with_encoders(preset_status(access), encoders)
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
    report = doctor_report(access_from_args(args))
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
    p = sub.add_parser("doctor", help="what is installed, which model files were found, which device")
    add_json_option(p)
    add_models_options(p)
    p.set_defaults(func=cmd_doctor)
