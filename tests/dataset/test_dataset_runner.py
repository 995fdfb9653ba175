"""Dataset runner: determinism across engines/workers/batch sizes, resume after a crash and
after kill -9, refusal of a changed spec, filters and regeneration, dataset_stats."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import pickle
import signal
import subprocess
import tarfile
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.dataset import writers as W
from facegen.dataset.filters import EncoderEmbedFn, FilterChain, FilterConfig, ImageScores, average_hash
from facegen.dataset.generate import make_dataset_generate_fn
from facegen.dataset.generator import PipelineGenerateFn, make_generate_fn
from facegen.dataset.runner import run_dataset
from facegen.dataset.spec import DatasetSpec
from facegen.dataset.stats import dataset_stats
from facegen.dataset.variation import WorkItem
from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.paths import ModelAccess

FACES = Path(__file__).resolve().parents[3] / "shared" / "faces"  # (subprocesses import this module)
HAVE_FACES = (FACES / "obama_1.jpg").is_file()


class FakeGenerate:
    """A deterministic stand-in generator: the image depends on the item's embedding (the
    pattern) and on its seed (the noise), so a wrong seed or embedding changes the pixels."""

    def __init__(self, size: int = 32, fail_after_calls: int | None = None, delay: float = 0.0) -> None:
        self.size = size
        self.fail_after_calls = fail_after_calls
        self.delay = delay
        self.calls = 0
        self.batch_sizes: list[int] = []

    def __call__(self, items: list[WorkItem]) -> list[np.ndarray]:
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise RuntimeError("simulated crash")
        if self.delay:
            time.sleep(self.delay)
        self.batch_sizes.append(len(items))
        out = []
        for it in items:
            rng = np.random.default_rng(it.seed)
            pattern = np.resize(it.embedding, (self.size, self.size, 3)) * 2000.0
            out.append(np.clip(128 + pattern + rng.normal(0, 40, pattern.shape), 0, 255).astype(np.uint8))
        return out


def _spec(out: Path, **kw) -> DatasetSpec:
    base = {"out": str(out), "model": "tiny", "num_ids": 8, "images_per_id": 3, "seed": 11, "shard_size": 3}
    return DatasetSpec(**{**base, **kw})


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a dataset except the timing summary and the signed seal (its C2PA
    signature is randomised; it vouches for these very files, checked by verify_seal)."""
    from facegen.provenance.seal import SEAL, verify_seal

    if (root / SEAL).is_file():
        seal = verify_seal(root / SEAL)
        assert seal["files_ok"] and seal["c2pa"]["state"] == "valid-untrusted", seal
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("summary.json", SEAL)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("ref") / "ds"
    run_dataset(_spec(root), FakeGenerate(), progress=False)
    return root, _files(root)


# ---------------------------------------------------------------------- a plain run
def test_run_writes_shards_manifest_and_summary(reference) -> None:
    root, files = reference
    assert sorted(f for f in files if f.startswith("shards/")) == [
        "shards/shard-000000.tar", "shards/shard-000001.tar", "shards/shard-000002.tar"]
    manifest = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert [(r["identity"], r["index"]) for r in manifest] == [(i, j) for i in range(8) for j in range(3)]
    assert len({r["seed"] for r in manifest}) == 24 and len({r["embedding_sha256"] for r in manifest}) == 24
    ids = np.load(root / "identities.npy")
    assert ids.shape == (8, 128)
    for shard in range(3):
        samples = W.read_tar_samples(W.tar_path(root, shard))
        expected = [r for r in manifest if r["shard"] == f"shards/shard-{shard:06d}.tar"]
        assert sorted(samples) == [r["key"] for r in expected]
        for r in expected:
            meta = json.loads(samples[r["key"]]["json"])
            assert meta == {k: v for k, v in r.items() if k != "shard"}
            import io

            from PIL import Image

            im = Image.open(io.BytesIO(samples[r["key"]]["png"]))
            assert im.size == (32, 32) and im.info["ai_generated"] == "true"
            assert json.loads(im.info["facegen"])["seed"] == r["seed"]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["accepted"] == 24 and summary["expected"] == 24 and summary["shards_done"] == 3
    assert summary["filters"] is False and summary["identity_max_cosine"] <= 0.4


