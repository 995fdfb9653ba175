"""Items 6, 10 and 11 of issue 29: dataset seals, ``inspect``'s whole-file read, ``--trust`` and the
C2PA certificate and key files (flags and ``FACEGEN_C2PA_*``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from facegen.errors import FacegenError

from conftest import assert_one_line_error, cli

from .conftest import within_seconds

pytest.importorskip("c2pa")


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    from facegen.provenance.credentials import default_identity

    return default_identity(tmp_path_factory.mktemp("fghome"))


def _zip(record_bytes: bytes, how: int = zipfile.ZIP_STORED) -> bytes:
    """A seal-like zip (c2pa signs stored zips only, as seal_dataset writes them)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", how) as zf:
        zf.writestr("dataset.json", record_bytes)
    return buf.getvalue()


def _signed_seal(folder, record, identity, raw: bytes | None = None):
    from facegen.provenance import credentials as C

    data = _zip(raw if raw is not None else json.dumps(record).encode())
    manifest = C.build_manifest(C.CREATED, title="credentials.zip", fields={"ai_generated": True})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "credentials.zip").write_bytes(C.sign_bytes(data, "ZIP", manifest, identity))
    return folder / "credentials.zip"


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ------------------------------------------------------------------ 6. seals
def test_signed_seal_listing_paths_outside_its_folder_never_vouches_for_them(tmp_path, identity):
    from facegen.provenance.seal import verify_seal

    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the dataset\n")
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "images" / "link.png").symlink_to(outside)
    record = {"dataset": "x", "files": {str(outside): _sha(outside), "../outside.txt": _sha(outside),
                                        "images/link.png": _sha(outside)}}
    seal = _signed_seal(ds, record, identity)
    rep = verify_seal(seal)
    assert rep["c2pa"]["state"] in ("valid-untrusted", "trusted")
    assert sorted(rep["changed"]) == sorted(record["files"]) and not rep["files_ok"]


@pytest.mark.parametrize("record", [{"files": [1, 2]}, {"files": {"a": 1}}, [1, 2], {"dataset": "x"},
                                    "[" * 100_000 + "]" * 100_000])
def test_signed_seal_of_the_wrong_shape_is_reported_not_a_crash(tmp_path, identity, record):
    from facegen.provenance.seal import verify_seal

    raw = record.encode() if isinstance(record, str) else None
    rep = verify_seal(_signed_seal(tmp_path / "ds", record, identity, raw=raw))
    assert not rep["files_ok"] and "dataset.json" in rep["error"]


def test_signed_seal_bomb_is_not_inflated_past_the_cap(tmp_path, identity, monkeypatch):
    from facegen.provenance.seal import verify_seal

    monkeypatch.setenv("FACEGEN_MAX_JSON_BYTES", "1000000")
    raw = b'{"files": {"' + b"a" * 5_000_000 + b'": "0"}}'
    rep = verify_seal(_signed_seal(tmp_path / "ds", None, identity, raw=raw))
    assert not rep["files_ok"] and "FACEGEN_MAX_JSON_BYTES" in rep["error"]


