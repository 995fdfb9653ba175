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
