"""Convert RivaGAN's ONNX weights (from the ``invisible-watermark`` 0.2.0 wheel, MIT) into the
safetensors file facegen ships (``facegen/provenance/weights/rivagan.safetensors``), check its
sha256 against the one facegen expects, and check facegen's torch networks against onnxruntime.

    pip download --no-deps invisible-watermark==0.2.0 -d /tmp/iw   # or: pip install --no-deps
    python scripts/convert_rivagan.py --onnx-dir <dir holding rivagan_encoder.onnx and rivagan_decoder.onnx>
    python scripts/convert_rivagan.py --onnx-dir ... --write      # (re)write the shipped file

Without ``--onnx-dir`` the installed ``imwatermark`` package's folder is used. Needs ``onnx``
(to read the initialisers) and ``onnxruntime`` (for the comparison). Exit 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from facegen.paths import sha256_of
from facegen.provenance import rivagan

#: the comparison's tolerance: on the marked frame (values in [-1, 1]), and on the decoder's
#: logits relative to their largest magnitude
TOL = 1e-4


def _onnx_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("no --onnx-dir and invisible-watermark is not installed "
                 "(pip install --no-deps invisible-watermark==0.2.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def convert(onnx_dir: Path, out: Path) -> None:
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415

    state = {}
    for kind in ("encoder", "decoder"):
        graph = onnx.load(str(onnx_dir / f"rivagan_{kind}.onnx")).graph
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for k, v in rivagan.state_from_onnx(inits).items():
            state[f"{kind}.{k}"] = v.contiguous()
    save_file(dict(sorted(state.items())), str(out),
              metadata={"source": "invisible-watermark 0.2.0 rivagan_{encoder,decoder}.onnx", "licence": "MIT"})


def compare(onnx_dir: Path, weights: Path) -> float:
    """Largest |torch - onnxruntime| over a few random frames and payloads (encoder output
    and decoder logits), with facegen's torch networks loaded from ``weights``."""
    import onnxruntime as ort  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    state = load_file(str(weights))
    enc, dec = rivagan.Encoder().eval(), rivagan.Decoder().eval()
    enc.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    dec.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("decoder.")})
    se = ort.InferenceSession(str(onnx_dir / "rivagan_encoder.onnx"), providers=["CPUExecutionProvider"])
    sd = ort.InferenceSession(str(onnx_dir / "rivagan_decoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for h, w in ((64, 64), (96, 80)):
        frame = rng.uniform(-1, 1, (2, 3, h, w)).astype(np.float32)
        bits = rng.integers(0, 2, (2, 32)).astype(np.float32)
        ref = se.run(None, {"frame": frame[:, :, None], "data": bits})[0][:, :, 0]
        ref_logits = sd.run(None, {"frame": frame[:, :, None]})[0]
        with torch.no_grad():
            got = enc(torch.from_numpy(frame), torch.from_numpy(bits)).numpy()
            logits = dec(torch.from_numpy(frame)).numpy()
        # the marked frame in absolute terms; the logits (up to ~100) relative to their size
        scale = max(1.0, float(np.abs(ref_logits).max()))
        worst = max(worst, float(np.abs(got - ref).max()), float(np.abs(logits - ref_logits).max()) / scale)
    return worst


def same_tensors(a: Path, b: Path) -> bool:
    """Both files hold the same tensors (names, dtypes, shapes, values) and metadata."""
    import torch  # noqa: PLC0415
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        return (fa.metadata() == fb.metadata() and sorted(fa.keys()) == sorted(fb.keys())
                and all(torch.equal(fa.get_tensor(k), fb.get_tensor(k)) for k in fa.keys()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx-dir", help="folder with rivagan_encoder.onnx and rivagan_decoder.onnx")
    ap.add_argument("--write", action="store_true", help=f"write {rivagan.WEIGHTS}")
    args = ap.parse_args()
    src = _onnx_dir(args.onnx_dir)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rivagan.safetensors"
        convert(src, out)
        digest = sha256_of(out)
        print(f"converted: sha256 {digest} ({out.stat().st_size:,} bytes)")
        worst = compare(src, out)
        print(f"torch vs onnxruntime: max |difference| {worst:.2e} (tolerance {TOL:g})")
        if worst > TOL:
            print("FAIL: the torch networks do not match onnxruntime")
            return 1
        if args.write:
            rivagan.WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
            rivagan.WEIGHTS.write_bytes(out.read_bytes())
            print(f"wrote {rivagan.WEIGHTS}")
        if digest != rivagan.WEIGHTS_SHA256 and not same_tensors(out, rivagan.WEIGHTS):
            print(f"FAIL: the tensors differ from the shipped weights (sha256 {rivagan.WEIGHTS_SHA256})")
            return 1
        if digest != rivagan.WEIGHTS_SHA256:   # the writer's header layout moved, not the weights
            print("note: same tensors and metadata as the shipped file; its bytes differ (the header layout of "
                  "this safetensors version)")
    print("OK: reproduces the shipped weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
