"""Tests for facegen.io.guard: the pixel limit and the decompression-bomb guard.

Every fixture image is generated here under tmp_path; the real photos are only read.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
import zlib

import pytest
from PIL import Image

from facegen.errors import BadImageError, InvalidArgumentError
from facegen.io import DEFAULT_MAX_PIXELS, load_image, resolve_max_pixels

from _io_helpers import raw_png, write  # tests/io helper module


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