def test_tiny_run_says_filters_are_off(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="facegen.dataset.runner"):
        run_dataset(_spec(tmp_path / "ds", num_ids=2, images_per_id=1), FakeGenerate(), progress=False)
    assert any("filters are off" in r.getMessage() for r in caplog.records)


def test_batch_size_and_local_workers_do_not_change_the_dataset(tmp_path: Path, reference) -> None:
    _, ref = reference
    gen = FakeGenerate()
    run_dataset(_spec(tmp_path / "b1"), gen, batch_size=1, progress=False)
    assert set(gen.batch_sizes) == {1}
    assert _files(tmp_path / "b1") == ref
    gen = FakeGenerate()
    run_dataset(_spec(tmp_path / "b5"), gen, batch_size=5, progress=False)
    assert max(gen.batch_sizes) == 5
    assert _files(tmp_path / "b5") == ref
    run_dataset(_spec(tmp_path / "w2"), FakeGenerate(), workers=2, progress=False)
    assert _files(tmp_path / "w2") == ref


def test_a_different_seed_changes_the_pixels(tmp_path: Path, reference) -> None:
    _, ref = reference
    run_dataset(_spec(tmp_path / "s12", seed=12), FakeGenerate(), progress=False)
    other = _files(tmp_path / "s12")
    assert other["shards/shard-000000.tar"] != ref["shards/shard-000000.tar"]


def test_accelerate_engine_single_process(tmp_path: Path, reference) -> None:
    _, ref = reference
    run_dataset(_spec(tmp_path / "acc"), FakeGenerate(), engine="accelerate", progress=False)
    assert _files(tmp_path / "acc") == ref


