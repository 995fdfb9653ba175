"""Tests for facegen.io.images: load_image from every source and format, EXIF, bad input.

Every fixture image is generated here under tmp_path; the real photos are only read.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.errors import BadImageError, InvalidArgumentError
from facegen.io import load_image

from _io_helpers import BLUE, RED, SHARED_FACES, assert_rgb, near, two_tone, write  # tests/io helper module


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
    from facegen.io import images

    def broken(im, **kw):
        raise SyntaxError("bad EXIF IFD")

    monkeypatch.setattr(images.ImageOps, "exif_transpose", broken)
    arr = load_image(write(tmp_path, "e.jpg", two_tone(), quality=95))
    assert_rgb(arr, (20, 40))
    assert "unreadable EXIF" in caplog.text


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