def _forbid_inflation(monkeypatch):
    """From now on, any attempt to open a zip member fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a zip member of an unverified seal was inflated")
    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)


def test_unsigned_seal_is_not_read_before_its_signature(tmp_path, fifo, monkeypatch):
    """An unsigned zip's listing used to be inflated whole and every path in it hashed before
    the missing signature was looked at; now its listing is never read."""
    ds = fifo.parent
    listing = json.dumps({"files": {fifo.name: "0" * 64}}).encode()
    (ds / "credentials.zip").write_bytes(_zip(listing, zipfile.ZIP_DEFLATED))
    _forbid_inflation(monkeypatch)
    from facegen.provenance.inspect import inspect_file

    with pytest.raises(FacegenError, match="not an image and not a facegen dataset seal"):
        within_seconds(lambda: inspect_file(ds / "credentials.zip"))


def test_tampered_seal_is_invalid_and_its_listing_unread(tmp_path, identity, fifo, monkeypatch):
    from facegen.provenance.seal import verify_seal

    seal = _signed_seal(fifo.parent, {"files": {fifo.name: "0" * 64}}, identity)
    data = bytearray(seal.read_bytes())
    at = bytes(data).index(fifo.name.encode())
    data[at] ^= 0x01                                     # the listing changed after signing
    seal.write_bytes(bytes(data))
    _forbid_inflation(monkeypatch)
    rep = within_seconds(lambda: verify_seal(seal))
    assert rep["c2pa"]["state"] not in ("valid-untrusted", "trusted") and not rep["files_ok"]


@pytest.mark.parametrize("content", [b"just some text\n", b"", b"PK\x03\x04garbage"])
def test_a_non_zip_named_zip_is_a_one_line_error(capfd, tmp_path, content):
    p = tmp_path / "x.zip"
    p.write_bytes(content)
    rc, _, err = cli(capfd, "inspect", p)
    assert_one_line_error(rc, err, "not an image")


def test_seal_file_that_is_a_fifo_is_refused(capfd, fifo):
    seal = fifo.parent / "credentials.zip"
    os.rename(fifo, seal)
    rc, _, err = within_seconds(lambda: cli(capfd, "inspect", seal))
    assert_one_line_error(rc, err, "not a regular file")


# ------------------------------------------------------------------ 10. inspect reads a capped, streamed file
def test_inspect_of_an_image_with_a_huge_tail_is_refused_by_the_cap(capfd, tmp_path, monkeypatch):
    p = tmp_path / "tail.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(p)
    with open(p, "ab") as fh:
        fh.write(b"\0" * 300_000)
    monkeypatch.setenv("FACEGEN_MAX_FILE_BYTES", "200000")
    rc, _, err = cli(capfd, "inspect", p)
    assert_one_line_error(rc, err, "FACEGEN_MAX_FILE_BYTES")


# ------------------------------------------------------------------ 10, 11. --trust and the C2PA files
def test_trust_that_is_a_fifo_is_refused_not_waited_on(capfd, tmp_path, fifo):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    rc, _, err = within_seconds(lambda: cli(capfd, "inspect", "--trust", fifo, img))
    assert_one_line_error(rc, err, "--trust", "not a regular file")


@pytest.mark.parametrize("content", [b"hello, not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                     b"-----END CERTIFICATE-----\n", b"\x00" * 64])
def test_trust_that_is_not_a_certificate_is_one_line(capfd, tmp_path, content):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    rc, _, err = cli(capfd, "inspect", "--trust", bad, img)
    assert_one_line_error(rc, err, "--trust", "not a PEM certificate")


def test_dev_zero_as_trust_is_refused(capfd, tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    rc, _, err = within_seconds(lambda: cli(capfd, "inspect", "--trust", "/dev/zero", img))
    assert_one_line_error(rc, err, "not a regular file")


@pytest.mark.parametrize("via_env", [False, True])
def test_c2pa_cert_and_key_fifo_or_device_are_refused(tmp_path, fifo, monkeypatch, via_env):
    from facegen.provenance.credentials import load_identity

    key = tmp_path / "key.pem"
    key.write_text("x")
    if via_env:
        monkeypatch.setenv("FACEGEN_C2PA_CERT", str(fifo))
        monkeypatch.setenv("FACEGEN_C2PA_KEY", "/dev/zero")
        call = load_identity
    else:
        def call():
            return load_identity(fifo, key)
    with pytest.raises(FacegenError, match="not a regular file"):
        within_seconds(call)


def test_oversize_c2pa_key_is_refused_by_the_cap(tmp_path, monkeypatch):
    from facegen.provenance.credentials import load_identity

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"x" * 5000)
    key.write_bytes(b"x" * 5000)
    monkeypatch.setenv("FACEGEN_MAX_JSON_BYTES", "4096")
    with pytest.raises(FacegenError, match="FACEGEN_MAX_JSON_BYTES"):
        load_identity(cert, key)