def test_accelerate_engine_two_ranks_under_torchrun(tmp_path: Path, reference) -> None:
    """Two CPU ranks (gloo) split the shards; the dataset is the single-process one."""
    _, ref = reference
    root = tmp_path / "acc2"
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from accelerate import PartialState
        from test_dataset_runner import FakeGenerate, _spec
        from facegen.dataset.runner import run_dataset
        summary = run_dataset(_spec(Path({str(root)!r})), FakeGenerate(), engine="accelerate", progress=False)
        state = PartialState()
        print(f"rank {{state.process_index}} of {{state.num_processes}}: {{summary.accepted}}", flush=True)
    """))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script)], check=False, capture_output=True,
                          text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 of 2: 24" in proc.stdout and "rank 1 of 2: 24" in proc.stdout
    assert _files(root) == ref


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'facegen[dist]')")
def test_ray_two_workers_identical(tmp_path: Path, reference) -> None:
    import ray
    import ray.cloudpickle

    _, ref = reference
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship the fake generator by value
    try:
        summary = run_dataset(_spec(tmp_path / "ray"), FakeGenerate(), engine="ray", workers=2, progress=False)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert summary.accepted == 24
    assert _files(tmp_path / "ray") == ref


def test_imagefolder_format(tmp_path: Path) -> None:
    root = tmp_path / "if"
    summary = run_dataset(_spec(root, format="imagefolder"), FakeGenerate(), progress=False)
    assert summary.accepted == 24
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{i:06d}" for i in range(8)]
    assert sorted(p.name for p in (root / "images" / "000003").iterdir()) == ["000.png", "001.png", "002.png"]
    manifest = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert manifest[4]["file"] == "images/000001/001.png"
    assert not (root / ".tmp").exists()


def _centre_crop(rgb: np.ndarray) -> np.ndarray | None:
    import cv2

    return None if not rgb.any() else cv2.resize(rgb[4:-4, 4:-4], (112, 112))


def test_aligned_crops_are_written_beside_the_images(tmp_path: Path) -> None:
    root = tmp_path / "crops"
    run_dataset(_spec(root, num_ids=2, images_per_id=2, format="imagefolder", crops=True), FakeGenerate(),
                align_fn=_centre_crop, progress=False)
    manifest = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert [r["crop"] for r in manifest][:2] == ["crops112/000000/000.png", "crops112/000000/001.png"]
    from PIL import Image

    for r in manifest:
        crop = Image.open(root / r["crop"])
        assert crop.size == (112, 112) and crop.info["ai_generated"] == "true"
    tar_root = tmp_path / "crops-wds"
    run_dataset(_spec(tar_root, num_ids=1, images_per_id=2, crops=True), FakeGenerate(), align_fn=_centre_crop,
                progress=False)
    samples = W.read_tar_samples(W.tar_path(tar_root, 0))
    assert set(samples["000000_001"]) == {"png", "json", "crop112.png"}


# ---------------------------------------------------------------------- resume
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path: Path, reference) -> None:
    _, ref = reference
    root = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_dataset(_spec(root, batch_size=2), FakeGenerate(fail_after_calls=7), progress=False)
    assert W.shard_complete(root, 0, "webdataset") and not W.shard_complete(root, 2, "webdataset")
    assert not (root / "manifest.jsonl").exists()
    done_before = (root / "shards" / "shard-000000.tar").stat().st_mtime_ns
    gen = FakeGenerate()
    summary = run_dataset(_spec(root), gen, progress=False)
    assert summary.shards_skipped >= 1
    assert (root / "shards" / "shard-000000.tar").stat().st_mtime_ns == done_before  # skipped, not redone
    assert gen.calls < 3 * 24 / 8 + 3
    assert _files(root) == ref


def test_resume_removes_the_half_written_root_files_of_a_killed_run(tmp_path: Path, reference) -> None:
    _, ref = reference
    root = tmp_path / "temps"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_dataset(_spec(root, batch_size=2), FakeGenerate(fail_after_calls=7), progress=False)
    left = [root / f".{name}.tmp-4242-0badf00d" for name in ("manifest.jsonl", "summary.json", "spec.yaml")]
    for p in left:                                   # what a kill -9 during those writes leaves
        p.write_bytes(b"half")
    run_dataset(_spec(root), FakeGenerate(), progress=False)
    assert not any(p.exists() for p in left)
    assert _files(root) == ref


def _kill_9_mid_shard_then_resume(tmp_path: Path, spec_kw: dict, size: int) -> Path:
    """Runs the dataset in a subprocess (one image per generator call), kills it with SIGKILL
    while shard 1 is being written, then resumes it here; returns the root."""
    root = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_dataset_runner import FakeGenerate, _spec
        from facegen.dataset.runner import run_dataset
        run_dataset(_spec(__import__("pathlib").Path({str(root)!r}), batch_size=1, **{spec_kw!r}),
                    FakeGenerate(size={size}, delay=0.15), progress=False)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        # wait until shard 0 is done and shard 1 is being written, then kill it mid-shard
        while not (W.part_path(root, 0).exists() and list((root / ".tmp").glob("shard-000001.*"))):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the runner never finished a shard"
            time.sleep(0.02)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not W.part_path(root, 2).exists() and not (root / "manifest.jsonl").exists()
    assert list((root / ".tmp").iterdir())  # a partial shard was being written
    run_dataset(_spec(root, **spec_kw), FakeGenerate(size=size), progress=False)
    return root


def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path: Path, reference) -> None:
    _, ref = reference
    root = _kill_9_mid_shard_then_resume(tmp_path, {}, 32)
    assert _files(root) == ref


@pytest.mark.slow
def test_resume_after_kill_9_with_watermarked_images_is_byte_identical(tmp_path: Path) -> None:
    """Images large enough to hold the watermark (256², the 32 px ones above are too small):
    every image is marked (chunks of another composition in the killed run, one image per
    generator call) and the resumed dataset equals an uninterrupted run byte for byte."""
    kw = {"num_ids": 4, "images_per_id": 2, "shard_size": 1}
    ref_root = tmp_path / "reference"
    run_dataset(_spec(ref_root, **kw), FakeGenerate(size=256), progress=False)
    manifest = [json.loads(line) for line in (ref_root / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 8
    with tarfile.open(ref_root / "shards" / "shard-000000.tar") as tar:
        png = next(m for m in tar.getmembers() if m.name.endswith(".png"))
        meta = json.loads(Image.open(io.BytesIO(tar.extractfile(png).read())).text["facegen"])
    assert meta["provenance"]["watermark"]["embedded"] is True
    root = _kill_9_mid_shard_then_resume(tmp_path, kw, 256)
    assert _files(root) == _files(ref_root)


def test_changed_spec_in_the_same_folder_is_refused(tmp_path: Path, reference) -> None:
    root = tmp_path / "ds"
    run_dataset(_spec(root, num_ids=3), FakeGenerate(), progress=False)
    with pytest.raises(InvalidArgumentError, match=r"different spec \(changed: images_per_id, seed\)"):
        run_dataset(_spec(root, num_ids=3, seed=5, images_per_id=2), FakeGenerate(), progress=False)
    # runtime options are not a change
    run_dataset(_spec(root, num_ids=3), FakeGenerate(), batch_size=2, workers=1, progress=False)


def test_a_resume_under_other_numerics_is_refused_unless_allowed(tmp_path: Path, monkeypatch) -> None:
    import facegen.numerics as numerics
    from facegen.dataset.card import dataset_card
    from facegen.dataset.spec import stored_numerics

    root = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_dataset(_spec(root, batch_size=2), FakeGenerate(fail_after_calls=7), progress=False)
    made_with = stored_numerics(root / "spec.yaml")
    assert [e["device"] for e in made_with] == ["cpu"] and made_with[0]["threads"] == 1
    assert made_with[0]["libraries"]["torch"] == numerics.library_versions()["torch"]

    real = numerics.library_versions()
    monkeypatch.setattr(numerics, "library_versions", lambda: {**real, "diffusers": "9.9.9"})
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(InvalidArgumentError) as err:
        run_dataset(_spec(root), FakeGenerate(), progress=False)
    msg = str(err.value)
    assert "\n" not in msg and f"diffusers {real['diffusers']} -> 9.9.9" in msg and "--allow-new-numerics" in msg
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before   # nothing touched

    run_dataset(_spec(root, allow_new_numerics=True), FakeGenerate(), progress=False)
    record = stored_numerics(root / "spec.yaml")
    assert len(record) == 2 and record[1]["libraries"]["diffusers"] == "9.9.9"
    assert record[1]["allowed_by"] == "--allow-new-numerics"
    card = (root / "README.md").read_text()
    assert "resumed under other numerics" in card and f"diffusers {real['diffusers']} -> 9.9.9" in card
    assert card == dataset_card(root)
    # the new numerics are recorded: a later resume under them needs no flag
    run_dataset(_spec(root), FakeGenerate(), progress=False)


def test_the_card_names_the_numerics_it_regenerates_under(reference) -> None:
    from facegen.numerics import numerics_fingerprint

    root, _ = reference
    card = (root / "README.md").read_text()
    assert f"numerics fingerprint `{numerics_fingerprint(1)}`" in card
    assert "bit for bit on the CPU under the numerics named in Provenance" in card
    assert "resumed under other numerics" not in card


def test_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("hello")
    with pytest.raises(InvalidArgumentError, match="not an empty folder"):
        run_dataset(_spec(tmp_path), FakeGenerate(), progress=False)


# ---------------------------------------------------------------------- stats
def test_dataset_stats_matches_the_run(reference) -> None:
    root, _ = reference
    stats = dataset_stats(root)
    assert stats.accepted == 24 and stats.complete and stats.shards == 3
    assert stats.model == "tiny" and stats.fingerprint == DatasetSpec.from_yaml(root / "spec.yaml", out=root).fingerprint()
    assert stats.mean_intra_similarity is None  # no judge in a tiny run
    judged = dataset_stats(root, embed_fn=_fake_embed)  # embeds the stored images now
    assert judged.judge == "buffalo_l-w600k-r50" and judged.accepted == 24
    assert -1 <= judged.max_inter_similarity <= 1 and judged.mean_intra_similarity > 0.9


class _NoFaceJudge:
    encoder = "dlib-resnet-v1"

    def __call__(self, rgb: np.ndarray) -> None:
        return None                                  # what the judge finds in the tiny presets' noise


def test_dataset_stats_measure_measures_or_says_why_not(reference) -> None:
    """--measure printed what plain dataset-stats prints ('no judge'): it says what it tried."""
    root, _ = reference
    plain = dataset_stats(root).format_text()
    assert "not measured (no embeddings stored by the run; --measure embeds the images)" in plain
    measured = dataset_stats(root, embed_fn=_NoFaceJudge())
    assert measured.judge == "dlib-resnet-v1" and measured.mean_intra_similarity is None
    assert "dlib-resnet-v1 found no face in any of the 24 images" in measured.format_text()


# ---------------------------------------------------------------------- generator hook
def _fake_factory(preset: str, **kwargs) -> FakeGenerate:
    _fake_factory.built += 1
    return FakeGenerate(size=kwargs.get("size", 16))


_fake_factory.built = 0


def _fixed_factory(preset: str, access=None, steps: int = 1) -> FakeGenerate:
    return FakeGenerate()


def test_pipeline_generate_fn_builds_once_and_pickles_without_the_pipeline() -> None:
    fn = make_generate_fn("tiny", factory=_fake_factory, size=8)
    item = WorkItem(0, 0, 0, 5, np.ones(128, np.float32) / np.sqrt(128), 0.3)
    built = _fake_factory.built
    assert fn([item])[0].shape == (8, 8, 3) and fn([item])[0].shape == (8, 8, 3)
    assert _fake_factory.built == built + 1
    clone = pickle.loads(pickle.dumps(fn))
    assert clone._fn is None and clone.options == {"size": 8} and clone.factory is _fake_factory
    assert make_generate_fn("tiny").factory is make_dataset_generate_fn  # a plain import, no name to look up
    with pytest.raises(InvalidArgumentError, match="unknown generator option.s. stpes; the options are: steps$"):
        PipelineGenerateFn("tiny", factory=_fixed_factory, stpes=4)


# ---------------------------------------------------------------------- filters
def _emb(vec, encoder: str = "buffalo_l-w600k-r50") -> IDEmbedding:
    return IDEmbedding(np.asarray(vec, np.float32), encoder)


def _cosine(a: IDEmbedding, b: IDEmbedding) -> float:
    return float(a.normalised() @ b.normalised())


def test_filter_chain_decisions_with_injected_encoder() -> None:
    rng = np.random.default_rng(0)
    person = rng.normal(size=64)
    other = rng.normal(size=64)
    chain = FilterChain(FilterConfig(min_id_similarity=0.5), embed_fn=lambda rgb: None, similarity_fn=_cosine)

    def h() -> int:  # an unrelated 256-bit hash
        return int.from_bytes(rng.bytes(32), "big")

    s = {
        0: ImageScores(face=True, embedding=_emb(person + 0.3 * rng.normal(size=64)), ahash=h()),
        1: ImageScores(face=True, embedding=_emb(person + 0.3 * rng.normal(size=64)), ahash=h()),
        2: ImageScores(face=True, embedding=_emb(other), ahash=h()),                     # someone else
        3: ImageScores(face=False, ahash=h()),                                            # no face
    }
    # a near copy of 0: three hash bits differ
    s[4] = ImageScores(face=True, embedding=_emb(person + 0.3 * rng.normal(size=64)), ahash=s[0].ahash ^ 0b111)
    verdict = chain.decide({}, s)
    assert verdict == {0: None, 1: None, 2: "id_consistency", 3: "no_face", 4: "duplicate"}
    assert s[0].id_similarity > 0.5 > s[2].id_similarity
    # an accepted image counts: a new image of the same person passes, a near copy of it does not
    fresh = {5: ImageScores(face=True, embedding=_emb(person + 0.3 * rng.normal(size=64)), ahash=h()),
             6: ImageScores(face=True, embedding=_emb(s[1].embedding.vector * 1.001), ahash=h())}
    assert chain.decide({0: s[0], 1: s[1]}, fresh) == {5: None, 6: "duplicate"}


def test_filter_chain_needs_an_encoder_for_id_filter() -> None:
    with pytest.raises(InvalidArgumentError, match="embed_fn"):
        FilterChain(FilterConfig())
    chain = FilterChain(FilterConfig(face=True, id_consistency=False, dedup=False, min_quality=50.0),
                        face_fn=lambda rgb: True)
    flat = np.full((32, 32, 3), 100, np.uint8)
    busy = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert chain.decide({}, {0: chain.score(flat), 1: chain.score(busy)}) == {0: "quality", 1: None}


class _BadFirstAttempt(FakeGenerate):
    """Attempt 0 of image 1 of every identity is a blank frame (no face)."""

    def __call__(self, items):
        out = super().__call__(items)
        return [np.zeros_like(img) if (it.index == 1 and it.attempt == 0) else img for it, img in zip(items, out)]


def _face_if_not_blank(rgb: np.ndarray) -> bool:
    return bool(rgb.any())


def _fake_embed(rgb: np.ndarray) -> IDEmbedding | None:
    if not rgb.any():
        return None
    return _emb(np.ones(8) + 0.01 * rgb[:2, :4, 0].reshape(-1) / 255.0)


def test_rejected_images_are_regenerated_with_the_next_seed(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    spec = _spec(root, num_ids=4, images_per_id=3, filters=True, filter_encoder="buffalo_l-w600k-r50",
                 min_id_similarity=0.5, dedup=False)
    summary = run_dataset(spec, _BadFirstAttempt(), embed_fn=_fake_embed, progress=False)
    assert summary.accepted == 12 and summary.rejected == 4 and summary.rejected_by_reason == {"no_face": 4}
    assert summary.dropped == 0 and summary.generated == 16
    manifest = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert [r["attempt"] for r in manifest if r["index"] == 1] == [1, 1, 1, 1]
    assert all(r["attempt"] == 0 for r in manifest if r["index"] != 1)
    assert all(r["scores"]["face"] for r in manifest)
    assert summary.judge == "buffalo_l-w600k-r50" and summary.mean_intra_similarity is not None


class _RepeatsItself(FakeGenerate):
    """Image 2's first attempt repeats image 0 (a flat grey frame for both)."""

    def __call__(self, items):
        out = super().__call__(items)
        return [np.full_like(img, 90) if it.index == 0 or (it.index == 2 and it.attempt == 0) else img
                for it, img in zip(items, out)]


