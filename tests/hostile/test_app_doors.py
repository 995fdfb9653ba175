"""Items 2, 3, 4, 5, 9 and 13 of issue 29: what the web app lets one request (or one client) do.

The middleware is driven as plain ASGI here (no server): what reaches Gradio is recorded."""

from __future__ import annotations

import asyncio
import json

import pytest

from facegen.app.limits import LimitsMiddleware, RequestLimits

REMOTE = {"image": {"path": "https://example.com/face.png", "meta": {"_type": "gradio.FileData"}}}


def _call(body: bytes, path: str = "/gradio_api/call/generate") -> tuple[int | None, bytes, bool]:
    """(status the middleware answered or None, its body, whether Gradio was reached)."""
    reached = {"app": False}
    sent: list[dict] = []

    async def app(scope, receive, send):
        reached["app"] = True
        await receive()

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    asyncio.run(LimitsMiddleware(app, RequestLimits())(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, payload, reached["app"]


@pytest.mark.parametrize("layout", [
    lambda j: j, lambda j: "  \n" + j, lambda j: "\t" + j, lambda j: "\r\n\r\n" + j + "\n",
    lambda j: "\ufeff" + j,
])
@pytest.mark.parametrize("path", ["/gradio_api/call/generate", "/gradio_api/call/inspect", "/gradio_api/queue/join"])
def test_a_url_file_field_is_refused_however_the_body_is_laid_out(layout, path):
    text = layout(json.dumps({"data": [[REMOTE], "tiny"]}))
    status, payload, reached = _call(text.encode("utf-8"), path)
    assert status == 400 and not reached and b"upload" in payload


def test_a_url_file_field_in_utf16_json_is_refused():
    status, _, reached = _call(json.dumps({"data": [REMOTE]}).encode("utf-16"))
    assert status == 400 and not reached


def test_a_very_deep_body_is_400_not_500():
    status, payload, reached = _call(b"[" * 200_000 + b"]" * 200_000)
    assert status == 400 and not reached and b"deep" in payload


def test_ordinary_bodies_still_reach_gradio():
    for body in (json.dumps({"data": [{"path": "/tmp/gradio/x.png", "url": "http://127.0.0.1/gradio_api/file=x"}]}),
                 "", "not json at all", " "):
        status, _, reached = _call(body.encode())
        assert reached and status is None, body


# ------------------------------------------------------------------ 4. upload quotas
def _multipart(n: int, size: int, boundary: str = "qb") -> tuple[bytes, list]:
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{i}.png\"\r\n"
                    f"Content-Type: image/png\r\n\r\n".encode() + b"x" * size + b"\r\n" for i in range(n))
    body += f"--{boundary}--\r\n".encode()
    return body, [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]


async def _gradio(scope, receive, send):
    await receive()


def _upload(mw: LimitsMiddleware, body: bytes, headers: list, client: str = "10.0.0.1") -> int | None:
    sent: list[dict] = []

    async def app(scope, receive, send):
        await receive()

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": (client, 5555),
             "headers": headers + [(b"content-length", str(len(body)).encode())]}
    asyncio.run(mw(scope, receive, send))
    return next((m["status"] for m in sent if m["type"] == "http.response.start"), None)


def test_one_client_cannot_fill_the_work_folder(tmp_path):
    from facegen.app.limits import UploadQuota

    limits = RequestLimits(max_client_total=200_000, max_work_total=10**9)
    mw = LimitsMiddleware(_gradio, limits, quota=UploadQuota(limits, tmp_path, window_s=3600))
    body, headers = _multipart(4, 20_000)
    statuses = [_upload(mw, body, headers) for _ in range(3)]
    assert statuses == [None, None, 429]                     # the third would pass 200 kB
    assert _upload(mw, body, headers, client="10.0.0.2") is None   # another client is not affected


def test_the_work_folder_total_evicts_the_oldest_or_refuses(tmp_path):
    import os
    import time

    from facegen.app.limits import UploadQuota

    cache = tmp_path / "gradio" / "abc"
    cache.mkdir(parents=True)
    old = cache / "old.png"
    old.write_bytes(b"x" * 60_000)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = cache / "fresh.png"
    fresh.write_bytes(b"x" * 30_000)
    limits = RequestLimits(max_client_total=10**9, max_work_total=100_000)
    mw = LimitsMiddleware(_gradio, limits, quota=UploadQuota(limits, tmp_path, window_s=3600))
    body, headers = _multipart(1, 30_000)
    assert _upload(mw, body, headers) is None and not old.exists() and fresh.exists()   # the oldest went
    big, headers = _multipart(1, 90_000)
    assert _upload(mw, big, headers) == 507 and fresh.exists()   # a fresh file is never evicted


# ------------------------------------------------------------------ 5. files per inspection
def test_inspect_takes_a_bounded_number_of_files(tmp_path):
    pytest.importorskip("gradio")
    from facegen.app.tabs.inspect import inspect
    from facegen.errors import InvalidArgumentError

    p = tmp_path / "a.png"
    with pytest.raises(InvalidArgumentError, match="at most"):
        inspect([str(p)] * 3000)


