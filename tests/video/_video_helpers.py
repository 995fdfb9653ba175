"""Helpers and session fixtures of the video tests (imported by name: a second conftest.py
would shadow the top one's module). Video tests: clips made from the shared photos (a slow pan/zoom with a sine-wave audio track,
a two-person clip, a rotated clip) and one reference swap run shared by the tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np


def pan_zoom_frames(rgb: np.ndarray, n: int, size: tuple[int, int], zoom: float = 0.08,
                    pan: float = 0.04) -> list[np.ndarray]:
    """``n`` frames (w, h = ``size``) of a slow zoom-in and pan across ``rgb``."""
    h, w = rgb.shape[:2]
    out_w, out_h = size
    frames = []
    for i in range(n):
        a = i / max(1, n - 1)
        s = 1.0 - zoom * a                        # share of the photo shown
        cw, ch = w * s, h * s
        if cw / ch > out_w / out_h:
            cw = ch * out_w / out_h
        else:
            ch = cw * out_h / out_w
        x0 = (w - cw) / 2 + pan * w * (a - 0.5)
        y0 = (h - ch) / 2
        m = np.array([[out_w / cw, 0, -x0 * out_w / cw], [0, out_h / ch, -y0 * out_h / ch]])
        frames.append(cv2.warpAffine(rgb, m, (out_w, out_h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction = Fraction(15), *, audio: bool = True,
               rotation: int = 0, sample_rate: int = 16000, crf: int = 18, preset: str = "ultrafast") -> Path:
    """An H.264 MP4 (+ AAC sine wave); ``rotation``: frames are stored turned so that the
    display rotation shows them upright; ``crf``/``preset``: libx264's quality and speed."""
    import av

    k = (rotation // 90) % 4
    with av.open(str(path), "w") as c:
        stored = [np.ascontiguousarray(np.rot90(f, -k)) for f in frames]
        vs = c.add_stream("libx264", rate=fps)
        vs.height, vs.width = stored[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": str(crf), "preset": preset}
        if rotation:
            vs.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream("aac", rate=sample_rate)
            a.layout = "mono"
        for i, f in enumerate(stored):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            n = int(sample_rate * len(frames) / float(fps))
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sample_rate)).astype(np.float32)[None]
            for s in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(wave[:, s:s + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = sample_rate, s
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


# ---------------------------------------------------------------------------- fixtures
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

av = pytest.importorskip("av")

SEED = 3
#: the pan clip: 6 frames at 4 fps (1.5 s), 320x240 (big enough for the watermark), two segments
#: of 4 + 2 frames with --segment-seconds 1 (a keyframe each second)
PAN_FPS = Fraction(4)
PAN_FRAMES = 6
SEGMENT_SECONDS = 1.0


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facegen", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def packets(path: Path, kind: str) -> list[bytes]:
    with av.open(str(path)) as c:
        streams = getattr(c.streams, kind)
        if not streams:
            return []
        return [bytes(p) for p in c.demux(streams[0]) if p.dts is not None]


def decoded(path: Path) -> list[np.ndarray]:
    from facegen.video.container import probe, read_frames
    return [f.rgb for f in read_frames(probe(path))]


@pytest.fixture(scope="session")
def obama_path(shared_faces) -> Path:
    return shared_faces / "obama_1.jpg"


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="session")
def pan_clip(video_dir, obama_path, rgb_of) -> Path:
    """A slow pan/zoom over a portrait (the face a third of the frame wide) with a 440 Hz tone."""
    rgb = rgb_of(obama_path)[0:580, 108:882]
    return write_clip(video_dir / "pan.mp4", pan_zoom_frames(rgb, PAN_FRAMES, (320, 240)), PAN_FPS)


@pytest.fixture(scope="session")
def swap_pipe():
    from facegen.pipelines.swap import FaceSwapPipeline
    return FaceSwapPipeline.from_preset("tiny")


@pytest.fixture(scope="session")
def swap_run(video_dir, pan_clip, swap_pipe, shared_faces):
    """The reference run: the tiny swap over the pan clip (API), C2PA on, no watermark (its own
    test marks a clip without faces, so that here only the face differs from a plain re-encode)."""
    from facegen.provenance import Provenance
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    job = swap_pipe.job([str(shared_faces / "biden_1.jpg")], consent=True, num_inference_steps=2)
    out = video_dir / "pan-swapped.mp4"
    result = VideoEditPipeline(job, VideoSettings(segment_seconds=SEGMENT_SECONDS))(
        pan_clip, out, seed=SEED, provenance=Provenance(watermark=False), inputs=[str(shared_faces / "biden_1.jpg")],
        progress=False)
    return out, result


@pytest.fixture(scope="session")
def scene_clip(video_dir, shared_faces, rgb_of) -> Path:
    """A pan over clothes and background, no face (320x240, 6 frames at 4 fps, with audio)."""
    scene = rgb_of(shared_faces / "group_two_people.jpg")[400:661, 400:760]
    return write_clip(video_dir / "scene.mp4", pan_zoom_frames(scene, PAN_FRAMES, (320, 240)), PAN_FPS)
