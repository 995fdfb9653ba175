"""Shared fixtures: real photos (shared folder, insightface wheel) located without copying them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO.parent / "shared" / "faces"


def insightface_images_dir() -> Path | None:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "data" / "images"
    return d if d.is_dir() else None


@pytest.fixture(scope="session")
def tom_hanks_path() -> Path:
    d = insightface_images_dir()
    if d is None or not (d / "Tom_Hanks_54745.png").is_file():
        pytest.skip("the insightface wheel (with its example photos) is not installed")
    return d / "Tom_Hanks_54745.png"


@pytest.fixture(scope="session")
def group_photo_path() -> Path:
    d = insightface_images_dir()
    if d is None or not (d / "t1.jpg").is_file():
        pytest.skip("the insightface wheel (with its example photos) is not installed")
    return d / "t1.jpg"


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/faces is absent")
    return SHARED_FACES


def identity_of(path: Path) -> str:
    """obama_3_small.jpg -> obama; lin_manuel_miranda_1.png -> lin_manuel_miranda."""
    parts = path.stem.split("_")
    while parts and (parts[-1].isdigit() or parts[-1] == "small"):
        parts.pop()
    return "_".join(parts)


@pytest.fixture(scope="session")
def rgb_of():
    from facegen.io import load_image

    cache: dict[Path, np.ndarray] = {}

    def _load(path: Path) -> np.ndarray:
        if path not in cache:
            cache[path] = load_image(path)
        return cache[path]

    return _load


# ------------------------------------------------------------------ a local S3 server (moto)
#: the secret every S3 test puts in the environment: it must appear in no object and no log line
FAKE_S3_SECRET = "fAkE-sEcReT-d0-n0t-l3ak-7f3a9c"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP server (moto in server mode) on 127.0.0.1, for the whole session."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)      # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class S3Bucket:
    """An empty bucket of the local server: ``url`` (``s3://name``), ``env`` (for subprocesses),
    ``objects()`` ({key: bytes}) and ``client`` (boto3)."""

    def __init__(self, name: str, endpoint: str, env: dict[str, str]) -> None:
        import boto3

        self.name, self.url, self.env = name, f"s3://{name}", env
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key=FAKE_S3_SECRET)
        self.client.create_bucket(Bucket=name)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        return {k: self.client.get_object(Bucket=self.name, Key=k)["Body"].read() for k in self.keys(prefix)}


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, tmp_path):
    """A fresh bucket; the environment (this process's, and ``.env`` for subprocesses) points the
    AWS SDK at the local server with fake credentials, and at no config file of this machine."""
    import uuid

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": FAKE_S3_SECRET, "AWS_ENDPOINT_URL": s3_server,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"), "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return S3Bucket(f"facegen-{uuid.uuid4().hex[:12]}", s3_server, dict(os.environ))
