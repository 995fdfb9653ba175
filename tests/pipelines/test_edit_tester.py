"""One tester for the edit jobs, photo and video: every tiny preset that can edit (and the
inswapper engine, on its tiny twin), every job it can run — skipped by capability, read from
the registry (``supports_edit``, ``supports_prompt``), never from a hand-written list.

Photo invariants: the output has the input's size; nothing outside the edited face changes;
each face is recorded with its seeds (``seed + k``); the same seed gives the same pixels; no
consent, no edit.  Video (slow): the same job over a 2-frame clip edits its one track on every
frame with the track's seeds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from facegen.adapters.registry import adapter_class
from facegen.errors import ConsentRequiredError
from facegen.models.registry import get_preset, list_presets

STEPS = 2
SEED = 21
TINY = [n for n in list_presets() if get_preset(n).tiny]
JOBS = ("swap", "age", "restore")


def _skip_unless_able(engine: str, job: str) -> None:
    if engine == "inswapper":
        if job != "swap":
            pytest.skip("the inswapper engine only swaps")
        return
    cls = adapter_class(get_preset(engine).family)
    if not cls.supports_edit:
        pytest.skip(f"{engine} cannot edit: {cls.edit_refusal}")
    if job == "age" and not cls.supports_prompt:
        pytest.skip(f"{engine} takes no text: aging cannot tell it an age")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """Engines made once per module (a preset's generator shared by its three jobs)."""
    made: dict[tuple[str, str], object] = {}
    gens: dict[str, object] = {}

    def get(engine: str, job: str):
        if (engine, job) not in made:
            if engine == "inswapper":
                sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
                from _inswapper_twin import inswapper_twin
                made[engine, job] = inswapper_twin(tmp_path_factory.mktemp("inswapper"))
            else:
                from facegen.pipelines.aging import FaceAgingPipeline
                from facegen.pipelines.generation import IDGenerationPipeline
                from facegen.pipelines.restoration import FaceRestorationPipeline
                from facegen.pipelines.swap import FaceSwapPipeline
                if engine not in gens:
                    gens[engine] = IDGenerationPipeline.from_preset(engine, device="cpu")
                cls = {"swap": FaceSwapPipeline, "age": FaceAgingPipeline, "restore": FaceRestorationPipeline}[job]
                made[engine, job] = cls(gens[engine])
        return made[engine, job]
    return get


def make_job(pipe, job: str, source: str, consent: bool = True):
    """The job under test, with the same settings on every route."""
    diffusion = {} if pipe.family == "inswapper" else {"num_inference_steps": STEPS}
    if job == "swap":
        return pipe.job([source], consent=consent, **diffusion)
    if job == "age":
        return pipe.job(60, from_age=30, consent=consent, **diffusion)
    return pipe.job(consent=consent, **diffusion)


ENGINES = [*TINY, "inswapper"]
#: the default run covers one diffusion preset and the GAN; the others are slow-marked (CI runs them)
FAST = ("tiny", "inswapper")
PHOTO_ENGINES = [e if e in FAST else pytest.param(e, marks=pytest.mark.slow) for e in ENGINES]


@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("engine", PHOTO_ENGINES)
def test_photo_edit(engine, job, engines, shared_faces, rgb_of):
    _skip_unless_able(engine, job)
    pipe = engines(engine, job)
    source = str(shared_faces / "biden_1.jpg")
    target = rgb_of(shared_faces / "obama_3_small.jpg")
    with pytest.raises(ConsentRequiredError):
        make_job(pipe, job, source, consent=False)
    j = make_job(pipe, job, source)
    out = pipe.run_job(j, target, SEED, progress=False)
    again = pipe.run_job(j, target, SEED, progress=False)
    rgb = out.rgb(0)
    assert rgb.shape == target.shape
    assert np.array_equal(rgb, again.rgb(0))                              # same seed, same pixels
    meta = out.metadata[0]
    assert meta["task"] == j.task and meta["ai_edited"] is True
    n = pipe.seeds_per_face
    assert [f["seeds"] for f in meta["faces"]] == [list(range(SEED + n * k, SEED + n * (k + 1)))
                                                   for k in range(len(meta["faces"]))]
    changed = np.abs(rgb.astype(int) - target).sum(-1) > 0
    assert changed.any()
    grown = np.zeros_like(changed)
    for f in meta["faces"]:
        x0, y0, x1, y1 = f["bbox"]
        gx, gy = 0.6 * (x1 - x0), 0.6 * (y1 - y0)
        grown[max(0, int(y0 - gy)):int(y1 + gy) + 1, max(0, int(x0 - gx)):int(x1 + gx) + 1] = True
    assert not changed[~grown].any()                                       # only the face changed


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS)
@pytest.mark.parametrize("engine", ENGINES)
def test_video_edit(engine, job, engines, shared_faces, rgb_of, tmp_path):
    _skip_unless_able(engine, job)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "video"))
    from _video_helpers import PAN_FPS, pan_zoom_frames, write_clip

    from facegen.provenance import Provenance
    from facegen.video import container as vc
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    pipe = engines(engine, job)
    clip = write_clip(tmp_path / "clip.mp4", pan_zoom_frames(rgb_of(shared_faces / "obama_1.jpg")[0:580, 108:882],
                                                             2, (256, 192)), PAN_FPS)
    j = make_job(pipe, job, str(shared_faces / "biden_1.jpg"))
    res = VideoEditPipeline(j, VideoSettings())(clip, tmp_path / "out.mp4", seed=SEED,
                                               provenance=Provenance(watermark=False, c2pa=False), progress=False)
    assert res.frames == vc.probe(tmp_path / "out.mp4").frames == 2
    assert res.metadata["task"] == j.task and res.metadata["adapter"] == pipe.family
    assert len(res.tracks) == 1 and res.tracks[0]["frames_edited"] == 2
    assert res.tracks[0]["seeds"] == list(range(SEED, SEED + pipe.seeds_per_face))
