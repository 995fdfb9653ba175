"""One edit path: the photo's job runs on a video (every engine: inswapper, the GFPGAN pre-pass,
keep-mouth), and every route — Python, CLI, app, photo and video — refuses an edit without
consent, before any model loads."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

from _video_helpers import PAN_FPS, PAN_FRAMES, SEED, decoded, pan_zoom_frames, write_clip
from _video_helpers import obama_path, video_dir, pan_clip, swap_pipe  # noqa: F401 - the clips' fixtures

from facegen.errors import ConsentRequiredError
from facegen.pipelines.aging import AgeJob, AgeSettings, FaceAgingPipeline
from facegen.pipelines.inswapper import InswapperSwapPipeline
from facegen.pipelines.restoration import FaceRestorationPipeline, RestoreJob, RestoreSettings
from facegen.pipelines.swap import FaceSwapPipeline, SwapJob, SwapSettings
from facegen.video import container as vc

OFF = dict(watermark=False, c2pa=False)


def _bare(cls):
    """An engine with nothing loaded: a refusal must come before anything is touched."""
    return cls.__new__(cls)


# ----------------------------------------------------------------------------- consent, every route

@pytest.mark.parametrize("make", [
    lambda: _bare(FaceSwapPipeline).job(["me.png"]),
    lambda: _bare(FaceSwapPipeline)(["me.png"], "them.png"),
    lambda: _bare(InswapperSwapPipeline).job(["me.png"]),
    lambda: _bare(InswapperSwapPipeline)(["me.png"], "them.png"),
    lambda: _bare(FaceAgingPipeline).job(70, from_age=30),
    lambda: _bare(FaceAgingPipeline)("me.png", 70, from_age=30),
    lambda: _bare(FaceRestorationPipeline).job(),
    lambda: _bare(FaceRestorationPipeline)("me.png"),
    lambda: SwapJob(_bare(FaceSwapPipeline), ["me.png"], SwapSettings(), consent=False),
    lambda: AgeJob(_bare(FaceAgingPipeline), AgeSettings(), consent=False),
    lambda: RestoreJob(_bare(FaceRestorationPipeline), RestoreSettings(), consent=False),
], ids=["swap-job", "swap-photo", "inswapper-job", "inswapper-photo", "age-job", "age-photo", "restore-job",
        "restore-photo", "SwapJob", "AgeJob", "RestoreJob"])
def test_python_routes_refuse_without_consent(make):
    """The photo call and the job a video runs are refused alike: making any job checks consent."""
    with pytest.raises(ConsentRequiredError, match="consent=True"):
        make()


def test_video_pipeline_runs_only_a_job():
    from facegen.errors import InvalidArgumentError
    from facegen.video.pipeline import VideoEditPipeline

    with pytest.raises(InvalidArgumentError, match="edit job"):
        VideoEditPipeline({"strength": 0.85})


def test_the_documented_video_example_refuses_without_consent(monkeypatch):
    """facegen.video's Python example passes consent=True; the same lines without it are refused
    (before the clip is read)."""
    import facegen.video

    code = textwrap.dedent("\n".join(ln for ln in facegen.video.__doc__.splitlines()
                                     if ln.startswith("    ") and not ln.strip().startswith("result.tracks")))
    assert "consent=True" in code and "VideoEditPipeline(job)" in code
    monkeypatch.setattr(FaceSwapPipeline, "from_preset", classmethod(lambda cls, *a, **k: _bare(cls)))
    with pytest.raises(ConsentRequiredError):
        exec(compile(code.replace(", consent=True", ""), "facegen.video example", "exec"), {})  # noqa: S102


@pytest.mark.parametrize("argv", [
    ["swap", "--model", "tiny", "--source", "{face}", "--target", "{face}"],
    ["swap", "--engine", "inswapper", "--source", "{face}", "--target", "{face}"],
    ["age", "--model", "tiny-faceid", "--image", "{face}", "--age", "70", "--from-age", "30"],
    ["restore", "--model", "tiny", "--image", "{face}", "--gfpgan"],
])
@pytest.mark.parametrize("out", ["out.png", "out.mp4"], ids=["photo", "video"])
def test_cli_routes_refuse_without_consent(argv, out, shared_faces, tmp_path, capfd):
    from facegen.cli import main

    face = str(shared_faces / "biden_1.jpg")
    rc = main([a.replace("{face}", face) for a in argv] + ["--out", str(tmp_path / out)])
    err = capfd.readouterr().err
    assert rc == 2 and "--consent" in err and err.startswith("error:"), err
    assert not any(tmp_path.iterdir())


def test_app_video_route_refuses_without_consent(tmp_path, pan_clip, shared_faces):
    """The app's video runner: the tab's job is made with the consent box's value (an engine with
    nothing loaded, from the app's cache: no model loads)."""
    from facegen.app.context import AppContext
    from facegen.app.video import run_video

    ctx = AppContext(model="tiny", work_dir=tmp_path / "work")
    ctx.pipelines.get("swap", "tiny", lambda: _bare(FaceSwapPipeline))
    source = str(shared_faces / "biden_1.jpg")
    with pytest.raises(ConsentRequiredError):
        run_video(ctx, "swap", FaceSwapPipeline, "tiny", str(pan_clip),
                  lambda pipe: pipe.job([source], consent=False), seed=1)


