"""Fixtures of the face-recognition tests: an identity-folder set of real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.conftest import identity_of


def _variants(rgb: np.ndarray, k: int, rng: np.random.Generator) -> list[Image.Image]:
    """The photo and ``k`` re-shot versions of it: rotated, rescaled, shifted, relit."""
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
        for k, im in enumerate(_variants(rgb_of(photo), 3, rng)):
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
