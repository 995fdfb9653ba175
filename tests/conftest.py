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


def cli(capfd, *args):
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    from facegen.cli import main  # noqa: PLC0415

    capfd.readouterr()
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    """The CLI refused with exit 2 and one ``error:`` line holding every fragment, no traceback."""
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for frag in fragments:
        assert frag in lines[0], err


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


# ---------------------------------------------------------------------- face-recognition sets (tests/fr)

def _reshot_variants(rgb: np.ndarray, k: int, rng: np.random.Generator) -> list:
    """The photo and ``k`` re-shot versions of it: rotated, rescaled, shifted, relit."""
    from PIL import Image, ImageEnhance

    im = Image.fromarray(rgb)
    out = [im]
    for _ in range(k):
        v = im.rotate(float(rng.uniform(-8, 8)), resample=Image.BICUBIC, expand=False, fillcolor=(128, 128, 128))
        s = float(rng.uniform(0.8, 1.2))
        v = v.resize((max(64, int(v.width * s)), max(64, int(v.height * s))), Image.BICUBIC)
        dx, dy = (int(d) for d in rng.integers(-v.width // 20, v.width // 20 + 1, size=2))
        v = v.transform(v.size, Image.AFFINE, (1, 0, dx, 0, 1, dy), fillcolor=(128, 128, 128))
        v = ImageEnhance.Brightness(v).enhance(float(rng.uniform(0.75, 1.25)))
        out.append(v)
    return out


@pytest.fixture(scope="session")
def shared_identity_folders(tmp_path_factory, shared_faces, rgb_of) -> Path:
    """../shared/faces as one folder per person (group photos left out), each photo with three
    re-shot variants so that every person has several images."""
    root = tmp_path_factory.mktemp("people")
    rng = np.random.default_rng(0)
    for photo in sorted(shared_faces.iterdir()):
        if photo.suffix.lower() not in (".jpg", ".jpeg", ".png") or photo.stem.startswith("group"):
            continue
        person = root / identity_of(photo)
        person.mkdir(exist_ok=True)
        for k, im in enumerate(_reshot_variants(rgb_of(photo), 3, rng)):
            im.save(person / f"{photo.stem}_{k}.jpg", quality=92)
    return root


@pytest.fixture(scope="session")
def small_identity_set(tmp_path_factory) -> Path:
    """12 procedural identities × 4 aligned crops (fast training tests)."""
    from tests.fr.procedural import make_identity_set

    return make_identity_set(tmp_path_factory.mktemp("ids"), 12, 4, seed=11)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, small_identity_set) -> Path:
    """A run folder of an untrained tiny IResNet, written by the trainer's own writer."""
    from facegen.fr.data import open_train_set
    from facegen.fr.recipes import get_recipe
    from facegen.fr.train import build, run_config, write_run

    run = tmp_path_factory.mktemp("run")
    recipe = get_recipe("cpu-test")
    ts = open_train_set(small_identity_set)
    model, _, _ = build(recipe, ts.num_classes, 0)
    write_run(run, model.eval(), run_config(recipe, ts, 0, 0))
    return run


@pytest.fixture(scope="session")
def condition_for():
    """``condition_for(preset, seed)``: a random IDEmbedding that meets a tiny preset's encoder contract
    (its encoder and ID size; the EVA hidden states ``(5, T, W)`` of the ``pulid-tiny`` condition), so the
    invariants run on every tiny twin without embedding a photo."""
    from facegen.id.embedding import IDEmbedding

    def make(preset, seed: int, scale: float = 0.6) -> IDEmbedding:
        rng = np.random.default_rng(seed)
        v = rng.normal(size=preset.id_dim).astype(np.float32)
        meta = {}
        if preset.encoder == "pulid-tiny":
            from facegen.models.tiny_pulid import TINY_EVA_WIDTH
            meta["vit_hidden"] = rng.normal(size=(5, 17, TINY_EVA_WIDTH)).astype(np.float32)
        return IDEmbedding(scale * v / np.linalg.norm(v), preset.encoder, meta=meta)
    return make