# ----------------------------------------------------------------------------- every engine on video

@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    from _inswapper_twin import inswapper_twin
    return inswapper_twin(tmp_path_factory.mktemp("inswapper"))


def _mouth(pipe, rgb, **kw):
    """The mouth mask of the face the engine finds (its detector: the same landmarks)."""
    from facegen.edit import mouth_mask

    faces = pipe.find_faces(rgb, "all")
    assert len(faces) == 1
    return mouth_mask(faces[0], rgb.shape[:2], **kw)


def _mouth_core(pipe, rgb):
    return _mouth(pipe, rgb, feather_px=0) == 1


def test_inswapper_swaps_a_video_and_keeps_the_mouth_when_asked(twin, pan_clip, shared_faces, tmp_path):
    """The GAN engine, refused for video before, runs the clip through the same job: one edited
    track, the face changed; with keep_mouth the target's mouth stays (photo and video)."""
    from facegen.provenance import Provenance
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    source = str(shared_faces / "biden_1.jpg")
    src_frames = decoded(pan_clip)
    change = {}
    for keep in (False, True):
        job = twin.job([source], consent=True, keep_mouth=keep)
        out = tmp_path / f"inswapped-{keep}.mp4"
        res = VideoEditPipeline(job, VideoSettings())(pan_clip, out, seed=SEED, provenance=Provenance(**OFF),
                                                      progress=False)
        assert res.frames == PAN_FRAMES and vc.probe(out).frames == PAN_FRAMES
        assert len(res.tracks) == 1 and res.tracks[0]["frames_edited"] == PAN_FRAMES
        assert res.metadata["adapter"] == "inswapper" and res.metadata["task"] == "swap"
        got = decoded(out)
        mouth = [np.abs(g.astype(int) - s)[_mouth_core(twin, s)].mean() for g, s in zip(got, src_frames)]
        face = [np.abs(g.astype(int) - s).mean() for g, s in zip(got, src_frames)]
        change[keep] = (float(np.mean(mouth)), float(np.mean(face)))
    assert change[False][0] > 8 and change[False][1] > 1          # the swap re-drew the face, mouth included
    assert change[True][0] < 0.3 * change[False][0]                # the kept mouth is the input's (codec aside)
    # the photo route with the same job settings: the mouth core is the target's exactly
    target = src_frames[0]
    kept = twin(source, target, consent=True, keep_mouth=True).rgb(0)
    plain = twin(source, target, consent=True).rgb(0)
    core = _mouth_core(twin, target)
    assert np.array_equal(kept[core], target[core]) and not np.array_equal(plain[core], target[core])
    outside = _mouth(twin, target) == 0                                   # the kept mouth's soft edge included
    assert np.array_equal(kept[outside], plain[outside])


def test_gfpgan_pre_pass_runs_on_every_video_frame(swap_pipe, pan_clip, tmp_path, monkeypatch):
    """Restoration's GFPGAN pre-pass (refused for video before) is the job's pre-pass of every
    image: each decoded frame goes through it before its faces are found."""
    import facegen.pipelines.restoration as restoration
    from facegen.provenance import Provenance
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    seen = []

    def fake_gfpgan(rgb, access=None):
        seen.append(rgb.shape)
        return rgb
    monkeypatch.setattr(restoration, "gfpgan_pass", fake_gfpgan)
    job = FaceRestorationPipeline(swap_pipe.gen).job(consent=True, gfpgan=True, num_inference_steps=2)
    res = VideoEditPipeline(job, VideoSettings(max_frames=2))(pan_clip, tmp_path / "restored.mp4", seed=SEED,
                                                             provenance=Provenance(**OFF), progress=False)
    assert res.frames == 2 and seen == [(240, 320, 3)] * 2
    assert res.metadata["gfpgan"] is True and res.tracks[0]["frames_edited"] == 2
