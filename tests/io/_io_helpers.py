"""Helpers shared by the tests of facegen.io (generated fixture images, colour checks)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_FACES = Path(__file__).resolve().parents[3] / "shared" / "faces"
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)

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
