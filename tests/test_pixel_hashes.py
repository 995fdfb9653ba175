"""Behaviour is preserved: the decoded pixels of every tiny preset's generate, swap, age, restore
and dataset outputs (fixed seeds) hash to the values recorded in ``golden/pixel_hashes.json``.

Float results depend on the libraries and the CPU's kernels, so the record is keyed by
:func:`facegen.numerics.numerics_fingerprint` (the versions of the libraries that move pixels +
the bytes of a few seeded torch kernels, at :data:`THREADS` threads).  The locked install
(``requirements.lock``, what ``scripts/setup.sh`` and CI install) has a record.  Under
``CI=true`` a fingerprint without a record **fails** (the comparison must run there); elsewhere
(unlocked versions) it skips and says how to record one:
``python tests/test_pixel_hashes.py --update`` — only with a lock refresh or a change *meant* to
alter pixels, in one commit that says which and why.

The same libraries and fingerprint kernels can still give other floats on another kind of CPU
(seen: an AMD EPYC AVX-512 VM moved 6 of the 19 outputs against the record, at main's commit as
at every later one). A record may therefore hold several complete runs for one fingerprint, each
keyed ``FINGERPRINT/CPU`` (:func:`cpu_label`); the outputs must equal one of them entirely.
``python tests/test_pixel_hashes.py --add-cpu`` adds this machine's run beside the others (the
code unchanged: only the CPU differs); ``--update`` replaces all of the fingerprint's runs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "pixel_hashes.json"
STEPS = 3
THREADS = 2          # CPU float reductions depend on the thread count: fixed here, whatever ran before


class fixed_threads:
    """Run with :data:`THREADS` torch threads, then restore the caller's setting."""

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(THREADS)

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.set_num_threads(self.before)


def numerics_fingerprint() -> str:
    from facegen.numerics import numerics_fingerprint as fingerprint

    return fingerprint(THREADS)


def missing_record(fp: str, records: dict[str, dict[str, str]]) -> None:
    """No record for ``fp``: a failure under ``CI=true`` (the locked install must be compared),
    a skip elsewhere; both name the command that records one."""
    import os

    msg = (f"no pixel record for numerics fingerprint {fp} (recorded: {sorted(records) or 'none'}); "
           "install the locked versions (bash scripts/setup.sh), or, with a lock refresh or a change meant to "
           "move pixels, record with: python tests/test_pixel_hashes.py --update")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _sha(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()).hexdigest()[:20]


def _photos() -> dict[str, Path]:
    from conftest import SHARED_FACES, insightface_images_dir

    d = insightface_images_dir()
    if d is None or not SHARED_FACES.is_dir():
        pytest.skip("needs ../shared/faces and the insightface example photos")
    return {"tom": d / "Tom_Hanks_54745.png", "group": SHARED_FACES / "group_two_people.jpg",
            "obama": SHARED_FACES / "obama_3_small.jpg"}


def compute_hashes() -> dict[str, str]:
    """Every recorded output, by name."""
    from facegen.pipelines.aging import FaceAgingPipeline
    from facegen.pipelines.generation import IDGenerationPipeline
    from facegen.pipelines.restoration import FaceRestorationPipeline
    from facegen.pipelines.swap import FaceSwapPipeline

    photos = _photos()
    out: dict[str, str] = {}
    gens: dict[str, Any] = {}
    for name in ("tiny", "tiny-arc2face-lcm", "tiny-faceid", "tiny-faceid-sdxl", "tiny-instantid"):
        gens[name] = pipe = IDGenerationPipeline.from_preset(name, device="cpu")
        res = pipe(id_images=[photos["tom"]], num_images=2, seed=7, progress=False, measure_similarity=False)
        for i in range(2):
            out[f"generate/{name}/{i}"] = _sha(np.asarray(res.images[i].convert("RGB")))
    for name in ("tiny", "tiny-instantid"):
        swap = FaceSwapPipeline(gens[name])
        res = swap(photos["tom"], photos["group"], consent=True, target_face="all", seed=5,
                   num_inference_steps=STEPS, progress=False)
        out[f"swap/{name}"] = _sha(res.rgb(0))
    age = FaceAgingPipeline(gens["tiny-faceid"])
    res = age(photos["obama"], 70, from_age=40, consent=True, seed=3, num_inference_steps=STEPS, progress=False)
    out["age/tiny-faceid"] = _sha(res.rgb(0))
    for name, face in (("tiny", "largest"), ("tiny-faceid", "all")):
        restore = FaceRestorationPipeline(gens[name])
        res = restore(photos["group"], consent=True, face=face, seed=4, num_inference_steps=STEPS, progress=False)
        out[f"restore/{name}/{face}"] = _sha(res.rgb(0))
    out.update(_dataset_hashes())
    return out