def test_near_duplicates_are_regenerated_even_without_face_filters(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    summary = run_dataset(_spec(root, num_ids=2, dedup=True), _RepeatsItself(), progress=False)
    assert summary.rejected_by_reason == {"duplicate": 2} and summary.accepted == 6
    manifest = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert [r["attempt"] for r in manifest] == [0, 0, 1, 0, 0, 1]


class _AlwaysBlankForIdentity0(FakeGenerate):
    def __call__(self, items):
        out = super().__call__(items)
        return [np.zeros_like(img) if it.identity == 0 and it.index == 0 else img for it, img in zip(items, out)]


def test_images_are_dropped_after_max_attempts(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "ds", num_ids=2, images_per_id=2, filters=True, filter_encoder="buffalo_l-w600k-r50",
                 min_id_similarity=0.5, dedup=False, max_attempts=3)
    summary = run_dataset(spec, _AlwaysBlankForIdentity0(), embed_fn=_fake_embed, progress=False)
    assert summary.accepted == 3 and summary.dropped == 1 and summary.rejected_by_reason == {"no_face": 3}


@pytest.mark.skipif(not HAVE_FACES, reason="../shared/faces not available")
def test_filters_on_real_photos_with_dlib() -> None:
    from facegen.io import load_image

    def photo(name: str) -> np.ndarray:
        img = load_image(FACES / name)
        scale = 500 / max(img.shape[:2])
        import cv2

        return cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)

    chain = FilterChain(FilterConfig(), embed_fn=EncoderEmbedFn("dlib-resnet-v1"))
    obama1, obama2, biden = photo("obama_1.jpg"), photo("obama_2.jpg"), photo("biden_1.jpg")
    obama3 = photo("obama_3_small.jpg") if (FACES / "obama_3_small.jpg").is_file() else None
    near_copy = np.clip(obama1.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, obama1.shape), 0, 255
                        ).astype(np.uint8)
    blank = np.full((300, 300, 3), 127, np.uint8)
    images = {0: obama1, 1: obama2, 2: biden, 3: blank, 4: near_copy}
    if obama3 is not None:
        images[5] = obama3
    scores = {i: chain.score(img) for i, img in images.items()}
    verdict = chain.decide({}, scores)
    assert verdict[0] is None and verdict[1] is None
    assert verdict[2] == "id_consistency"       # Biden among Obama's images
    assert verdict[3] == "no_face"
    assert verdict[4] == "duplicate"            # a near copy of image 0
    assert scores[2].id_similarity < 0.4 < scores[1].id_similarity
    assert average_hash(obama1) != average_hash(obama2)


