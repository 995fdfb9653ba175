"""Items 7, 9, 10, 12, 15 and 17 of issue 29: saved embeddings (``--id-embeds``), ``--reference``
arrays and their JSON sidecars, the prior of ``reject_near``, and ``dataset-report``'s walk."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from facegen.errors import FacegenError, InvalidArgumentError

from .conftest import make_fifo, within_seconds

ENC, DIM = "dlib-resnet-v1", 128


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _saved(tmp_path, arr=None, meta=None, raw_meta: bytes | None = None):
    p = tmp_path / "me.npy"
    p.write_bytes(_npy_bytes(np.ones((1, DIM), np.float32) if arr is None else arr))
    side = tmp_path / "me.json"
    side.write_bytes(raw_meta if raw_meta is not None else json.dumps(meta or {"encoder": ENC}).encode())
    return p


def _forged_header(shape: tuple, tail: bytes = b"\0" * 64) -> bytes:
    """A .npy whose header declares ``shape`` float32 but holds only ``tail``."""
    head = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)
    head = head.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head.encode() + tail


def _load_id(p):
    from facegen.id.saved import load_id_embeds

    return load_id_embeds(p)


def _load_ref(p):
    from facegen.dataset.report import load_reference

    return load_reference(p)


LOADERS = {"id-embeds": _load_id, "reference": _load_ref}


# ------------------------------------------------------------------ 10. allocation before the shape check
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_npy_header_declaring_gigabytes_is_refused_before_allocation(tmp_path, loader):
    p = tmp_path / "me.npy"
    p.write_bytes(_forged_header((100_000_000, 128)))
    (tmp_path / "me.json").write_text(json.dumps({"encoder": ENC}))
    with pytest.raises(InvalidArgumentError, match="declares"):
        LOADERS[loader](p)


def test_npz_bomb_is_not_inflated(tmp_path, monkeypatch):
    """6 MB -> 6.4 GB before the fix; here a few hundred KB that inflate past a lowered cap."""
    p = tmp_path / "ref.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("embeddings.npy", _npy_bytes(np.zeros((20_000, 128), np.float32)))
    monkeypatch.setenv("FACEGEN_MAX_FILE_BYTES", "1000000")
    with pytest.raises(InvalidArgumentError, match="FACEGEN_MAX_FILE_BYTES"):
        _load_ref(p)


def test_npz_whose_member_lies_about_its_size_stops_at_the_cap(tmp_path, monkeypatch):
    """The zip's declared size is not trusted: inflation itself stops at the cap."""
    from facegen.io.arrays import load_npz

    p = tmp_path / "ref.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("embeddings.npy", _npy_bytes(np.zeros((20_000, 128), np.float32)))
    data = bytearray(p.read_bytes())
    true_size = (20_000 * 128 * 4 + 128).to_bytes(4, "little")
    for at in [i for i in range(len(data)) if bytes(data[i:i + 4]) == true_size]:
        data[at:at + 4] = (100).to_bytes(4, "little")        # both headers now claim 100 bytes
    p.write_bytes(bytes(data))
    with pytest.raises(FacegenError, match="unreadable|inflates|truncated|declares"):
        load_npz(p, max_bytes=50_000)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_array_and_sidecar_that_are_not_regular_files_are_refused(tmp_path, loader, kind, request):
    p = _saved(tmp_path)
    side = tmp_path / "me.json"
    side.unlink()
    if kind == "fifo":
        make_fifo(side, request)
    elif kind == "dev_zero":
        side.symlink_to("/dev/zero")
    else:
        side.mkdir()
    with pytest.raises(InvalidArgumentError, match="not a regular file|directory"):
        within_seconds(lambda: LOADERS[loader](p))