# ------------------------------------------------------------------ 3, 13, 17. the app's video bounds
def _info(width, height, frames, fps, path="/srv/work/gradio/abc/clip.mp4"):
    from fractions import Fraction

    from facegen.video.container import VideoInfo

    return VideoInfo(path=path, format="mp4", codec="h264", width=width, height=height, fps=Fraction(fps),
                     time_base=Fraction(1, fps), frames=frames, duration=frames / fps, rotation=0, audio=(),
                     size_bytes=800_000)


@pytest.mark.parametrize("info", [(1920, 1080, 3000, 1000), (1920, 1080, 1801, 30), (1280, 720, 5000, 100)])
def test_the_apps_video_bound_counts_frames(info):
    from facegen.video.limits import APP_LIMITS, BadVideoError, check_video

    with pytest.raises(BadVideoError, match="frames") as exc:
        check_video(_info(*info), APP_LIMITS)
    assert "FACEGEN_" not in str(exc.value) and "web app" in str(exc.value)   # no variable governs it


def test_the_cli_video_frame_bound_names_its_variable(monkeypatch):
    from facegen.video.limits import BadVideoError, check_video

    monkeypatch.setenv("FACEGEN_MAX_VIDEO_FRAMES", "100")
    with pytest.raises(BadVideoError, match="FACEGEN_MAX_VIDEO_FRAMES"):
        check_video(_info(64, 64, 101, 30))


def test_app_video_limit_messages_name_no_variable_that_does_not_govern_them():
    from facegen.video.limits import APP_LIMITS, BadVideoError, check_video

    with pytest.raises(BadVideoError) as exc:
        check_video(_info(3840, 2160, 10, 30), APP_LIMITS)
    assert "FACEGEN_MAX_VIDEO_PIXELS" not in str(exc.value)


def test_probe_checks_the_declared_frame_size_before_decoding(tmp_path):
    """The 16000x16000 repro decoded its first frame (33 s, +856 MB) before the size check; probe
    now takes the limits and checks the header's size first (a small clip and limit stand in)."""
    av = pytest.importorskip("av")
    from facegen.video import container
    from facegen.video.limits import BadVideoError, VideoLimits

    p = tmp_path / "c.mp4"
    with av.open(str(p), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=5)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(__import__("numpy").zeros((64, 64, 3), "uint8"), format="rgb24")
        for packet in list(vs.encode(frame)) + list(vs.encode()):
            c.mux(packet)
    with pytest.raises(BadVideoError, match="over the limit"):
        container.probe(p, VideoLimits(max_pixels=32 * 32))


def test_app_video_errors_hide_the_servers_paths(tmp_path):
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    from facegen.app.video import run_video
    from facegen.errors import FacegenError

    work = tmp_path / "work"
    upload = work / "gradio" / "0123abcd" / "clip.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_text("not a video")
    ctx = SimpleNamespace(work_dir=work)
    with pytest.raises(FacegenError) as exc:
        run_video(ctx, "swap", object, "tiny", str(upload), lambda pipe: pipe)
    assert str(tmp_path) not in str(exc.value) and "clip.mp4" in str(exc.value)


# ------------------------------------------------------------------ 17. too few values: a message, not {"error": null}
@pytest.mark.parametrize("path, body", [("/gradio_api/call/generate", {"data": [None, "tiny"]}),
                                        ("/gradio_api/queue/join", {"data": [], "fn_index": 3}),
                                        ("/gradio_api/run/generate", {"data": [1]})])
def test_a_call_with_too_few_values_gets_a_message(path, body):
    from types import SimpleNamespace

    from facegen.app.server import api_arity

    app = SimpleNamespace(fns={3: SimpleNamespace(api_name="generate", inputs=[0] * 10)})
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    asyncio.run(LimitsMiddleware(_gradio, RequestLimits(), arity=api_arity(app))(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert status == 400 and "takes 10 values" in payload["error"]


def test_steps_limit_names_what_governs_it(monkeypatch):
    """FACEGEN_MAX_STEPS=10000 cannot lift the scheduler's bound (500 of 1000 timesteps): the message
    must not tell the user to raise the variable."""
    from facegen import limits
    from facegen.errors import InvalidArgumentError
    from facegen.models import get_preset
    from facegen.pipelines.request import check_sampling

    preset = get_preset("tiny")
    monkeypatch.setenv("FACEGEN_MAX_STEPS", "10000")
    with pytest.raises(InvalidArgumentError) as exc:
        check_sampling(preset, limits.max_steps(1000), 600, None)
    assert "500" in str(exc.value) and "FACEGEN_MAX_STEPS" not in str(exc.value)
    monkeypatch.setenv("FACEGEN_MAX_STEPS", "100")
    with pytest.raises(InvalidArgumentError, match="FACEGEN_MAX_STEPS"):
        check_sampling(preset, limits.max_steps(1000), 101, None)