def _dataset_hashes() -> dict[str, str]:
    import tempfile

    from facegen.dataset.generator import make_generate_fn
    from facegen.paths import ModelAccess
    from facegen.dataset.runner import run_dataset
    from facegen.dataset.spec import DatasetSpec
    from facegen.io import load_image

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        spec = DatasetSpec(out=str(root), model="tiny", num_ids=2, images_per_id=2, seed=11, shard_size=2,
                           format="imagefolder")
        run_dataset(spec, make_generate_fn("tiny", ModelAccess(device="cpu"), steps=STEPS), progress=False)
        images = sorted(p for p in root.rglob("*.png") if "crops" not in p.parts)
        assert images, "the dataset wrote no images"
        return {f"dataset/tiny/{p.relative_to(root)}": _sha(load_image(p)) for p in images}


def _load() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}


def cpu_label() -> str:
    """This machine's CPU as a record key's suffix: vendor and torch's kernel level, e.g. ``AuthenticAMD-AVX512``."""
    import platform

    import torch

    vendor = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        vendor = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                       if line.startswith("vendor_id")), vendor)
    return f"{vendor or 'cpu'}-{torch.backends.cpu.get_cpu_capability()}".replace("/", "_")


def runs_of(records: dict[str, dict[str, str]], fp: str) -> dict[str, dict[str, str]]:
    """The recorded runs of fingerprint ``fp`` (key ``fp`` or ``fp/CPU``)."""
    return {k: v for k, v in records.items() if k == fp or k.startswith(fp + "/")}


def changed_against(runs: dict[str, dict[str, str]], got: dict[str, str]) -> list[str]:
    """[] when ``got`` equals one recorded run entirely, else the outputs that differ from the closest run."""
    diffs = [sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k)) for want in runs.values()]
    return min(diffs, key=len) if diffs else sorted(got)


def test_tiny_outputs_keep_their_pixels():        # not slow: the comparison runs in every default run and CI
    records = _load()
    fp = numerics_fingerprint()
    runs = runs_of(records, fp)
    if not runs:
        missing_record(fp, records)
    with fixed_threads():
        got = compute_hashes()
    changed = changed_against(runs, got)
    assert not changed, f"pixels changed for {changed} (closest of the {len(runs)} recorded runs of {fp})"


def test_outputs_must_equal_one_recorded_run_entirely():
    runs = {"ab": {"x": "1", "y": "2"}, "ab/AuthenticAMD-AVX512": {"x": "1", "y": "3"}}
    assert changed_against(runs, {"x": "1", "y": "3"}) == []
    assert changed_against(runs, {"x": "1", "y": "2"}) == []
    assert changed_against(runs, {"x": "9", "y": "3"}) == ["x"]              # a mix of two runs is not a run
    assert changed_against({"ab": {"x": "1", "y": "2"}, "ab/c": {"x": "9", "y": "9"}}, {"x": "9", "y": "2"}) == ["x"]
    assert sorted(runs_of({**runs, "abc": {}, "zz/ab": {}}, "ab")) == ["ab", "ab/AuthenticAMD-AVX512"]


def _update(compute: Callable[[], dict[str, str]] = compute_hashes, *, add_cpu: bool = False) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    records = _load()
    fp = numerics_fingerprint()
    if not add_cpu:
        records = {k: v for k, v in records.items() if k not in runs_of(records, fp)}
    key = f"{fp}/{cpu_label()}"
    with fixed_threads():
        records[key] = compute()
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {len(records[key])} hashes as {key} in {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] not in (["--update"], ["--add-cpu"]):
        sys.exit("usage: python tests/test_pixel_hashes.py --update | --add-cpu")
    _update(add_cpu=sys.argv[1] == "--add-cpu")


def test_a_fingerprint_without_a_record_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no pixel record for numerics fingerprint 0000"):
        missing_record("0000fake00000000", {"652d3e0b780479ca": {}})


def test_a_fingerprint_without_a_record_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="python tests/test_pixel_hashes.py --update"):
        missing_record("0000fake00000000", {})


def test_the_fingerprint_names_the_libraries_that_move_pixels(monkeypatch):
    import facegen.numerics as numerics

    before = numerics.numerics_fingerprint(1)
    real = numerics.library_versions()
    monkeypatch.setattr(numerics, "library_versions", lambda: {**real, "opencv-python-headless": "0.0.0"})
    assert numerics.numerics_fingerprint(1) != before
    assert numerics.describe_change({"libraries": real}, {"libraries": numerics.library_versions()}) == (
        f"opencv-python-headless {real['opencv-python-headless']} -> 0.0.0")
