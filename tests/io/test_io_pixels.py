"""Tests for facegen.io.pixels: every colour mode and array layout to RGB uint8.

Every fixture image is generated here under tmp_path; the real photos are only read.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pytest
from PIL import Image

from facegen.errors import BadImageError
from facegen.io import load_image

from _io_helpers import RED, WHITE, assert_rgb, near, raw_png, write  # tests/io helper module


# --------------------------------------------------------------------------- modes


def test_grey_and_bilevel(tmp_path):
    grey = Image.fromarray(np.array([[0, 100, 255]], np.uint8), mode="L")
    arr = load_image(write(tmp_path, "g.png", grey))
    assert_rgb(arr, (1, 3))
    np.testing.assert_array_equal(arr[0, :, 0], [0, 100, 255])
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()

    bilevel = Image.new("1", (4, 2), 0)
    bilevel.putpixel((3, 1), 1)
    arr = load_image(write(tmp_path, "b.png", bilevel))
    assert_rgb(arr, (2, 4))
    assert tuple(arr[1, 3]) == WHITE and tuple(arr[0, 0]) == (0, 0, 0)


def test_palette_with_transparency_composited_on_white(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 0)  # index 0 is transparent
    path = write(tmp_path, "p.png", im, transparency=0)
    assert Image.open(path).mode == "P"
    arr = load_image(path)
    assert_rgb(arr, (4, 4))
    assert tuple(arr[0, 0]) == WHITE
    assert tuple(arr[2, 2]) == RED


def test_rgba_and_la_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (3, 2), (255, 0, 0, 128))
    rgba.putpixel((0, 0), (0, 0, 255, 0))
    arr = load_image(write(tmp_path, "rgba.png", rgba))
    assert_rgb(arr, (2, 3))
    assert tuple(arr[0, 0]) == WHITE  # fully transparent
    assert near(arr[1, 1], (255, 127, 127), 1)  # half red over white

    la = Image.new("LA", (2, 2), (0, 0))
    la.putpixel((1, 1), (0, 255))
    arr = load_image(write(tmp_path, "la.png", la))
    assert tuple(arr[0, 0]) == WHITE and tuple(arr[1, 1]) == (0, 0, 0)


def test_cmyk_tiff_and_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))
    cmyk.putpixel((1, 1), (0, 255, 255, 0))  # red
    arr = load_image(write(tmp_path, "c.tif", cmyk))
    assert_rgb(arr, (4, 4))
    assert tuple(arr[0, 0]) == WHITE and tuple(arr[1, 1]) == RED

    solid = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    path = write(tmp_path, "c.jpg", solid, quality=95)
    assert Image.open(path).mode == "CMYK"
    arr = load_image(path)
    assert_rgb(arr, (16, 16))
    assert near(arr[8, 8], RED, 12)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_scaled_not_clipped(tmp_path, fmt):
    values = np.array([[0, 256, 32768, 65535]], np.uint16)
    path = tmp_path / f"g16.{fmt.lower()}"
    Image.fromarray(values).save(path, format=fmt)
    assert Image.open(path).mode.startswith("I;16")
    arr = load_image(path)
    assert_rgb(arr, (1, 4))
    # clipping (Pillow's convert("L")) would give 255 for 256 and 32768
    np.testing.assert_array_equal(arr[0, :, 0], [0, 1, 128, 255])


def test_16bit_rgb_png(tmp_path):
    pixels = np.array([[[0xFFFF, 0x8000, 0x0000], [0x0000, 0x4000, 0xFFFF]]], ">u2")
    rows = b"\x00" + pixels.tobytes()
    path = tmp_path / "rgb16.png"
    path.write_bytes(raw_png(2, 1, 16, 2, zlib.compress(rows)))
    arr = load_image(path)
    assert_rgb(arr, (1, 2))
    assert near(arr[0, 0], (255, 128, 0), 1) and near(arr[0, 1], (0, 64, 255), 1)


def test_32bit_int_and_float_tiff(tmp_path):
    ints = Image.fromarray(np.array([[0, 32768, 65535]], np.int32))
    assert ints.mode == "I"
    arr = load_image(write(tmp_path, "i.tif", ints))
    np.testing.assert_array_equal(arr[0, :, 0], [0, 128, 255])

    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert floats.mode == "F"
    arr = load_image(write(tmp_path, "f.tif", floats))
    assert_rgb(arr, (1, 3))
    np.testing.assert_array_equal(arr[0, :, 0], [0, 128, 255])


# --------------------------------------------------------------------------- numpy


def test_numpy_inputs():
    grey = np.array([[0, 128], [255, 7]], np.uint8)
    out = load_image(grey)
    assert_rgb(out, (2, 2))
    np.testing.assert_array_equal(out[..., 2], grey)
    assert load_image(grey[:, :, None]).shape == (2, 2, 3)

    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), np.uint8)
    out = load_image(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, rgb)  # caller's array is never aliased
    strided = rgb[:, ::2]
    out = load_image(strided)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, strided)

    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (255, 0, 0, 0)
    np.testing.assert_array_equal(load_image(rgba)[0], [RED, WHITE])

    np.testing.assert_array_equal(load_image(np.array([[0, 32768, 65535]], np.uint16))[0, :, 0],
                                  [0, 128, 255])
    np.testing.assert_array_equal(
        load_image(np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 1], [0, 128, 255])
    np.testing.assert_array_equal(load_image(np.array([[True, False]]))[0, :, 0], [255, 0])


@pytest.mark.parametrize("arr, match", [
    (np.zeros((0, 10, 3), np.uint8), "no pixels"),
    (np.zeros((10, 0), np.uint8), "no pixels"),
    (np.zeros((2, 2, 2, 3), np.uint8), "shape"),
    (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.zeros(7, np.uint8), "shape"),
    (np.full((2, 2, 3), 200.0), r"\[0, 1\].*divide by 255"),
    (np.full((2, 2), np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 3), np.int64), "dtype int64"),
    (np.zeros((2, 2), object), "dtype object"),
])
def test_bad_numpy_arrays(arr, match):
    with pytest.raises(BadImageError, match=match):
        load_image(arr)


def test_absurd_numpy_array_refused_without_touching_it():
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (100_000, 100_000, 3),
                                           (0, 0, 0))
    start = time.perf_counter()
    with pytest.raises(BadImageError, match="over the limit"):
        load_image(huge)
    assert time.perf_counter() - start < 1.0
