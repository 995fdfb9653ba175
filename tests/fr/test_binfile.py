"""insightface .bin sets: written from real photos, read back; a code-executing pickle is refused
and its payload never runs."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from facegen.fr.binfile import BinFormatError, read_bin, write_bin


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((112, 112)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_bin_of_shared_faces_reads_back(tmp_path, shared_faces, rgb_of):
    photos = sorted(p for p in shared_faces.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:4]
    images = [_jpeg(rgb_of(p)) for p in photos]
    path = write_bin(tmp_path / "mine.bin", images, [True, False])
    got, issame = read_bin(path)
    assert got == images and issame == [True, False]
    assert Image.open(io.BytesIO(got[0])).size == (112, 112)


def test_python2_style_pickle_reads(tmp_path):
    # protocol 2 stores Python-3 bytes through _codecs.encode: the one global such a file names
    path = tmp_path / "old.bin"
    path.write_bytes(pickle.dumps(([b"\xff\xd8a", b"\xff\xd8b"], [True]), protocol=2))
    assert read_bin(path) == ([b"\xff\xd8a", b"\xff\xd8b"], [True])


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_bin_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Payload(str(marker)), b"x"], [True])))
    with pytest.raises(BinFormatError, match=r"names '(posix|os|nt)\.system'.*refused") as err:
        read_bin(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("obj, match", [
    ({"a": 1}, "expected a pair"),
    (([b"a"], [True]), "1 images for 1 pairs"),
    ((["str", "x"], [True]), "not encoded bytes"),
    (([b"a", b"b"], ["yes"]), "not booleans"),
])
def test_other_shapes_are_refused(tmp_path, obj, match):
    path = tmp_path / "other.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(BinFormatError, match=match):
        read_bin(path)


def test_not_a_pickle_is_refused(tmp_path):
    path = tmp_path / "lfw.bin"
    path.write_bytes(b"\x00" * 64 + b"not a pickle")
    with pytest.raises(BinFormatError, match="not an insightface verification .bin"):
        read_bin(path)
