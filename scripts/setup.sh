#!/usr/bin/env bash
# Set up facegen in ./.venv from the project's own files (offline-friendly: package registries only).
# Usage: bash scripts/setup.sh
# Installs the locked versions (requirements.lock: every dependency of the 'all' extra, hashes
# checked), then facegen itself (editable).  The lock is for Linux x86_64 with CPython 3.11; on
# anything else, or for the unpinned ranges of pyproject.toml, run FACEGEN_UNLOCKED=1 bash scripts/setup.sh [extras]
# (extras default: all).  bash scripts/lock.sh refreshes the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
python -m pip install -q "pip==26.3"
if [ "${FACEGEN_UNLOCKED:-}" = "1" ]; then
  # torch first, pinned: a bare 'torch' requirement would pull a multi-GB CUDA build here.
  python -m pip install -q "torch==${FACEGEN_TORCH_VERSION:-2.13.0}"
  python -m pip install -q -e ".[${1:-all}]"
else
  python -m pip install -q --require-hashes --no-deps -r requirements.lock
  python -m pip install -q --no-deps -e .
  # the --no-deps packages below (there from an earlier run) lack some of their declared dependencies
  # on purpose: their lines are left out, any other broken requirement fails the setup
  nodeps="$(grep -v '^#' requirements/nodeps.in | cut -d= -f1 | paste -sd'|')"
  if ! out="$(python -m pip check 2>&1)"; then
    if echo "$out" | grep -vE "^($nodeps) " | grep .; then exit 1; fi
  fi
fi
# the packages that must come with --no-deps (requirements/nodeps.in says why)
python -m pip install -q --require-hashes --no-deps -r requirements-nodeps.lock \
  || echo "warning: insightface / invisible-watermark not installed (example photos, watermark)" >&2
python -c "import facegen, dlib, torch, diffusers; print('facegen', facegen.__version__, '| torch', torch.__version__, '| diffusers', diffusers.__version__)"
