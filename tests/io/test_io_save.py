"""Tests for facegen.io.save and facegen.io.metadata: provenance-marked save_image,
encode_png, and read_metadata.

Every fixture image is generated here under tmp_path; the real photos are only read.
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from facegen import __version__
from facegen.errors import BadImageError, FacegenError, InvalidArgumentError
from facegen.io import DIGITAL_SOURCE_TYPE, load_image, read_metadata, save_image

from _io_helpers import near, raw_png, user_fields, write  # tests/io helper module


# --------------------------------------------------------------------------- save / read


META = {"preset": "tiny", "adapter": "arc2face", "seed": 1234, "guidance": 3.0,
        "prompt": "photo of a id person, café ☕", "tags": ["a", "b"],
        "np_seed": np.int64(7), "ok": True}


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (24, 32, 3), np.uint8)
    out = save_image(tmp_path / "gen.png", rgb, META)
    assert out.path == tmp_path / "gen.png" and out.format == "PNG"
    assert out.metadata == read_metadata(out)["metadata"]      # what it wrote, without reading it back
    np.testing.assert_array_equal(load_image(out), rgb)  # lossless

    with Image.open(out) as im:  # what any PNG reader sees
        info = im.info
    assert info["ai_generated"] == "true"
    assert info["Software"] == f"facegen {__version__}"
    assert info["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert json.loads(info["facegen"])["seed"] == 1234
    assert info["preset"] == "tiny" and info["seed"] == "1234" and info["ok"] == "true"
    assert info["prompt"] == META["prompt"]
    assert "tags" not in info  # lists only in the JSON
    assert b"trainedAlgorithmicMedia" in info["xmp"]

    meta = read_metadata(out)
    assert meta["format"] == "PNG"
    assert meta["ai_generated"] is True
    assert meta["software"] == f"facegen {__version__}"
    assert meta["digital_source_type"] == DIGITAL_SOURCE_TYPE
    expected = {**META, "np_seed": 7}
    assert user_fields(meta["metadata"]) == expected
    assert meta["text"]["adapter"] == "arc2face"


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP")])
def test_jpeg_and_webp_round_trip(tmp_path, suffix, fmt):
    rgb = np.full((16, 16, 3), (200, 30, 40), np.uint8)
    out = save_image(tmp_path / ("gen" + suffix), rgb, META)
    with Image.open(out) as im:
        assert im.format == fmt
        exif = im.getexif()
        assert exif[0x0131] == f"facegen {__version__}"
        assert "AI-generated" in exif[0x010E]
        assert b"trainedAlgorithmicMedia" in im.info["xmp"]
    assert near(load_image(out)[8, 8], (200, 30, 40), 8)
    meta = read_metadata(out)
    assert meta["format"] == fmt
    assert meta["ai_generated"] is True
    assert meta["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert meta["software"] == f"facegen {__version__}"
    assert user_fields(meta["metadata"]) == {**META, "np_seed": 7}
    assert json.loads(meta["text"]["UserComment"])["prompt"] == META["prompt"]


def test_save_without_metadata_and_from_pil(tmp_path):
    out = save_image(tmp_path / "deep" / "er" / "a.png", Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert (load_image(out) == 255).all()  # alpha composited on white
    meta = read_metadata(out)
    assert meta["ai_generated"] is True and user_fields(meta["metadata"]) == {}


def test_read_metadata_of_foreign_images(tmp_path):
    plain = write(tmp_path, "plain.png", Image.new("RGB", (4, 4)))
    meta = read_metadata(plain)
    assert meta["ai_generated"] is False and meta["metadata"] == {} and meta["software"] is None
    jpg = write(tmp_path, "plain.jpg", Image.new("RGB", (4, 4)))
    assert read_metadata(jpg)["ai_generated"] is False
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(BadImageError, match="bad.png"):
        read_metadata(bad)
    with pytest.raises(BadImageError, match="no such file"):
        read_metadata(tmp_path / "missing.png")


def test_read_metadata_never_decodes_pixels(tmp_path):
    path = tmp_path / "big.png"  # 100 MP declared: over Pillow's warning level
    path.write_bytes(raw_png(10000, 10000, 8, 0, zlib.compress(b"\x00" * 10001)))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_metadata(path)["format"] == "PNG"
    assert time.perf_counter() - start < 1.0


def test_save_is_atomic_and_replaces(tmp_path):
    target = tmp_path / "out.png"
    save_image(target, np.zeros((4, 4, 3), np.uint8), {"seed": 1})
    save_image(target, np.full((4, 4, 3), 255, np.uint8), {"seed": 2})
    assert user_fields(read_metadata(target)["metadata"]) == {"seed": 2}
    assert (load_image(target) == 255).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp files left

    before = target.read_bytes()
    with pytest.raises(InvalidArgumentError, match=r"metadata\['obj'\]"):
        save_image(target, np.zeros((4, 4, 3), np.uint8), {"obj": object()})
    huge = {"blob": "x" * 70_000}
    with pytest.raises(InvalidArgumentError, match="JPEG"):
        save_image(tmp_path / "big.jpg", np.zeros((4, 4, 3), np.uint8), huge)
    assert target.read_bytes() == before  # untouched by the failures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_save_rejections(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InvalidArgumentError, match="suffix"):
        save_image(tmp_path / "a.gif", rgb)
    with pytest.raises(InvalidArgumentError, match="suffix"):
        save_image(tmp_path / "noext", rgb)
    with pytest.raises(InvalidArgumentError, match="reserved"):
        save_image(tmp_path / "a.png", rgb, {"ai_generated": "false"})
    with pytest.raises(InvalidArgumentError, match="directory"):
        (tmp_path / "d.png").mkdir()
        save_image(tmp_path / "d.png", rgb)
    with pytest.raises(BadImageError):
        save_image(tmp_path / "a.png", np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(InvalidArgumentError):
        save_image(tmp_path / "a.png", "not an image")  # type: ignore[arg-type]


def test_write_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(FacegenError, match="cannot write .*Permission denied"):
        save_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_save_into_readonly_folder_is_a_facegen_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(FacegenError, match="cannot write"):
            save_image(folder / "a.png", np.zeros((2, 2, 3), np.uint8))
    finally:
        folder.chmod(0o700)


def test_encode_png_carries_the_same_provenance(tmp_path):
    from facegen.io import encode_png, read_metadata, save_image
    rgb = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    data = encode_png(rgb, {"preset": "tiny", "seed": 3})
    (tmp_path / "a.png").write_bytes(data)
    save_image(tmp_path / "b.png", rgb, {"preset": "tiny", "seed": 3})
    a, b = read_metadata(tmp_path / "a.png"), read_metadata(tmp_path / "b.png")
    assert a["ai_generated"] and a["metadata"] == b["metadata"]
    assert user_fields(a["metadata"]) == {"preset": "tiny", "seed": 3}
    assert np.array_equal(load_image(data), rgb)
