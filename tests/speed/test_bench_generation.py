"""The generation benchmark stays alive on CPU: `--small` runs end to end, its equality check
passes for the exact path and fails for a pixel-changing preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_generation.py"


def _run(tmp_path: Path, *args: str, timeout: int = 120) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FACEGEN_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, str(BENCH), "--small", "--device", "cpu", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env, check=False)
    result = json.loads(out.read_text()) if out.is_file() else {}
    return proc, result


def test_small_benchmark_runs_and_the_fast_path_matches(tmp_path):
    proc, r = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "equality check" in proc.stdout and "PASS" in proc.stdout
    assert "facegen / reference" in proc.stdout
    assert r["equality"]["passed"] is True and r["preset_exact"] is True
    for key in ("batch_1", "batch_2"):
        eq = r["equality"][key]
        assert eq["min_psnr_db"] == "inf" or eq["min_psnr_db"] >= 40
        assert r["speedup"][key] > 0
    for path in ("reference", "facegen"):
        for n in ("1", "2"):
            row = r["runs"][path][n]
            assert row["images_per_s"] > 0 and row["tflops"] > 0 and 0 < row["fraction_of_peak"]
            assert len(row["times"]) == r["repeats"]
    assert r["flops"]["unet_call"] > 0 and r["flops"]["vae_decode"] > 0
    assert r["matmul_peak_tflops"] > 0 and r["floor_images_per_s"] > 0 and r["peak_rss_gib"] > 0
    assert r["reference_image_std"] > 5                   # the images compared are not flat
    assert r["control_swapped_identities"]["min_psnr_db"] < 30   # ... and depend on the identity
    assert "unet fused qkv" in r["fast_applied"]


def test_the_equality_check_catches_a_pixel_changing_path(tmp_path):
    proc, r = _run(tmp_path, "--preset", "tiny-vae", "--repeats", "1", "--warmup", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "ID-similarity" in proc.stdout
    assert r["equality"]["passed"] is False and r["preset_exact"] is False
    assert r["flops"]["per_image_facegen"] != r["flops"]["per_image"]    # the preset's own decoder counted


@pytest.mark.slow
def test_small_sdxl_benchmark(tmp_path):
    proc, r = _run(tmp_path, "--sdxl", "--repeats", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert r["equality"]["passed"] is True and r["arch"].startswith("small SDXL")
