#!/usr/bin/env bash
# Set up facegen in ./.venv from the project's own files (offline-friendly: package registries only).
# Usage: bash scripts/setup.sh [extras]   (extras default: all = dev, app, dist, report, provenance, video)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: a bare 'torch' requirement would pull a multi-GB CUDA build here.
python -m pip install -q "torch==${FACEGEN_TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[${extras}]"
# insightface only for its two example photos (and optional model-pack code paths); --no-deps
# because it declares the GUI build of OpenCV, which clashes with opencv-python-headless.
python -m pip install -q --no-deps "insightface==2.1" || echo "warning: insightface (example photos) not installed" >&2
# invisible-watermark (the RivaGAN watermark's ONNX weights are inside the wheel) --no-deps for the
# same reason: it declares the GUI opencv-python; its other needs (PyWavelets, onnxruntime, torch) are ours.
python -m pip install -q --no-deps "invisible-watermark==0.2.0" || echo "warning: invisible-watermark not installed: images will not be watermarked" >&2
python -c "import facegen, dlib, torch, diffusers; print('facegen', facegen.__version__, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
