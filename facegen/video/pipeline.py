"""``VideoEditPipeline``: run an edit job (swap, restore, age — any engine) over a video, frame
by frame, with stable identities over time and the sound kept.

The job is the photo route's own (:class:`facegen.pipelines._edit_base.EditJob`, made by the
pipeline's ``job(...)``, consent checked there): its rules plan each track, its engine edits each
face, its paste puts it back.  This module adds only what a video needs: tracks, smoothing,
segments, the clip's provenance.

Stages of ``__call__``: 1 probe and check the clip → 2 open (or resume) the run's segments →
3 per frame: decode → the job's pre-pass → detect → track → plan new tracks (the job's plans:
the first frame with faces like a photo, later ones by reference or policy) → smooth each
track's face → edit it (the job's edit, fed the previous frame's result) → paste back (the
job's) → measure → watermark every frame → encode → 4 every ``segment_seconds``: commit the
segment and the state → 5 assemble the MP4 (audio copied), tag it, sign it, rename it into place.

Memory is bounded: one decoded frame at a time, plus per track its previous crop and mask.

Temporal stability (the issue's goal): one seed per track (the same noise every frame), landmarks
through a One-Euro filter (the crop does not jitter), the previous frame's output crop blended
into the model's input (``temporal``), the paste mask averaged over time. The figure reported:
the mean frame-to-frame change inside the edited face regions, output / input (1.0: the output
changes as much as the input does). ``carry`` keeps a share of the previous result in each
new one (an exponential average along the track, in the aligned crop frame, so it follows the
face instead of ghosting behind it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facegen import __version__
from facegen.errors import InvalidArgumentError
from facegen.pipelines._edit_base import EditJob, FacePlan
from facegen.pipelines.generation import seeds_for
from facegen.provenance import PROVENANCE_KEY, Provenance
from facegen.video import container as vc
from facegen.video import provenance as vp
from facegen.video.limits import VideoLimits, check_video
from facegen.io.atomic import atomic_write_bytes, replace_durably, temp_path_for
from facegen.video.segments import SegmentStore
from facegen.video.smooth import (FaceSmoother, blend_mask, guided_init, region_change, settings_dict,
                                  warp_previous)
from facegen.video.plans import TRACK_ENCODER, TrackPlanner
from facegen.video.tracks import Tracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSettings:
    """How a clip is processed: encoding, segment length (resume granularity), the temporal
    stabilisers (landmark filter, weight of the previous result in the model input, mask
    average), how often each track's identity is judged, the long side frames are detected at
    (larger frames are detected downscaled, the faces scaled back: HOG cost grows with pixels),
    and the part of the clip."""

    encode: vc.EncodeSettings = field(default_factory=vc.EncodeSettings)
    segment_seconds: float = 2.0
    smoothing: bool = True
    temporal: float = 0.35
    carry: float = 0.3
    mask_average: float = 0.5
    judge_every_seconds: float = 1.0
    detect_side: int | None = 640
    start: float | None = None
    end: float | None = None
    max_frames: int | None = None


@dataclass
class VideoResult:
    path: Path
    frames: int
    fps: Fraction
    duration: float
    seed: int
    tracks: list[dict[str, Any]]
    stability: dict[str, Any]
    segments: int
    resumed_segments: int
    metadata: dict[str, Any]
    timings: dict[str, float]


@dataclass
class _TrackState:
    plan: FacePlan | None          # None: the track is left as it is
    seeds: list[int]
    smoother: FaceSmoother = field(default_factory=FaceSmoother)
    crop: np.ndarray | None = None
    M: np.ndarray | None = None
    mask: np.ndarray | None = None
    frames: int = 0
    sims: list[float] = field(default_factory=list)


#: frames timed (after the first, which carries the warm-up) for the run's one-line estimate
ESTIMATE_FRAMES = 3
#: frames watermarked together (one batched call on the pipeline's device) before they are encoded
MARK_BATCH = 8


def estimate_line(seconds_per_frame: float, frames_left: int, fps: float) -> str | None:
    """The one line said before a long video job (a minute or more left): the measured speed and
    the time the remaining frames will take at it; None for a short one."""
    left = seconds_per_frame * frames_left
    if left < 60:
        return None
    return (f"video: {seconds_per_frame:.1f} s per frame here ({seconds_per_frame * fps / 60:.1f} min per second "
            f"of footage): about {left / 60:.0f} min for the {frames_left} frames left")


def _file_id(src: Any) -> Any:
    if isinstance(src, (str, os.PathLike)) and Path(src).is_file():
        st = Path(src).stat()
        return [str(Path(src).resolve()), st.st_size, st.st_mtime_ns]
    if isinstance(src, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(src).tobytes()).hexdigest()
    return repr(src)[:200]


class VideoEditPipeline:
    """Runs an edit job (``pipe.job(...)``: swap, restore, age) over a clip."""

    def __init__(self, job: EditJob, settings: VideoSettings | None = None, limits: VideoLimits | None = None) -> None:
        if not isinstance(job, EditJob):
            raise InvalidArgumentError(f"a video runs an edit job (pipe.job(..., consent=True)), not {type(job).__name__}")
        self.job = job
        self.pipe = job.pipe
        self.settings = settings or VideoSettings()
        self.limits = limits
        self.planner = TrackPlanner(job)

    def fingerprint(self, info: vc.VideoInfo, provenance: Provenance, inputs: list[Any]) -> str:
        """What makes two runs the same (resume only continues the same run)."""
        s = asdict(self.settings)
        body = {"input": _file_id(info.path), "task": self.job.task, "preset": self.pipe.name,
                "job": self.job.settings.as_dict(), "policy": str(self.job.policy), "identities": self.job.digest(),
                "inputs": [_file_id(x) for x in inputs],
                "settings": s, "watermark": provenance.watermark, "facegen": __version__}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def __call__(self, target: str | os.PathLike[str], out: str | os.PathLike[str], *, seed: int | None = None,
                 provenance: Provenance | None = None, inputs: list[Any] | None = None,
                 progress: bool = True) -> VideoResult:
        # 1. the clip
        info = vc.probe(target, self.limits)
        check_video(info, self.limits)
        st = self.settings
        out = Path(out)
        prov = provenance or Provenance()
        fp = self.fingerprint(info, prov, inputs or [])
        # 2. the run's segments: start, or continue after the last finished one
        store = SegmentStore(out, fp)
        done, record = store.open({"seed": seed, "input": str(target)})
        run_seed = record.get("seed")
        if run_seed is None:
            run_seed = seeds_for(1, None)[0]
            record["seed"] = run_seed
            atomic_write_bytes(store.dir / "run.json", json.dumps(record, sort_keys=True, indent=1).encode())
        self.run_seed = int(run_seed)
        gop = st.encode.gop(info.fps)
        seg_frames = max(1, round(st.segment_seconds * float(info.fps) / gop)) * gop
        judge_every = max(1, int(round(st.judge_every_seconds * float(info.fps))))
        wm_on, wm_info = vp.watermark_plan(prov, *info.display_size)
        cid = vp.run_content_id(fp)
        self._reset()
        state = self._load(store, done - 1) if done else None
        from_pts = None if state is None else int(state["last_pts"]) + 1
        report = vc.DecodeReport()
        frames = vc.read_frames(info, start=st.start, end=st.end, from_pts=from_pts, report=report)
        est = self._expected(info)
        bar = self._bar(progress, est, self.count)
        timings = dict.fromkeys(("decode", "detect_track", "edit", "measure", "encode", "watermark"), 0.0)
        seg = done
        writer = None
        pending: list[tuple[int, np.ndarray]] = []   # edited frames waiting for their batch's watermark
        first = self.count                              # frames done before this run (a resume)

        def flush() -> None:
            """Watermark the pending frames in one call on the pipeline's device, write them, and
            commit the segment when they complete it (pending never crosses a segment's end)."""
            nonlocal writer, seg
            if not pending:
                return
            t0 = time.perf_counter()
            rgbs = [e for _, e in pending]
            if wm_on:
                rgbs = vp.mark_frames(rgbs, prov.device)
            timings["watermark"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            for (pts, _), rgb in zip(pending, rgbs):
                if writer is None:
                    writer = vc.SegmentWriter(store.segment_tmp(seg), info, st.encode)
                writer.write(pts, rgb)
            pending.clear()
            if writer is not None and writer.frames == seg_frames:     # 4. commit the segment and the state
                writer.close()
                writer = None
                store.commit(seg, *self._state())
                seg += 1
            timings["encode"] += time.perf_counter() - t0

        t = t_est = time.perf_counter()
        # 3. frame by frame (the watermark and the encoder take them MARK_BATCH at a time)
        for frame in frames:
            timings["decode"] += time.perf_counter() - t
            if st.max_frames is not None and self.count >= st.max_frames:
                break
            if self.first_pts is None:
                self.first_pts = frame.pts
            edited = self._frame(frame, judge_every, timings)
            pending.append((frame.pts, edited))
            self.count += 1
            self.last_pts = frame.pts
            in_segment = (writer.frames if writer is not None else 0) + len(pending)
            if len(pending) >= MARK_BATCH or in_segment == seg_frames:
                flush()
            if bar is not None:
                bar.update(1)
            t = time.perf_counter()
            if self.count == first + 1:                 # time the frames after the first (model warm-up)
                t_est = t
            elif self.count == first + 1 + ESTIMATE_FRAMES and (line := estimate_line(
                    (t - t_est) / ESTIMATE_FRAMES, est - self.count, float(info.fps))):
                logger.warning(line)
        flush()
        if writer is not None:
            writer.close()
            store.commit(seg, *self._state())
            seg += 1
        if bar is not None:
            bar.close()
        if self.count == 0:
            store.remove()
            raise vc.BadVideoError(f"{target}: no frame could be decoded in the selected range")
        if report.corrupt:
            logger.warning("%s: %d damaged packet(s) could not be decoded; the output has %d frames", target,
                           report.corrupt, self.count)
        if report.vfr:
            logger.warning("%s has a variable frame rate: every frame keeps its own timestamp", target)
        # 5. the final file
        t = time.perf_counter()
        meta = self._metadata(info, prov, cid, wm_info)
        full = st.start in (None, 0) and st.end is None and (st.max_frames is None or self.count >= info.frames)
        end_pts = vc.end_pts(info) if full else None
        last = end_pts - self.last_pts if end_pts and end_pts > self.last_pts else vc.nominal_duration(info)
        start_s = float(self.first_pts * info.time_base)
        end_s = None if full else float((self.last_pts + last) * info.time_base)
        tmp = store.tmp("final.mp4")
        vc.assemble(tmp, info, store.segments(seg), metadata=vp.container_tags(meta), last_duration=last,
                    start=start_s if not full else 0.0, end=end_s, shift_pts=self.first_pts or 0)
        if prov.c2pa is True:
            signed = temp_path_for(out)
            vp.sign_mp4(tmp, signed, meta, prov)
            tmp.unlink()
            tmp = signed
        replace_durably(tmp, out)
        store.remove()
        timings["assemble"] = time.perf_counter() - t
        return VideoResult(out, self.count, info.fps, float(self.count / info.fps) if info.fps else 0.0, self.run_seed,
                           meta["tracks"], meta["stability"], seg, done, meta, timings)

    # ------------------------------------------------------------------ one frame
    def _frame(self, frame: vc.Frame, judge_every: int, timings: dict[str, float]) -> np.ndarray:
        t = time.perf_counter()
        rgb = self.job.prepare(frame.rgb)
        faces = self._detect(rgb)
        assigned = self.tracker.update(self.count, rgb, faces)
        born = [(tr, f) for tr, f, b in assigned if b]
        if born:
            plans = self.planner.plan_births(rgb, faces, [(f, tr.embedding) for tr, f in born])
            for (tr, _f), plan in zip(born, plans):
                n = self.pipe.seeds_per_face
                k = sum(1 for s in self.states.values() if s.plan is not None) if plan is not None else 0
                seeds = seeds_for(n * (k + 1), self.run_seed)[n * k:] if plan is not None else []
                self.states[tr.id] = _TrackState(plan, seeds)
        timings["detect_track"] += time.perf_counter() - t
        t = time.perf_counter()
        out = rgb.copy()
        region = np.zeros(rgb.shape[:2], bool)
        judged = []
        st = self.settings
        for tr, face, _b in assigned:
            ts = self.states.get(tr.id)
            if ts is None or ts.plan is None:
                continue
            sm = ts.smoother(face, frame.time) if st.smoothing else face
            init = None
            if ts.crop is not None and st.temporal > 0:
                fc = self.pipe.model_crop(out, sm, self.job.settings)
                init = guided_init(fc.crop, warp_previous(ts.crop, ts.M, fc.M), st.temporal)
            regen = self.job.edit(out, replace(ts.plan, face=sm, init_crop=init), ts.seeds)
            if ts.crop is not None and st.carry > 0:       # the result keeps a share of the previous one
                prev = warp_previous(ts.crop, ts.M, regen.face_crop.M)
                regen.crop = guided_init(regen.crop, prev, st.carry)
            regen.mask = blend_mask(regen.mask, ts.mask, st.mask_average if st.smoothing else 0.0)
            out = self.job.paste(out, regen, sm)
            ts.crop, ts.M, ts.mask = regen.crop, regen.face_crop.M, regen.mask
            ts.frames += 1
            inv = cv2.invertAffineTransform(regen.face_crop.M)
            region |= cv2.warpAffine(regen.mask.astype(np.float32), inv, (rgb.shape[1], rgb.shape[0])) > 0.5
            if (self.count - tr.first_frame) % judge_every == 0:
                judged.append((ts, sm))
        timings["edit"] += time.perf_counter() - t
        t = time.perf_counter()
        for ts, sm in judged:
            assert ts.plan is not None
            sims, _name = self.pipe.judge(ts.plan.reference_rgb, ts.plan.reference_face, [(out, sm)])
            if sims[0] is not None:
                ts.sims.append(round(float(sims[0]), 4))
        if self.prev_in is not None and region.any():
            d_out, n = region_change(out, self.prev_out, region)
            d_in, _ = region_change(rgb, self.prev_in, region)
            self.change += np.array([d_out, d_in, n], np.float64)
        self.prev_in, self.prev_out = rgb, out
        timings["measure"] += time.perf_counter() - t
        return out

    def _detect(self, rgb: np.ndarray) -> list[Any]:
        """Every face of the frame by the preset's detector (none is fine: the frame passes through)."""
        from facegen.errors import NoFaceError  # noqa: PLC0415
        from facegen.faces.types import Face  # noqa: PLC0415

        side = self.settings.detect_side
        h, w = rgb.shape[:2]
        scale = side / max(h, w) if side and max(h, w) > side else 1.0
        small = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)),
                                                    interpolation=cv2.INTER_AREA)
        try:
            faces = list(self.pipe.encoder_model().detect(small))
        except NoFaceError:
            return []
        if scale == 1.0:
            return faces
        k = np.float32(1.0 / scale)
        return [Face(f.bbox * k, f.kps * k, f.score, None if f.landmarks68 is None else f.landmarks68 * k,
                     dict(f.extra)) for f in faces]

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        from facegen.id.encoders import get_analyzer  # noqa: PLC0415
        enc = get_analyzer(TRACK_ENCODER)
        self.tracker = Tracker(embedder=lambda rgb, face: enc.embed(rgb, face).vector)
        self.states: dict[int, _TrackState] = {}
        self.count = 0
        self.first_pts: int | None = None
        self.last_pts = 0
        self.prev_in: np.ndarray | None = None
        self.prev_out: np.ndarray | None = None
        self.change = np.zeros(3, np.float64)
        self.planner.planned_first = False

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        metas, arrays = self.tracker.state()
        tracks = {}
        for tid, ts in self.states.items():
            pm, pa = self.planner.plan_state(ts.plan)
            arrays.update({f"plan{tid}.{k}": v for k, v in pa.items()})
            arrays.update({f"smooth{tid}.{k}": v for k, v in ts.smoother.filter.state().items()})
            if ts.smoother.scale is not None:
                arrays[f"smooth{tid}.scale"] = np.array([ts.smoother.scale], np.float64)
            for name in ("crop", "M", "mask"):
                if getattr(ts, name) is not None:
                    arrays[f"prev{tid}.{name}"] = getattr(ts, name)
            tracks[str(tid)] = {"plan": pm, "seeds": ts.seeds, "frames": ts.frames, "sims": ts.sims}
        if self.prev_in is not None:
            arrays["prev_in"], arrays["prev_out"] = self.prev_in, self.prev_out
        arrays["change"] = self.change
        meta = {"count": self.count, "first_pts": self.first_pts, "last_pts": self.last_pts, "tracks": metas,
                "states": tracks, "planned_first": self.planner.planned_first,
                "embeddings": self.tracker.embeddings_computed}
        return meta, arrays

    def _load(self, store: SegmentStore, k: int) -> dict[str, Any]:
        meta, arrays = store.load_state(k)
        self.tracker.load_state(meta["tracks"], arrays)
        self.tracker.embeddings_computed = int(meta["embeddings"])
        self.planner.planned_first = bool(meta["planned_first"])
        for tid, s in meta["states"].items():
            sub = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"plan{tid}.")}
            ts = _TrackState(self.planner.plan_from_state(s["plan"], sub), list(s["seeds"]), frames=int(s["frames"]),
                             sims=list(s["sims"]))
            sm = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"smooth{tid}.")}
            ts.smoother.filter.load(sm)
            ts.smoother.scale = float(sm["scale"][0]) if "scale" in sm else None
            for name in ("crop", "M", "mask"):
                if f"prev{tid}.{name}" in arrays:
                    setattr(ts, name, arrays[f"prev{tid}.{name}"])
            self.states[int(tid)] = ts
        self.prev_in, self.prev_out = arrays.get("prev_in"), arrays.get("prev_out")
        self.change = arrays["change"].astype(np.float64)
        self.count, self.first_pts, self.last_pts = int(meta["count"]), meta["first_pts"], int(meta["last_pts"])
        return meta

    # ------------------------------------------------------------------ report
    def _expected(self, info: vc.VideoInfo) -> int:
        st = self.settings
        secs = min(st.end or info.duration, info.duration) - (st.start or 0.0)
        n = min(info.frames, max(1, int(round(secs * float(info.fps)))))
        return min(n, st.max_frames) if st.max_frames else n

    @staticmethod
    def _bar(progress: bool, total: int, initial: int) -> Any:
        if not progress:
            return None
        from tqdm.auto import tqdm  # noqa: PLC0415
        return tqdm(total=total, initial=initial, unit="frame", desc="video", dynamic_ncols=True)

    def stability(self) -> dict[str, Any]:
        d_out, d_in, n = self.change
        if n == 0:
            return {"output": None, "input": None, "ratio": None}
        out, inp = d_out / n, d_in / n
        return {"output": round(out, 3), "input": round(inp, 3), "ratio": round(out / inp, 3) if inp > 0 else None}

    def _metadata(self, info: vc.VideoInfo, prov: Provenance, cid: str, wm_info: dict[str, Any]) -> dict[str, Any]:
        tracks = []
        for tr in self.tracker.tracks:
            ts = self.states.get(tr.id)
            edited = bool(ts and ts.plan is not None)
            sims = ts.sims if ts else []
            tracks.append({"track": tr.id, "first_frame": tr.first_frame, "last_frame": tr.last_frame,
                           "frames_seen": tr.hits, "edited": edited, "frames_edited": ts.frames if ts else 0,
                           "seeds": ts.seeds if ts else [], "source": ts.plan.info.get("source") if ts and ts.plan else None,
                           "id_similarity": round(float(np.mean(sims)), 4) if sims else None,
                           "id_similarity_min": min(sims) if sims else None})
        c2pa = "signed" if prov.c2pa is True else "off (--no-c2pa)"
        return self.pipe.provenance(seed=self.run_seed, preset=self.pipe.name, adapter=self.pipe.family,
                                    frames=self.count, fps=str(info.fps), tracks=tracks, stability=self.stability(),
                                    temporal=settings_dict(self.settings.smoothing, self.settings.temporal,
                                                           self.settings.mask_average, self.settings.carry),
                                    **self.job.fields,
                                    **{PROVENANCE_KEY: {"content_id": cid, "watermark": wm_info, "c2pa": c2pa}})
