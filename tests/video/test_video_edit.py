"""Video edits with the tiny presets on clips made from the shared photos: the container is kept,
only the faces change, tracks are mapped by reference, rotation is kept, a killed run resumes
to the same output, and the MP4 carries facegen's provenance."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (PAN_FPS, PAN_FRAMES, SEED, SEGMENT_SECONDS, decoded, packets, pan_zoom_frames, run_cli,
                      write_clip)

from facegen.faces.detect import detect_faces
from facegen.video import container as vc


def _plain_reencode(src: Path, out: Path) -> list[np.ndarray]:
    """The input decoded and re-encoded with the output's settings, nothing else."""
    info = vc.probe(src)
    w = vc.SegmentWriter(out, info, vc.EncodeSettings())
    for f in vc.read_frames(info):
        w.write(f.pts, f.rgb)
    w.close()
    return decoded(out)


def _face_region(rgb: np.ndarray, grow: float = 0.45) -> np.ndarray:
    """The detected faces' boxes, grown by ``grow`` of their size on every side (covers the
    aligned crop's paste mask)."""
    region = np.zeros(rgb.shape[:2], bool)
    for f in detect_faces(rgb, backend="dlib"):
        x1, y1, x2, y2 = f.bbox
        gx, gy = grow * (x2 - x1), grow * (y2 - y1)
        region[max(0, int(y1 - gy)):int(y2 + gy) + 1, max(0, int(x1 - gx)):int(x2 + gx) + 1] = True
    return region


def test_container_is_kept(swap_run, pan_clip):
    out, result = swap_run
    src, dst = vc.probe(pan_clip), vc.probe(out)
    assert (dst.fps, dst.frames, dst.width, dst.height, dst.rotation) == \
        (src.fps, src.frames, src.width, src.height, src.rotation) == (PAN_FPS, PAN_FRAMES, 320, 240, 0)
    assert abs(dst.duration - src.duration) < 1e-6
    assert packets(out, "audio") == packets(pan_clip, "audio") and packets(out, "audio")
    assert result.frames == PAN_FRAMES and result.segments == 2
    assert not out.with_name(out.name + ".facegen-parts").exists()


def test_only_the_face_changes(swap_run, pan_clip, tmp_path):
    """Outside the face, the output equals a plain decode/re-encode within codec tolerance (the
    watermarked keyframes within the watermark's PSNR); inside, the face was re-drawn."""
    out, result = swap_run
    plain = _plain_reencode(pan_clip, tmp_path / "plain.mp4")
    edited = decoded(out)
    source = decoded(pan_clip)
    assert result.tracks and result.tracks[0]["edited"] and result.tracks[0]["frames_edited"] == PAN_FRAMES
    marked = result.metadata["provenance"]["watermark"]["embedded"]
    for i, (a, b) in enumerate(zip(edited, plain)):
        region = _face_region(source[i])
        assert region.any() and not region.all()
        diff = np.abs(a.astype(int) - b.astype(int)).mean(axis=2)
        keyframe = i % 4 == 0 and marked
        if keyframe:
            mse = float(((a.astype(float) - b) ** 2)[~region].mean())
            assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 33
        else:
            assert diff[~region].mean() < 1.0 and np.percentile(diff[~region], 99) < 8
        assert diff[region].mean() > 2.0                     # the face itself was re-drawn


