"""Tests for facegen.io: hardened load_image, provenance-marked save_image, read_metadata.

Every fixture image is generated here under tmp_path; the real photos are only read.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import resource
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen import __version__
from facegen.errors import BadImageError, FacegenError, InvalidArgumentError
from facegen.io import (
    DEFAULT_MAX_PIXELS,
    DIGITAL_SOURCE_TYPE,
    load_image,
    read_metadata,
    resolve_max_pixels,
    save_image,
)

SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


# --------------------------------------------------------------------------- helpers



def user_fields(metadata: dict) -> dict:
    """The caller's metadata: without the provenance block the writer adds (checked here)."""
    block = metadata.get("provenance")
    assert isinstance(block, dict) and len(block.get("content_id", "")) == 4, metadata
    return {k: v for k, v in metadata.items() if k != "provenance"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG built by hand: IHDR declaring width x height, one IDAT holding ``idat``."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def two_tone(size: tuple[int, int] = (40, 20), left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another (size is W, H)."""
    im = Image.new("RGB", size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def write(tmp_path: Path, name: str, im: Image.Image, **kw) -> Path:
    path = tmp_path / name
    im.save(path, **kw)
    return path


def assert_rgb(arr: np.ndarray, shape_hw: tuple[int, int]) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape_hw, 3)
    assert arr.flags["C_CONTIGUOUS"]


def near(pixel, colour, tol: int = 6) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour, int)) <= tol))


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt, suffix, kw, exact", [
    ("PNG", ".png", {}, True),
    ("JPEG", ".jpg", {"quality": 95}, False),
    ("WEBP", ".webp", {"lossless": True}, True),
    ("BMP", ".bmp", {}, True),
    ("TIFF", ".tif", {}, True),
    ("GIF", ".gif", {}, True),
])
def test_allowed_formats_load_as_rgb(tmp_path, fmt, suffix, kw, exact):
    src = two_tone()
    path = write(tmp_path, "img" + suffix, src, format=fmt, **kw)
    arr = load_image(path)
    assert_rgb(arr, (20, 40))
    if exact:
        np.testing.assert_array_equal(arr, np.asarray(src))
    else:
        assert near(arr[10, 5], RED, 10) and near(arr[10, 35], BLUE, 10)


def test_mpo_first_picture(tmp_path):
    path = tmp_path / "camera.mpo"
    Image.new("RGB", (16, 8), RED).save(path, "MPO", save_all=True,
                                        append_images=[Image.new("RGB", (16, 8), BLUE)])
    assert Image.open(path).format == "MPO"
    arr = load_image(path)
    assert_rgb(arr, (8, 16))
    assert near(arr[4, 4], RED, 10)


@pytest.mark.parametrize("fmt, suffix, kw", [
    ("GIF", ".gif", {}),
    ("WEBP", ".webp", {"lossless": True}),
    ("PNG", ".png", {}),  # APNG
])
def test_animation_gives_first_frame(tmp_path, fmt, suffix, kw):
    frames = [Image.new("RGB", (12, 10), c) for c in (RED, BLUE, (0, 255, 0))]
    path = tmp_path / ("anim" + suffix)
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=50,
                   **kw)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    arr = load_image(path)
    assert_rgb(arr, (10, 12))
    assert (arr == RED).all()


