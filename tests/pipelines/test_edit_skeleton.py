"""The edit skeleton: every selected face gets its own plan, seeds, edit, judge and record."""

from __future__ import annotations

import re

import numpy as np
import pytest

from facegen.errors import InvalidArgumentError
from facegen.id.encoders import similarity

STEPS = 2


@pytest.fixture(scope="module")
def tiny():
    from facegen.pipelines.generation import IDGenerationPipeline
    return IDGenerationPipeline.from_preset("tiny-faceid", device="cpu")


def _spy_identities(pipe, monkeypatch) -> list:
    seen = []
    real = pipe.regenerate

    def spy(rgb, face, identity, **kw):
        seen.append((face, identity, kw["seed"]))
        return real(rgb, face, identity, **kw)
    monkeypatch.setattr(pipe, "regenerate", spy)
    return seen


def test_restore_all_faces_gives_each_face_its_own_identity(tiny, group_photo_path, monkeypatch):
    from facegen.pipelines.restoration import FaceRestorationPipeline

    pipe = FaceRestorationPipeline(tiny)
    seen = _spy_identities(pipe, monkeypatch)
    out = pipe(group_photo_path, consent=True, face="all", seed=40, num_inference_steps=STEPS, progress=False)
    faces = out.metadata[0]["faces"]
    assert len(faces) == len(seen) == 6                                  # the 6-face insightface photo
    vectors = [ident.vector for _, ident, _ in seen]
    assert all(not np.array_equal(vectors[0], v) for v in vectors[1:])  # not the first face's identity for all
    for (face, ident, seed), rec, k in zip(seen, faces, range(6)):
        assert similarity(ident, pipe.embed_face(pipe_rgb(group_photo_path), face)) > 0.99   # its own face
        assert rec["seeds"] == [40 + k] and seed == 40 + k
        assert isinstance(rec["id_similarity"], float)                   # each face judged
    assert out.metadata[0]["seeds"] == [40 + k for k in range(6)]


def pipe_rgb(path):
    from facegen.io import load_image
    return load_image(path)


def test_restore_with_a_reference_gives_it_to_that_person_only(tiny, shared_faces, monkeypatch):
    from facegen.pipelines.restoration import FaceRestorationPipeline

    pipe = FaceRestorationPipeline(tiny)
    seen = _spy_identities(pipe, monkeypatch)
    group = shared_faces / "group_two_people.jpg"
    out = pipe(group, reference=shared_faces / "biden_1.jpg", consent=True, face="all", seed=1,
               num_inference_steps=STEPS, progress=False)
    kinds = [f["identity"] for f in out.metadata[0]["faces"]]
    assert sorted(kinds) == ["input", "reference"] and len(seen) == 2


def test_aging_judges_and_records_every_face(shared_faces):
    from facegen.pipelines.aging import FaceAgingPipeline
    from facegen.pipelines.generation import IDGenerationPipeline

    pipe = FaceAgingPipeline(IDGenerationPipeline.from_preset("tiny-faceid", device="cpu"))
    out = pipe(shared_faces / "group_two_people.jpg", 70, from_age=40, consent=True, face="all", seed=9,
               num_inference_steps=STEPS, progress=False)
    faces = out.metadata[0]["faces"]
    assert len(faces) == 2
    assert [f["seeds"] for f in faces] == [[9, 10], [11, 12]]               # two passes per face
    assert all(isinstance(f["id_similarity"], float) for f in faces)
    assert out.metadata[0]["id_similarity_per_face"] == [f["id_similarity"] for f in faces]


def test_inswapper_takes_the_swap_call_and_refuses_diffusion_settings(tmp_path):
    from facegen.pipelines.inswapper import InswapperSwapPipeline

    pipe = InswapperSwapPipeline.__new__(InswapperSwapPipeline)
    for kw in ({"strength": 0.5}, {"num_inference_steps": 4}, {"prompt": "x"}, {"guidance_scale": 2.0}):
        with pytest.raises(InvalidArgumentError, match=f"takes no {next(iter(kw))}"):
            pipe("a.png", "b.png", consent=True, **kw)


def test_cli_restore_all_reports_each_faces_seed_and_similarity(capfd, group_photo_path, tmp_path):
    from facegen.cli import main
    from facegen.io import read_metadata

    out = tmp_path / "restored.png"
    rc = main(["restore", "--model", "tiny", "--image", str(group_photo_path), "--face", "all", "--seed", "3",
               "--steps", str(STEPS), "--out", str(out), "--consent", "--no-progress"])
    printed = capfd.readouterr().out
    assert rc == 0
    lines = [ln for ln in printed.splitlines() if ln.strip().startswith("face ")]
    assert len(lines) == 6
    for k, ln in enumerate(lines):
        assert f"seeds=[{3 + k}]" in ln and re.search(r"id_similarity=-?\d\.\d{3}", ln), ln
    faces = read_metadata(out)["metadata"]["faces"]
    assert [f["seeds"] for f in faces] == [[3 + k] for k in range(6)]