def test_provenance_tags_manifest_and_inspect(swap_run):
    from facegen.video.cli import inspect_any
    from facegen.provenance.inspect import VALID

    out, result = swap_run
    import av
    with av.open(str(out)) as c:
        tags = dict(c.metadata)
    assert tags["ai_generated"] == "true" and "facegen" in tags["software"]
    meta = json.loads(tags["facegen"])
    assert meta["task"] == "swap" and meta["ai_edited"] and meta["seed"] == SEED
    assert meta["tracks"][0]["seeds"] == [SEED] and "stability" in meta
    report = inspect_any(str(out))
    assert report["verdict"] == VALID, report
    assert report["c2pa"]["facegen"]["content_id"] == meta["provenance"]["content_id"]
    assert report["watermark"]["found"] and report["watermark"]["matches_recorded_content_id"]
    s = result.stability
    assert s["input"] > 0 and s["output"] > 0 and s["ratio"] == pytest.approx(s["output"] / s["input"], abs=0.01)


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_output(swap_run, pan_clip, shared_faces, tmp_path):
    """The CLI is killed (SIGKILL) once the first segment is committed; the same command then
    continues from it. The result's video and audio packets are the uninterrupted run's, byte for
    byte (the files differ only in the C2PA signature, random by design: here --no-c2pa)."""
    ref, _ = swap_run
    out = tmp_path / "resumed.mp4"
    args = [sys.executable, "-m", "facegen", "swap", "--model", "tiny", "--source", str(shared_faces / "biden_1.jpg"),
            "--target", str(pan_clip), "--out", str(out), "--consent", "--seed", str(SEED), "--steps", "2",
            "--segment-seconds", str(SEGMENT_SECONDS), "--no-c2pa", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out.with_name(out.name + ".facegen-parts") / "seg-00000.state.npz"
    deadline = time.monotonic() + 500
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.exists(), proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resumed after 1 segment" in done.stdout
    assert packets(out, "video") == packets(ref, "video")
    assert packets(out, "audio") == packets(ref, "audio")
    assert not out.with_name(out.name + ".facegen-parts").exists()


@pytest.mark.slow
def test_two_person_clip_swaps_only_the_mapped_track(tmp_path, rgb_of, shared_faces, swap_pipe):
    """A reference photo of the right-hand person maps the source to that person's track: the
    left-hand face is decoded and re-encoded only."""
    from PIL import Image

    from facegen.provenance import Provenance
    from facegen.video.jobs import SwapJob
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    group = rgb_of(shared_faces / "group_two_people.jpg")
    scene = group[0:330, 150:1040]
    clip = write_clip(tmp_path / "two.mp4", pan_zoom_frames(scene, 4, (384, 144), zoom=0.04, pan=0.02), PAN_FPS)
    ref = tmp_path / "right.png"
    Image.fromarray(group[40:270, 760:980]).save(ref)
    job = SwapJob(swap_pipe, [str(shared_faces / "biden_1.jpg")], references=[str(ref)], steps=2,
                  target_face="all")
    out = tmp_path / "two-swapped.mp4"
    result = VideoEditPipeline(job, VideoSettings())(clip, out, seed=SEED, provenance=Provenance(c2pa=False),
                                                    progress=False)
    assert len(result.tracks) == 2
    edited = [t for t in result.tracks if t["edited"]]
    assert len(edited) == 1 and edited[0]["frames_edited"] == 4
    plain = _plain_reencode(clip, tmp_path / "plain.mp4")
    source, got = decoded(clip), decoded(out)
    for i in range(4):
        faces = sorted(detect_faces(source[i], backend="dlib"), key=lambda f: f.bbox[0])
        for k, f in enumerate(faces):
            x1, y1, x2, y2 = f.bbox.astype(int)
            d = np.abs(got[i][y1:y2, x1:x2].astype(int) - plain[i][y1:y2, x1:x2]).mean()
            assert (d > 2.0) if k == 1 else (d < 1.0), (i, k, d)


@pytest.mark.slow
def test_rotated_clip_is_edited_upright_and_keeps_its_rotation(tmp_path, rgb_of, obama_path):
    """Frames stored sideways with a 90° display rotation: faces are found (only upright frames
    have detectable faces), and the output keeps the rotation and the displayed size."""
    from facegen.pipelines.restoration import FaceRestorationPipeline
    from facegen.provenance import Provenance
    from facegen.video.jobs import RestoreJob
    from facegen.video.pipeline import VideoEditPipeline, VideoSettings

    frames = pan_zoom_frames(rgb_of(obama_path)[0:580, 108:882], 3, (256, 192))
    clip = write_clip(tmp_path / "rot.mp4", frames, PAN_FPS, rotation=90)
    src = vc.probe(clip)
    assert src.rotation == 90 and (src.width, src.height) == (192, 256) and src.display_size == (256, 192)
    job = RestoreJob(FaceRestorationPipeline.from_preset("tiny"), steps=2)
    out = tmp_path / "rot-restored.mp4"
    result = VideoEditPipeline(job, VideoSettings())(clip, out, seed=SEED, provenance=Provenance(c2pa=False),
                                                    progress=False)
    dst = vc.probe(out)
    assert (dst.rotation, dst.width, dst.height, dst.frames) == (90, 192, 256, 3)
    assert result.tracks and result.tracks[0]["edited"] and result.tracks[0]["frames_edited"] == 3
    assert packets(out, "audio") == packets(clip, "audio")