def test_pil_image_on_later_frame_gives_first_frame_and_is_restored(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in (RED, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as im:
        im.seek(1)
        arr = load_image(im)
        assert im.tell() == 1
    assert (arr == RED).all()


# --------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("orientation, top, bottom", [(6, RED, BLUE), (8, BLUE, RED)])
def test_exif_rotated_jpeg_ends_upright(tmp_path, orientation, top, bottom):
    # Stored 40 wide x 20 high, left red / right blue. Orientation 6 = rotate 90 deg
    # clockwise to display (stored left goes to the top); 8 = counter-clockwise.
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = write(tmp_path, f"rot{orientation}.jpg", two_tone(), quality=95,
                 exif=exif.tobytes())
    arr = load_image(path)
    assert_rgb(arr, (40, 20))  # dims swapped
    assert near(arr[5, 10], top, 12)
    assert near(arr[35, 10], bottom, 12)


def test_exif_orientation_3_in_png(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180
    path = write(tmp_path, "rot3.png", two_tone(), exif=exif.tobytes())
    arr = load_image(path)
    assert_rgb(arr, (20, 40))
    assert tuple(arr[10, 5]) == BLUE and tuple(arr[10, 35]) == RED


def test_broken_exif_does_not_lose_the_image(tmp_path, monkeypatch, caplog):
    import facegen.io as fio

    def broken(im, **kw):
        raise SyntaxError("bad EXIF IFD")

    monkeypatch.setattr(fio.ImageOps, "exif_transpose", broken)
    arr = load_image(write(tmp_path, "e.jpg", two_tone(), quality=95))
    assert_rgb(arr, (20, 40))
    assert "unreadable EXIF" in caplog.text


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


# --------------------------------------------------------------------------- size limits


def test_pixel_bomb_refused_fast_before_decoding(tmp_path):
    # 40000 x 40000 RGB declared (4.8 GB decoded); the IDAT holds one compressed row only.
    idat = zlib.compress(b"\x00" + b"\x00" * (40000 * 3), 9)
    path = tmp_path / "bomb.png"
    path.write_bytes(raw_png(40000, 40000, 8, 2, idat))
    assert path.stat().st_size < 4096
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(BadImageError, match=r"1,600,000,000 pixels is over the limit") as info:
        load_image(path)
    elapsed = time.perf_counter() - start
    rss_growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    if sys.platform == "darwin":
        rss_growth_kb //= 1024
    assert elapsed < 1.0
    assert rss_growth_kb < 200_000  # never allocated the 4.8 GB image
    assert "bomb.png" in str(info.value)


def test_pixel_bomb_also_refused_from_bytes_and_even_with_a_raised_limit(tmp_path):
    data = raw_png(40000, 40000, 8, 0, zlib.compress(b"\x00" * 40001))
    with pytest.raises(BadImageError, match="pixels"):
        load_image(data)
    # Our limit raised to 10 gigapixels: Pillow's own hard limit still refuses, as ours.
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(data, max_pixels=10**10)


@pytest.mark.parametrize("side", [8000, 10000])
def test_header_over_our_limit_but_under_pillows_hard_limit(tmp_path, side):
    # 64 MP: under Pillow's warning level; 100 MP: between its warning and error levels.
    path = tmp_path / "big.png"
    path.write_bytes(raw_png(side, side, 8, 0, zlib.compress(b"\x00" * (side + 1))))
    start = time.perf_counter()
    with pytest.raises(BadImageError, match=f"{side * side:,} pixels is over the limit of "
                                            f"{DEFAULT_MAX_PIXELS:,}"):
        load_image(path)
    assert time.perf_counter() - start < 1.0


def test_max_pixels_argument_and_environment(tmp_path, monkeypatch):
    path = write(tmp_path, "s.png", Image.new("RGB", (100, 60)))
    assert load_image(path).shape == (60, 100, 3)
    with pytest.raises(BadImageError, match="6,000 pixels is over the limit of 5,999"):
        load_image(path, max_pixels=5999)
    assert load_image(path, max_pixels=6000).shape == (60, 100, 3)

    monkeypatch.setenv("FACEGEN_MAX_PIXELS", "1000")
    assert resolve_max_pixels() == 1000
    with pytest.raises(BadImageError, match="FACEGEN_MAX_PIXELS"):
        load_image(path)
    assert load_image(path, max_pixels=10_000).shape == (60, 100, 3)  # argument wins
    monkeypatch.setenv("FACEGEN_MAX_PIXELS", "lots")
    with pytest.raises(InvalidArgumentError, match="FACEGEN_MAX_PIXELS"):
        load_image(path)
    monkeypatch.delenv("FACEGEN_MAX_PIXELS")
    assert resolve_max_pixels() == DEFAULT_MAX_PIXELS
    with pytest.raises(InvalidArgumentError, match="max_pixels"):
        load_image(path, max_pixels=0)


def test_pillow_bomb_warning_and_error_become_ours(tmp_path, monkeypatch):
    path = write(tmp_path, "m.png", Image.new("RGB", (40, 40)))  # 1600 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # over Pillow's warning level, under its error level; our limit is at/below Pillow's
    with pytest.raises(BadImageError):
        load_image(path, max_pixels=1000)
    # our limit above Pillow's: the caller allowed it, no warning escapes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, max_pixels=2000).shape == (40, 40, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1600 > 2 * 500: Pillow's error
    with pytest.raises(BadImageError, match="MAX_IMAGE_PIXELS"):
        load_image(path, max_pixels=10_000)


# --------------------------------------------------------------------------- bad input


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(BadImageError, match=r"empty.png: empty file"):
        load_image(path)
    with pytest.raises(BadImageError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg"),
                                         ("WEBP", ".webp"), ("GIF", ".gif")])
def test_truncated_file(tmp_path, fmt, suffix):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    path = tmp_path / ("cut" + suffix)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImageError, match=r"cut\.") as info:
        load_image(path)
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)


def test_header_only_png_is_truncated(tmp_path):
    path = tmp_path / "head.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(BadImageError, match=r"head.png: starts like a PNG file"):
        load_image(path)


