"""The web demo's video part: a clip over the demo's bounds is refused before any model loads;
a small clip comes back as an MP4 with its report."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from _video_helpers import PAN_FPS, pan_zoom_frames, write_clip
from _video_helpers import obama_path, video_dir, pan_clip, swap_pipe, swap_run, scene_clip  # noqa: F401 - the clips' fixtures

from facegen.video import container as vc
from facegen.errors import BadVideoError

pytest.importorskip("gradio")

from facegen.pipelines.swap import FaceSwapPipeline as PIPELINE  # noqa: E402 - the class, as the tabs pass it


def test_demo_refuses_a_clip_over_60_seconds_before_loading(tmp_path):
    from facegen.app.context import AppContext
    from facegen.app.video import run_video

    ctx = AppContext(model="tiny", work_dir=tmp_path / "work")
    long = write_clip(tmp_path / "long.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 62, Fraction(1), audio=False)

    def never(_pipe):
        raise AssertionError("no job may be built for a refused clip")
    with pytest.raises(BadVideoError, match="over the limit of 60 s"):
        run_video(ctx, "swap", PIPELINE, "tiny", {"video": str(long)}, never)
    assert ctx.pipelines.get("swap", "tiny", lambda: None) is None      # nothing was loaded


@pytest.mark.slow
def test_demo_swaps_a_small_clip_and_returns_the_mp4(tmp_path, rgb_of, obama_path, shared_faces):
    from facegen.app.context import AppContext
    from facegen.app.video import run_video

    ctx = AppContext(model="tiny", work_dir=tmp_path / "work")
    clip = write_clip(tmp_path / "clip.mp4", pan_zoom_frames(rgb_of(obama_path)[0:580, 108:882], 2, (256, 192)),
                      PAN_FPS)
    source = rgb_of(shared_faces / "biden_1.jpg")
    video, file, report = run_video(ctx, "swap", PIPELINE, "tiny", str(clip),
                                    lambda pipe: pipe.job([source], consent=True, num_inference_steps=2), seed=5)
    assert video == file and file.endswith(".mp4")
    info = vc.probe(file)
    assert info.frames == 2 and info.fps == PAN_FPS and info.audio == ("aac",)
    assert "track 0" in report and "edited" in report and "seed 5" in report
