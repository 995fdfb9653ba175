"""Video in and out without a model: probing, upright frames, bad inputs, the faithful container
(timestamps, rotation, audio packets), deterministic assembly, the tracker and the filters."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from _video_helpers import packets, run_cli, write_clip
from _video_helpers import obama_path, video_dir, pan_clip, swap_pipe, swap_run, scene_clip  # noqa: F401 - the clips' fixtures

from facegen.faces.types import Face
from facegen.video import container as vc
from facegen.errors import BadVideoError
from facegen.video.limits import VideoLimits, check_video, frame_range
from facegen.video.smooth import OneEuro
from facegen.video.tracks import Tracker


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    yy, xx = np.mgrid[0:120, 0:160]
    frames = []
    for i in range(10):                               # smooth content moving right (chroma survives 4:2:0)
        blob = np.exp(-((xx - 40 - 6 * i) ** 2 + (yy - 60) ** 2) / 300.0)
        frames.append(np.stack([xx * 1.5, yy * 2.0, 255 * blob], -1).clip(0, 255).astype(np.uint8))
    return write_clip(tmp_path_factory.mktemp("c") / "small.mp4", frames, Fraction(30000, 1001))


def test_probe_reads_exact_rate_count_and_audio(small_clip):
    info = vc.probe(small_clip)
    assert info.fps == Fraction(30000, 1001) and info.frames == 10
    assert (info.width, info.height, info.rotation) == (160, 120, 0) and info.audio == ("aac",)
    assert vc.is_video(small_clip)


def test_matroska_and_webm_are_counted(small_clip, tmp_path):
    frames = [f.rgb for f in vc.read_frames(vc.probe(small_clip))]
    mkv = write_clip(tmp_path / "clip.mkv", frames, Fraction(25))
    info = vc.probe(mkv)
    assert info.frames == 10 and info.fps == 25 and "matroska" in info.format and vc.is_video(mkv)


def test_segments_reassemble_with_same_timestamps_audio_and_rotation(small_clip, tmp_path):
    """Frames re-encoded in two segments and assembled: same rate, count, duration, rotation and
    audio packets (bytes); assembling twice gives the same bytes."""
    for rotation in (0, 90):
        src = small_clip
        if rotation:
            frames = [f.rgb for f in vc.read_frames(vc.probe(small_clip))]
            src = write_clip(tmp_path / "rot.mp4", frames, Fraction(30000, 1001), rotation=rotation)
        info = vc.probe(src)
        assert info.rotation == rotation
        frames = list(vc.read_frames(info))
        segs = []
        for k in range(0, len(frames), 6):
            seg = tmp_path / f"seg{rotation}-{k}.mp4"
            w = vc.SegmentWriter(seg, info, vc.EncodeSettings(keyframe_seconds=0.2))
            for f in frames[k:k + 6]:
                w.write(f.pts, f.rgb)
            w.close()
            segs.append(seg)
        outs = []
        for n in range(2):
            out = tmp_path / f"out{rotation}-{n}.mp4"
            vc.assemble(out, info, segs, metadata={"comment": "x"},
                        last_duration=vc.end_pts(info) - frames[-1].pts)
            outs.append(out)
        assert outs[0].read_bytes() == outs[1].read_bytes()
        o = vc.probe(outs[0])
        assert (o.fps, o.frames, o.rotation, o.display_size) == (info.fps, info.frames, rotation, info.display_size)
        assert abs(o.duration - info.duration) < 1e-6
        assert packets(outs[0], "audio") == packets(src, "audio")
        again = list(vc.read_frames(o))
        assert [f.pts for f in again] == [f.pts for f in frames]
        assert np.abs(again[3].rgb.astype(int) - frames[3].rgb).mean() < 3


def test_upright_and_stored_are_inverse():
    x = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    for r in (0, 90, 180, 270):
        assert np.array_equal(vc.stored(vc.upright(x, r), r), x)


def test_bad_inputs_are_one_line_errors(tmp_path, small_clip):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio_only = tmp_path / "tone.m4a"
    import av
    with av.open(str(audio_only), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for p in [*a.encode(frame), *a.encode()]:
            c.mux(p)
    for path, words in ((text, "not a video"), (empty, "empty"), (audio_only, "no video stream"),
                        (tmp_path / "missing.mp4", "no such file")):
        with pytest.raises(BadVideoError, match=words) as err:
            vc.probe(path)
        assert "\n" not in str(err.value)
        assert not vc.is_video(path)
    photo = tmp_path / "photo.png"
    from PIL import Image
    Image.new("RGB", (64, 64)).save(photo)
    assert not vc.is_video(photo)
    info = vc.probe(small_clip)
    with pytest.raises(BadVideoError, match="over the limit"):
        check_video(info, VideoLimits(max_seconds=0.1))
    with pytest.raises(BadVideoError, match="over the limit"):
        check_video(info, VideoLimits(max_pixels=100 * 100))
    with pytest.raises(BadVideoError, match="select no frames"):
        frame_range(info, start=5.0)
    assert frame_range(info, max_frames=4) == (0, 4)


def test_cli_refuses_bad_video_before_loading_and_writes_nothing(tmp_path, small_clip, shared_faces):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out.mp4"
    src = str(shared_faces / "biden_1.jpg")
    proc = run_cli("swap", "--model", "tiny", "--source", src, "--target", str(bad), "--out", str(out), "--consent")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "not a video" in proc.stderr
    proc = run_cli("swap", "--model", "tiny", "--source", src, "--target", str(small_clip), "--out", str(out),
                   "--consent", env={"FACEGEN_MAX_VIDEO_PIXELS": "100"})
    assert proc.returncode == 2 and "over the limit" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == [bad]            # no output, no parts folder


def _face(x: float, y: float, w: float = 40.0) -> Face:
    kps = np.array([[x + .3 * w, y + .4 * w], [x + .7 * w, y + .4 * w], [x + .5 * w, y + .6 * w],
                    [x + .35 * w, y + .8 * w], [x + .65 * w, y + .8 * w]], np.float32)
    return Face(np.array([x, y, x + w, y + w], np.float32), kps, 1.0)


def test_tracker_keeps_identities_through_a_crossing_and_a_gap():
    """Two faces cross (boxes overlap), one disappears for longer than max_gap and comes back:
    the identity (a fake descriptor per person, read from the face's position in the row) keeps
    each on its own track."""
    ids = {"a": np.zeros(128, np.float32), "b": np.full(128, 0.2, np.float32)}
    who: dict[int, str] = {}

    def embed(_rgb, face):
        return ids[who[id(face)]]
    tracker = Tracker(embedder=embed, max_gap=2)
    seen = {"a": set(), "b": set()}
    for t in range(12):
        faces = []
        if t < 5 or t > 8:                       # b is away for frames 5..8 (longer than max_gap)
            fb = _face(100 - 8 * t, 10)
            who[id(fb)] = "b"
            faces.append(fb)
        fa = _face(10 + 8 * t, 12)
        who[id(fa)] = "a"
        faces.append(fa)
        faces.sort(key=lambda f: f.bbox[0])
        for track, face, _born in tracker.update(t, np.zeros((1, 1, 3), np.uint8), faces):
            seen[who[id(face)]].add(track.id)
    assert len(seen["a"]) == 1 and len(seen["b"]) == 1 and seen["a"] != seen["b"]
    assert len(tracker.tracks) == 2
    assert tracker.embeddings_computed < 12       # steady frames cost no embedding


def test_one_euro_smooths_jitter_and_follows_a_move():
    rng = np.random.default_rng(1)
    f = OneEuro()
    still = [f(np.array([10.0]) + rng.normal(0, 0.05, 1), t / 25) for t in range(50)]
    assert np.std(np.array(still[10:])) < 0.5 * 0.05
    g = OneEuro()
    moved = [g(np.array([0.0 if t < 10 else 5.0]), t / 25) for t in range(60)]
    assert abs(moved[-1][0] - 5.0) < 0.05


def test_a_long_video_job_says_how_long_it_will_take():
    from facegen.video.pipeline import estimate_line

    line = estimate_line(1.6, 600, 25.0)          # the tiny preset's CPU speed, 24 s of 25 fps footage
    assert line == "video: 1.6 s per frame here (0.7 min per second of footage): about 16 min for the 600 frames left"
    assert estimate_line(1.6, 30, 25.0) is None    # under a minute: nothing to say