def test_non_image_bytes(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_bytes(b"hello, this is not an image at all\n" * 20)
    with pytest.raises(BadImageError, match=r"notes.jpg: not a recognised image"):
        load_image(path)
    with pytest.raises(BadImageError, match="HTML page"):
        load_image(b"<!DOCTYPE html><html><body>404</body></html>")
    with pytest.raises(BadImageError, match="PDF"):
        load_image(b"%PDF-1.7\n%...")


def test_svg_is_not_supported(tmp_path):
    svg = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
           b'height="10"><rect width="10" height="10"/></svg>')
    path = tmp_path / "logo.svg"
    path.write_bytes(svg)
    with pytest.raises(BadImageError, match=r"logo.svg: SVG is not supported"):
        load_image(path)
    with pytest.raises(BadImageError, match="SVG is not supported"):
        load_image(svg)


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(BadImageError, match="is a directory"):
        load_image(tmp_path)
    missing = tmp_path / "nope.png"
    with pytest.raises(BadImageError, match=r"nope.png: no such file"):
        load_image(missing)
    with pytest.raises(BadImageError, match="no such file"):
        load_image(str(missing))


@pytest.mark.parametrize("fmt, suffix", [("ICO", ".ico"), ("PPM", ".ppm"), ("TGA", ".tga"),
                                         ("PCX", ".pcx")])
def test_format_outside_allowlist(tmp_path, fmt, suffix):
    path = write(tmp_path, "x" + suffix, Image.new("RGB", (16, 16)), format=fmt)
    with pytest.raises(BadImageError, match=rf"x\{suffix}: image format {fmt} is not allowed"):
        load_image(path)
    assert load_image(path, allowed_formats={fmt}).shape == (16, 16, 3)


def test_allowed_formats_can_be_narrowed(tmp_path):
    path = write(tmp_path, "ok.png", Image.new("RGB", (4, 4)))
    with pytest.raises(BadImageError, match="PNG is not allowed"):
        load_image(path, allowed_formats=["jpg"])
    assert load_image(path, allowed_formats="png").shape == (4, 4, 3)
    with pytest.raises(InvalidArgumentError):
        load_image(path, allowed_formats=[])


def test_unsupported_source_type():
    with pytest.raises(InvalidArgumentError, match="int"):
        load_image(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- other sources


def test_bytes_file_objects_and_pil(tmp_path):
    src = two_tone((10, 6))
    path = write(tmp_path, "t.png", src)
    expected = np.asarray(src)
    np.testing.assert_array_equal(load_image(path.read_bytes()), expected)
    np.testing.assert_array_equal(load_image(bytearray(path.read_bytes())), expected)
    np.testing.assert_array_equal(load_image(io.BytesIO(path.read_bytes())), expected)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(load_image(fh), expected)

    class Stream:  # a pipe-like object: read() only
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._buf.read(n)

        def seekable(self) -> bool:
            return False

    np.testing.assert_array_equal(load_image(Stream(path.read_bytes())), expected)
    np.testing.assert_array_equal(load_image(src), expected)
    np.testing.assert_array_equal(load_image(src.convert("RGBA")), expected)
    with Image.open(path) as lazy:
        np.testing.assert_array_equal(load_image(lazy), expected)

    broken = io.BytesIO(b"garbage bytes")
    broken.name = "upload.png"
    with pytest.raises(BadImageError, match="upload.png"):
        load_image(broken)


def test_pil_image_outside_allowlist_or_too_big(tmp_path):
    path = write(tmp_path, "x.ico", Image.new("RGB", (16, 16)))
    with Image.open(path) as im, pytest.raises(BadImageError, match="ICO is not allowed"):
        load_image(im)
    with pytest.raises(BadImageError, match="over the limit"):
        load_image(Image.new("RGB", (100, 100)), max_pixels=9999)


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


# --------------------------------------------------------------------------- real photos


def _insightface_photo() -> Path | None:
    spec = importlib.util.find_spec("insightface")  # finds, does not import
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "images" / "Tom_Hanks_54745.png"
    return path if path.is_file() else None


def test_real_photo_from_insightface_wheel():
    path = _insightface_photo()
    if path is None:
        pytest.skip("insightface (and its sample photo) not installed")
    with Image.open(path) as im:
        width, height = im.size
    arr = load_image(path)
    assert_rgb(arr, (height, width))
    assert arr.std() > 10  # a real photo, not a blank
    np.testing.assert_array_equal(load_image(path.read_bytes()), arr)


def test_real_jpeg_from_shared_faces():
    photos = sorted(SHARED_FACES.glob("*.jpg")) if SHARED_FACES.is_dir() else []
    if not photos:
        pytest.skip(f"no photos in {SHARED_FACES}")
    arr = load_image(photos[0])
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert min(arr.shape[:2]) > 32


# --------------------------------------------------------------------------- save / read


META = {"preset": "tiny", "adapter": "arc2face", "seed": 1234, "guidance": 3.0,
        "prompt": "photo of a id person, café ☕", "tags": ["a", "b"],
        "np_seed": np.int64(7), "ok": True}


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (24, 32, 3), np.uint8)
    out = save_image(tmp_path / "gen.png", rgb, META)
    assert out == tmp_path / "gen.png"
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
