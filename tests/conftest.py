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