def test_npy_that_is_a_fifo_is_refused(tmp_path, request):
    p = make_fifo(tmp_path / "me.npy", request)
    (tmp_path / "me.json").write_text(json.dumps({"encoder": ENC}))
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        within_seconds(lambda: _load_ref(p))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_oversize_sidecar_is_refused_by_the_cap(tmp_path, loader, monkeypatch):
    p = _saved(tmp_path, raw_meta=b'{"encoder": "' + ENC.encode() + b'", "x": "' + b"a" * 200_000 + b'"}')
    monkeypatch.setenv("FACEGEN_MAX_JSON_BYTES", "100000")
    with pytest.raises(InvalidArgumentError, match="FACEGEN_MAX_JSON_BYTES"):
        LOADERS[loader](p)


# ------------------------------------------------------------------ 9. shape and depth of the sidecars
@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("raw", [b"[1, 2]", b'{"encoder": ["x"]}', b'{"encoder": "' + ENC.encode() + b'", "names": 5}',
                                 b'{"encoder": "' + ENC.encode() + b'", "names": [[1]]}', b"[" * 200_000 + b"]" * 200_000,
                                 b'{"encoder": NaN}', b"\xff\xfe", b"{not json"])
def test_sidecar_of_the_wrong_shape_or_depth_is_one_line(tmp_path, loader, raw):
    p = _saved(tmp_path, raw_meta=raw)
    with pytest.raises(InvalidArgumentError) as exc:
        LOADERS[loader](p)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400


# ------------------------------------------------------------------ 17. never advise unpickling
@pytest.mark.parametrize("content", [os.urandom(256), b"root:x:0:0:root:/root:/bin/bash\n",
                                     b"\x93NUMPY\x01\x00" + b"\x40\x00" + b"{'descr': '|O', 'fortran_order': False, "
                                     b"'shape': (2,), }".ljust(63) + b"\n" + b"\x80\x04N."])
def test_random_bytes_npy_never_advises_allow_pickle(tmp_path, content):
    from facegen.dataset.identities import load_embeddings

    p = tmp_path / "prior.npy"
    p.write_bytes(content)
    for load in (load_embeddings, _load_ref):
        with pytest.raises(InvalidArgumentError) as exc:
            load(p)
        assert "allow_pickle" not in str(exc.value) and "pickle" not in str(exc.value).replace("never", "")


def test_id_embeds_random_bytes_never_advises_allow_pickle(tmp_path):
    p = _saved(tmp_path)
    p.write_bytes(os.urandom(300))
    with pytest.raises(InvalidArgumentError) as exc:
        _load_id(p)
    assert "allow_pickle" not in str(exc.value)


# ------------------------------------------------------------------ 15. vectors that are no identity
@pytest.mark.parametrize("arr", [np.zeros((1, DIM), np.float32), np.full((1, DIM), 3e38, np.float32),
                                 np.ones((1, DIM), np.complex64), np.full((1, DIM), 1e300)])
def test_id_embeds_that_are_no_identity_are_refused(tmp_path, arr):
    p = _saved(tmp_path, arr=arr)
    with pytest.raises(InvalidArgumentError):
        _load_id(p)


def test_id_embedding_norm_does_not_overflow():
    from facegen.id.embedding import IDEmbedding

    with pytest.raises(InvalidArgumentError, match="non-zero"):
        IDEmbedding(np.zeros(DIM, np.float32), ENC)
    with pytest.raises(InvalidArgumentError):
        IDEmbedding(np.full(DIM, 3e38, np.float32), ENC)
    ok = IDEmbedding(np.full(DIM, 1e3, np.float32), ENC)
    assert np.isclose(np.linalg.norm(ok.normalised()), 1.0)


# ------------------------------------------------------------------ 12. links out of the dataset
def test_identity_folder_linking_to_root_is_not_walked(tmp_path):
    from facegen.dataset.report import open_dataset
    from PIL import Image

    ds = tmp_path / "ds"
    (ds / "alice").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(ds / "alice" / "a.png")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(elsewhere / "deep" / "x.png")
    (ds / "bob").symlink_to(elsewhere)
    (ds / "root").symlink_to("/")
    src = within_seconds(lambda: open_dataset(ds), 30)
    assert src.identities == ["alice"]
    assert any("leading out of" in w for w in src.warnings)