@pytest.mark.skipif(not HAVE_FACES, reason="../shared/faces not available")
def test_run_with_real_dlib_filter_regenerates_the_wrong_person(tmp_path: Path) -> None:
    """A generator that serves real photos: identity 0 is Obama, but attempt 0 of image 2 is
    Biden; the ID filter (dlib, independent) rejects it and the retry is Obama again."""
    spec = _spec(tmp_path / "ds", num_ids=1, images_per_id=3, filters=True, filter_encoder="dlib-resnet-v1",
                 model="arc2face", embedding_dim=128)
    summary = run_dataset(spec, _PhotoGenerator(), progress=False)
    assert summary.accepted == 3 and summary.rejected_by_reason == {"id_consistency": 1}
    manifest = [json.loads(x) for x in (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()]
    assert [r["attempt"] for r in manifest] == [0, 0, 1]
    assert summary.judge == "dlib-resnet-v1" and summary.mean_intra_similarity > 0.4


class _PhotoGenerator:
    def __call__(self, items):
        import cv2

        from facegen.io import load_image

        names = {0: "obama_1.jpg", 1: "obama_2.jpg", 2: "obama_3_small.jpg"}
        out = []
        for it in items:
            name = "biden_1.jpg" if (it.index == 2 and it.attempt == 0) else names[it.index]
            img = load_image(FACES / name)
            scale = 400 / max(img.shape[:2])
            out.append(cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale))))
        return out


def test_default_batch_size_follows_the_model_on_a_gpu(tmp_path: Path, monkeypatch) -> None:
    from facegen.dataset.generator import generates_on_gpu
    from facegen.dataset.spec import default_batch_size

    assert default_batch_size("arc2face", on_gpu=True) == 32
    assert default_batch_size("instantid", on_gpu=True) == 8
    assert default_batch_size("arc2face", on_gpu=False) == 8
    assert default_batch_size("no-such-model", on_gpu=True) == 8
    assert generates_on_gpu(make_generate_fn("tiny", ModelAccess(device="cuda:1")))
    assert not generates_on_gpu(make_generate_fn("tiny", ModelAccess(device="cpu")))
    assert not generates_on_gpu(FakeGenerate())
    # unset in the spec: the runner picks it (a fake generator counts as CPU: 8 per call)
    gen = FakeGenerate()
    run_dataset(_spec(tmp_path / "auto", batch_size=None, num_ids=3), gen, progress=False)
    assert max(gen.batch_sizes) == 8
