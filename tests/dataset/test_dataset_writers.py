"""Dataset writers (tar shards, ImageFolder, manifest parts) and the DatasetSpec."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_FACES
from facegen.dataset import writers as W
from facegen.dataset.spec import DatasetSpec
from facegen.errors import InvalidArgumentError
from facegen.io.atomic import atomic_write_bytes

FACES = SHARED_FACES


def _rgb(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _write_shard(root: Path, fmt: str, shard: int = 0, n_ids: int = 2, k: int = 3) -> list[dict]:
    writer = W.ShardWriter(root, shard, fmt)
    records = []
    for ident in range(shard * n_ids, shard * n_ids + n_ids):
        for idx in range(k):
            key = f"{ident:06d}_{idx:03d}"
            rec = {"key": key, "identity": ident, "index": idx, "seed": 1000 * ident + idx}
            png = W.encode_png(_rgb(ident * 10 + idx), {"seed": rec["seed"], "identity": ident})
            writer.add(key, ident, idx, png, rec)
            records.append({**rec, **writer.location(ident, idx)})
    writer.commit()
    return records


# ---------------------------------------------------------------------- png + tar
def test_encode_png_round_trip_with_provenance() -> None:
    rgb = _rgb(0)
    data = W.encode_png(rgb, {"seed": 7, "model": "tiny"})
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb)
    assert im.info["ai_generated"] == "true"
    written = json.loads(im.info["facegen"])
    assert written.pop("provenance")["c2pa"].startswith("covered by the dataset's signed manifest")
    assert written == {"seed": 7, "model": "tiny"}
    assert W.encode_png(rgb, {"seed": 7, "model": "tiny"}) == data  # deterministic bytes


def test_webdataset_shard_round_trip(tmp_path: Path) -> None:
    records = _write_shard(tmp_path, "webdataset")
    tar = W.tar_path(tmp_path, 0)
    assert tar.is_file() and not list((tmp_path / W.TMP_DIR).iterdir())
    with tarfile.open(tar) as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    assert names[:2] == ["000000_000.json", "000000_000.png"] and len(names) == 12
    samples = W.read_tar_samples(tar)
    assert sorted(samples) == [r["key"] for r in records]
    for r in records:
        s = samples[r["key"]]
        assert json.loads(s["json"]) == {k: v for k, v in r.items() if k != "shard"}
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(s["png"]))),
                                      _rgb(r["identity"] * 10 + r["index"]))
        assert r["shard"] == "shards/shard-000000.tar"
    first = tar.read_bytes()
    _write_shard(tmp_path, "webdataset")  # rewriting gives the same bytes
    assert tar.read_bytes() == first


def test_abort_and_crash_leave_no_final_shard(tmp_path: Path) -> None:
    writer = W.ShardWriter(tmp_path, 3, "webdataset")
    writer.add("000009_000", 9, 0, W.encode_png(_rgb(1), {}), {"key": "000009_000"})
    # a crash: the writer is never committed; only a temporary file exists
    assert not W.tar_path(tmp_path, 3).exists()
    leftovers = list((tmp_path / W.TMP_DIR).glob("shard-000003.*"))
    assert leftovers
    assert W.clean_shard_temps(tmp_path, 3) == len(leftovers)
    assert not list((tmp_path / W.TMP_DIR).iterdir())
    w2 = W.ShardWriter(tmp_path, 4, "webdataset")
    w2.abort()
    assert not W.tar_path(tmp_path, 4).exists() and not list((tmp_path / W.TMP_DIR).iterdir())


def test_imagefolder_layout_and_redo(tmp_path: Path) -> None:
    records = _write_shard(tmp_path, "imagefolder")
    assert records[4]["file"] == "images/000001/001.png"
    for r in records:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / r["file"])),
                                      _rgb(r["identity"] * 10 + r["index"]))
    # a crashed earlier attempt left a stray file in an identity folder: a redo replaces it whole
    stray = tmp_path / "images" / "000000" / "999.png"
    stray.write_bytes(b"junk")
    _write_shard(tmp_path, "imagefolder")
    assert not stray.exists()
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["000000", "000001"]


def test_imagefolder_crops(tmp_path: Path) -> None:
    writer = W.ShardWriter(tmp_path, 0, "imagefolder")
    png = W.encode_png(_rgb(0), {})
    crop = W.encode_png(_rgb(1, 112), {"crop": "arcface112"})
    writer.add("000000_000", 0, 0, png, {}, crop_png=crop)
    writer.commit()
    assert (tmp_path / "crops112" / "000000" / "000.png").read_bytes() == crop
    assert Image.open(tmp_path / "crops112/000000/000.png").size == (112, 112)


def test_parts_done_markers_and_manifest(tmp_path: Path) -> None:
    all_records = []
    for shard in range(2):
        recs = _write_shard(tmp_path, "webdataset", shard=shard)
        assert not W.shard_complete(tmp_path, shard, "webdataset")  # files alone are not "done"
        emb = np.arange(len(recs) * 4, dtype=np.float32).reshape(len(recs), 4)
        W.write_part(tmp_path, shard, recs, {"accepted": len(recs)}, emb)
        assert W.shard_complete(tmp_path, shard, "webdataset")
        np.testing.assert_array_equal(np.load(W.embeddings_path(tmp_path, shard)), emb)
        all_records += recs
    assert W.write_manifest(tmp_path, 2) == 12
    lines = (tmp_path / W.MANIFEST).read_text().splitlines()
    assert [json.loads(x) for x in lines] == all_records
    W.tar_path(tmp_path, 1).unlink()
    assert not W.shard_complete(tmp_path, 1, "webdataset")


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.json"
    atomic_write_bytes(target, b"1")
    atomic_write_bytes(target, b"2")
    assert target.read_bytes() == b"2"
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]


@pytest.mark.skipif(not (FACES / "obama_1.jpg").is_file(), reason="../shared/faces not available")
def test_arcface_crop_fn_on_a_real_photo() -> None:
    from facegen.io import load_image

    crop_fn = W.ArcFaceCropFn()
    crop = crop_fn(load_image(FACES / "obama_1.jpg"))
    assert crop is not None and crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert crop.std() > 20  # a face, not a black border
    assert crop_fn(np.full((200, 200, 3), 127, np.uint8)) is None


# ---------------------------------------------------------------------- spec
def test_spec_yaml_round_trip(tmp_path: Path) -> None:
    spec = DatasetSpec(out=str(tmp_path / "ds"), num_ids=5, images_per_id=2, seed=3, prompts=("a", "b"),
                       poses=(-20, 20), generator={"steps": 2})
    path = tmp_path / "spec.yaml"
    spec.to_yaml(path, extra={"fingerprint": spec.fingerprint()})
    back = DatasetSpec.from_yaml(path)
    assert back == spec
    assert back.fingerprint() == spec.fingerprint()


def test_fingerprint_ignores_runtime_fields_only(tmp_path: Path) -> None:
    spec = DatasetSpec(out="a", num_ids=5)
    same = DatasetSpec(out="b", num_ids=5, workers=4, batch_size=32, engine="ray", models_dir="/x")
    assert spec.fingerprint() == same.fingerprint()
    for change in ({"seed": 1}, {"num_ids": 6}, {"format": "imagefolder"}, {"shard_size": 7},
                   {"noise_levels": (0.1, 0.2, 0.3)}, {"filters": True}, {"max_attempts": 2},
                   {"generator": {"steps": 4}}):
        other = DatasetSpec(out="a", **{"num_ids": 5, **change})
        assert other.fingerprint() != spec.fingerprint(), change
        assert other.differences(spec) == sorted(change)
    # a file field enters by content, not by path
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.ones((3, 4)))
    np.save(b, np.ones((3, 4)))
    assert DatasetSpec(out="x", prior=str(a)).fingerprint() == DatasetSpec(out="x", prior=str(b)).fingerprint()
    np.save(b, np.zeros((3, 4)))
    assert DatasetSpec(out="x", prior=str(a)).fingerprint() != DatasetSpec(out="x", prior=str(b)).fingerprint()


@pytest.mark.parametrize("change, match", [
    ({"num_ids": 0}, "num_ids"),
    ({"format": "lmdb"}, "format"),
    ({"engine": "spark"}, "engine"),
    ({"noise_shares": (0.5, 0.5, 0.5)}, "noise_shares"),
    ({"prior": "/nope.npy"}, "prior: file not found"),
    ({"seed": -1}, "seed"),
])
def test_spec_validation(change: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        DatasetSpec(out="x", **change).validate()


def test_unknown_spec_field(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("out: x\nnum_idz: 3\n")
    with pytest.raises(InvalidArgumentError, match="num_idz"):
        DatasetSpec.from_yaml(path)


def test_resolved_tiny_preset() -> None:
    spec = DatasetSpec(out="x", model="tiny").resolved()
    assert spec.embedding_dim == 128 and spec.filters is False and spec.is_tiny()
    with pytest.raises(InvalidArgumentError, match="independent"):
        DatasetSpec(out="x", model="tiny", filters=True, filter_encoder="dlib-resnet-v1").resolved()
    with pytest.raises(InvalidArgumentError, match="embedding_dim"):
        DatasetSpec(out="x", model="no-such-preset").resolved()
