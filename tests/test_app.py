"""The web demo through its HTTP API (gradio_client), as a user's browser or script sees it.

One app (tiny preset) is launched in-process on 127.0.0.1 at a free port for the module;
`python app.py --model tiny` is also started once in a subprocess to time its start-up.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file

from facegen.io import read_metadata

TINY_SIZE = 64  # the tiny preset's default height and width


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tom_hanks_path):
    from facegen.app import build_app, launch_app

    work = tmp_path_factory.mktemp("app-work")
    app = build_app(model="tiny", work_dir=work)
    _, url, _ = launch_app(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    yield app, url, client
    app.close()


def photo(path: Path) -> list[dict]:
    return [{"image": handle_file(str(path)), "caption": None}]


def generate(client: Client, photos, preset="tiny", n=1, seed=7, steps=2):
    return client.predict(photos, preset, "", "", n, seed, steps, 3.0, 1.0, 0.8, api_name="/generate")


@pytest.fixture(scope="module")
def first_run(served, tom_hanks_path):
    """Two images (seeds 7 and 8) of Tom Hanks, as the client received them."""
    return generate(served[2], photo(tom_hanks_path), n=2, seed=7)


def assert_short_error(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "Traceback" not in msg and len(msg.splitlines()) == 1, msg
    for frag in fragments:
        assert frag in msg, msg


# ---------------------------------------------------------------- the Generate endpoint
def test_generate_images_with_provenance_seed_and_similarity(served, first_run):
    app, _, _ = served
    gallery, files, table, details = first_run
    assert len(gallery) == len(files) == len(details) == 2
    for i, (item, path) in enumerate(zip(gallery, files)):
        from PIL import Image
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (TINY_SIZE, TINY_SIZE)
        meta = read_metadata(path)                       # the file as downloaded by a client
        assert meta["ai_generated"] is True
        assert meta["metadata"]["preset"] == "tiny" and meta["metadata"]["seed"] == 7 + i
        assert meta["metadata"]["adapter"] == "arc2face"
        # each result is captioned with its seed, its ID similarity and the preset
        assert f"seed {7 + i}" in item["caption"] and "ID similarity" in item["caption"]
        assert item["caption"].endswith("tiny")
        assert details[i]["seed"] == 7 + i and details[i]["preset"] == "tiny" and "id_similarity" in details[i]
    assert "ID similarity" in table and "| 1 | 8 |" in table

    # the download is the very file the app wrote (bytes identical: served, not re-encoded)
    written = {p.name: p for p in app.facegen_context.outputs_dir.rglob("*.png")}
    for path in files:
        original = written[Path(path).name]
        assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()


def test_reused_seed_gives_the_same_image(served, first_run, tom_hanks_path):
    _, _, client = served
    _, first, _, _ = first_run
    _, again, _, details = generate(client, photo(tom_hanks_path), n=1, seed=8)  # the seed of result #1
    assert details[0]["seed"] == 8
    from PIL import Image
    a = np.asarray(Image.open(first[1]).convert("RGB"))
    b = np.asarray(Image.open(again[0]).convert("RGB"))
    assert np.array_equal(a, b)


def test_random_seed_is_reported(served, tom_hanks_path):
    _, _, client = served
    _, files, _, details = generate(client, photo(tom_hanks_path), n=1, seed=-1, steps=1)
    seed = details[0]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert read_metadata(files[0])["metadata"]["seed"] == seed


def test_progress_follows_the_denoising_steps(served, tom_hanks_path):
    _, _, client = served
    # 40 steps: long enough (> 1 s) that polling every 20 ms sees the bar at several places
    job = client.submit(photo(tom_hanks_path), "tiny", "", "", 1, 3, 40, 3.0, 1.0, 0.8, api_name="/generate")
    seen = set()
    while not job.done():
        status = job.status()
        for unit in status.progress_data or []:
            if unit.unit == "steps" and unit.length:
                seen.add((unit.index, unit.length))
        time.sleep(0.02)
    job.result()
    assert seen and all(length == 40 for _, length in seen), seen
    assert len({index for index, _ in seen}) >= 2          # the bar moved during the run


def test_pipelines_load_once_per_preset_across_threads():
    import threading

    from facegen.app.cache import PipelineCache

    cache, calls = PipelineCache(), []

    def load():
        calls.append(1)
        time.sleep(0.2)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("generate", "tiny", load))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(g) for g in got}) == 1
    with pytest.raises(RuntimeError):
        cache.get("generate", "other", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert ("generate", "other") not in cache                 # a failed load is retried next time


# ---------------------------------------------------------------- the edit endpoints
EDIT_CALLS = {   # tab key -> (preset, arguments after the photos, with consent ticked)
    "swap": lambda src, dst, consent: (src, dst, "tiny", consent, "largest", 5, 0.8, 2),
    "age": lambda src, dst, consent: (dst, "tiny-faceid", 60, 30, "person", consent, 5, 0),
    "restore": lambda src, dst, consent: (dst, src, "tiny", consent, 5, 0.5, 2),
}


@pytest.mark.parametrize("job", sorted(EDIT_CALLS))
def test_edit_endpoint_keeps_the_photo_size_and_needs_consent(served, job, tom_hanks_path, tmp_path):
    from PIL import Image

    from facegen.app.tabs import TABS

    if not next(t for t in TABS if t.key == job).available():
        pytest.skip(f"the {job} pipeline is not installed")
    _, _, client = served
    target = tmp_path / "target.jpg"                     # a non-square photo: the output keeps its size
    with Image.open(tom_hanks_path) as im:
        w, h = im.size
        im.convert("RGB").crop((0, 0, w, h - 30)).save(target, quality=92)
    src, dst = photo(tom_hanks_path), photo(target)
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        client.predict(*EDIT_CALLS[job](src, dst, False), api_name=f"/{job}")
    assert_short_error(excinfo, "right to edit")
    _, files, table, details = client.predict(*EDIT_CALLS[job](src, dst, True), api_name=f"/{job}")
    assert len(files) == 1 and details[0]["seed"] == 5 and "ID similarity" in table
    with Image.open(files[0]) as out:
        assert out.size == (w, h - 30)
    meta = read_metadata(files[0])
    assert meta["ai_generated"] is True and meta["metadata"]["job"] == job


def test_dataset_preview_grid_and_shard_downloads(served):
    import tarfile

    from facegen.app.tabs import TABS

    if not next(t for t in TABS if t.key == "dataset").available():
        pytest.skip("the dataset runner or its generation hook is not installed")
    _, _, client = served
    grid, files, text, summary = client.predict("tiny", 3, 2, 5, api_name="/dataset")
    captions = [item["caption"] for item in grid]
    assert len(grid) == 6 and captions[0].startswith("id 0") and captions[-1].startswith("id 2")
    assert "3 identities × 2 images" in text and summary["accepted"] == 6
    shards = [f for f in files if f.endswith(".tar")]
    assert shards and any(f.endswith("manifest.jsonl") for f in files)
    with tarfile.open(shards[0]) as tar:
        pngs = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".png")}
    first = Path(grid[0]["image"])
    assert first.read_bytes() in pngs.values()                   # the preview is the shard's own bytes
    meta = read_metadata(first)
    assert meta["ai_generated"] is True
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        client.predict("tiny", 8, 9, 5, api_name="/dataset")
    assert_short_error(excinfo)


# ---------------------------------------------------------------- errors: short messages
def test_bad_upload_returns_error_message(served, tmp_path):
    _, _, client = served
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a picture, just text " * 20)
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        generate(client, photo(bad))
    assert_short_error(excinfo, "holiday.png", "not a recognised image")
    assert str(tmp_path) not in str(excinfo.value)          # the server's folders are not shown


def test_photo_without_a_face(served, tmp_path):
    _, _, client = served
    from PIL import Image
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        generate(client, photo(blank))
    assert_short_error(excinfo, "face")


def test_no_photo_and_unusable_preset(served, tom_hanks_path):
    _, _, client = served
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        generate(client, None)
    assert_short_error(excinfo, "upload a photo")
    # a real preset without accepted licence / weights: the reason, not a crash
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        generate(client, photo(tom_hanks_path), preset="arc2face")
    assert_short_error(excinfo, "arc2face")
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        generate(client, photo(tom_hanks_path), preset="no-such-preset")
    assert_short_error(excinfo)


# ---------------------------------------------------------------- hardening
def _status(url: str, data: bytes | None = None, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serves_nothing_outside_its_temp_folder(served, first_run, tom_hanks_path):
    app, url, _ = served
    assert url.startswith("http://127.0.0.1:")
    for outside in ("/etc/passwd", str(REPO / "README.md"), str(tom_hanks_path)):
        assert _status(f"{url}gradio_api/file={outside}") == 403, outside
    files = first_run[1]
    inside = next((app.facegen_context.work_dir / "gradio").rglob(Path(files[0]).name))
    assert _status(f"{url}gradio_api/file={inside}") == 200


def test_upload_size_limit_queue_and_one_job_at_a_time(served):
    app, url, _ = served
    boundary = "facegenboundary"
    big = b"0" * (11 * 1024 * 1024)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    status = _status(f"{url}gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 413
    assert app._queue.max_size == 16
    jobs = [fn for fn in app.fns.values() if fn.api_name in ("generate", "swap", "age", "restore", "dataset")]
    assert jobs and all(fn.concurrency_limit == 1 and fn.concurrency_id == "gpu" for fn in jobs)
    assert not app.share and app.allowed_paths == []


# ---------------------------------------------------------------- page content
def test_tabs_match_available_jobs_and_missing_presets_are_listed(served, tmp_path):
    from facegen.app.presets import preset_infos
    from facegen.app.tabs import TABS, TabSpec

    app, _, _ = served
    titles = {b.label for b in app.blocks.values() if isinstance(b, gr.Tab)}
    for spec in TABS:
        assert (spec.title in titles) == spec.available(), spec
    assert {"Generate", "Models"} <= titles
    assert not TabSpec("x", "X", "facegen.app.tabs.generate", ("facegen.pipelines.no_such_job",)).available()

    infos = {i.name: i for i in preset_infos(models_dir=str(tmp_path), accept_license=True)}
    assert infos["tiny"].ready
    assert not infos["arc2face"].ready and str(tmp_path) in infos["arc2face"].reason
    infos = {i.name: i for i in preset_infos(models_dir=str(tmp_path), accept_license=False)}
    assert not infos["arc2face"].ready and infos["arc2face"].label.startswith("arc2face")


def test_prompt_box_only_for_presets_that_take_text():
    from facegen.app.presets import takes_prompt
    from facegen.app.tabs.generate import preset_updates
    from facegen.models.registry import PRESETS
    from facegen.pipelines.generation import adapter_for

    for name, preset in PRESETS.items():
        assert takes_prompt(name) == type(adapter_for(preset)).supports_prompt, name
    assert preset_updates("tiny")[0]["visible"] is False
    assert preset_updates("tiny-faceid")[0]["visible"] is True


# ---------------------------------------------------------------- CLI and start-up
def test_serve_subcommand_defaults():
    from facegen.cli import build_parser
    from facegen.cli_serve import run_serve

    args = build_parser().parse_args(["serve", "--model", "tiny"])
    assert args.func is run_serve and args.host == "127.0.0.1" and args.share is False


def test_serve_errors_are_one_line(tmp_path):
    block = ("import sys\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'gradio':\n"
             "            raise ImportError('blocked ' + name)\n"
             "sys.meta_path.insert(0, Block())\n"
             "from facegen.cli import main\n"
             "sys.exit(main(['serve', '--model', 'tiny']))\n")
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False)
    assert proc.returncode == 2 and "pip install 'facegen[app]'" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "app.py", "--model", "no-such-preset"], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: unknown model preset 'no-such-preset'"), proc.stderr


def test_app_py_starts_offline_quickly(tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--model", "tiny", "--port", str(port),
                             "--work-dir", str(tmp_path / "work")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status, elapsed = None, None
        while time.perf_counter() - t0 < 60 and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    status, elapsed = resp.status, time.perf_counter() - t0
                    break
            except OSError:
                time.sleep(0.25)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "not up in 60 s"
        print(f"python app.py --model tiny answered after {elapsed:.1f} s")
        assert elapsed < 30
        body, headers = _multipart([("face.png", b"someone's face")])
        assert _status(f"http://127.0.0.1:{port}/gradio_api/upload", body, headers) == 200
        uploads = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
        assert uploads                                      # the upload is on disk while the app runs
    finally:
        proc.terminate()                                    # SIGTERM, as a service manager stops it
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    left = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert not left, left                                   # users' uploads do not outlive the app


# ---------------------------------------------------------------- hostile requests (issue 17)
def _multipart(files: list[tuple[str, bytes]], boundary: str = "facegenboundary") -> tuple[bytes, dict]:
    body = b""
    for name, data in files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _join(url: str, app, api_name: str, data: list) -> tuple[int, str]:
    import json

    fn_index = next(i for i, fn in app.fns.items() if fn.api_name == api_name)
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": "hostile", "event_data": None,
                       "trigger_id": None}).encode()
    req = urllib.request.Request(f"{url}gradio_api/queue/join", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_request_bodies_prompts_files_and_bytes_are_capped(served, tom_hanks_path):
    app, url, client = served
    status, _ = _join(url, app, "generate", [None, "tiny", "x" * (2 * 1024 * 1024), "", 1, 1, 1, 3.0, 1.0, 0.8])
    assert status == 413                                   # a 2 MB prompt never reaches the handler
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:
        client.predict(photo(tom_hanks_path), "tiny", "a" * 5000, "", 1, 1, 1, 3.0, 1.0, 0.8, api_name="/generate")
    assert_short_error(excinfo, "prompt is too long", "2,000")
    body, headers = _multipart([(f"{i}.png", b"x" * 100) for i in range(9)])
    assert _status(f"{url}gradio_api/upload", body, headers) == 413      # more files than --max-images
    chunk = b"0" * (9 * 1024 * 1024)                                      # each under the 10 MB file limit
    body, headers = _multipart([(f"{i}.png", chunk) for i in range(5)])
    assert _status(f"{url}gradio_api/upload", body, headers) == 413      # 45 MB over the 40 MB request quota
    body, headers = _multipart([("ok.png", b"x" * 100)])
    assert _status(f"{url}gradio_api/upload", body, headers) == 200


def test_a_url_in_a_file_field_is_not_fetched(served):
    app, url, _ = served
    remote = {"image": {"path": "http://example.com/face.png", "url": "http://example.com/face.png",
                        "meta": {"_type": "gradio.FileData"}}, "caption": None}
    status, text = _join(url, app, "generate", [[remote], "tiny", "", "", 1, 1, 1, 3.0, 1.0, 0.8])
    assert status == 400 and "upload" in text, (status, text)


def test_malformed_numbers_get_a_clear_error(served, tom_hanks_path):
    from facegen.app.presets import preset_infos
    from facegen.app.tabs.generate import generate as generate_tab
    from facegen.errors import InvalidArgumentError

    app, _, client = served
    ctx = app.facegen_context
    infos = preset_infos(ctx.models_dir, ctx.accept_license)
    photos = photo(tom_hanks_path)
    for bad in ({"num_images": "abc"}, {"seed": "1e999"}, {"steps": "two"}, {"guidance": float("nan")},
                {"guidance": "nan"}, {"guidance": "inf"}, {"adapter_scale": "x"}):
        args = {"num_images": 1, "seed": 1, "steps": 1, "guidance": 3.0, "adapter_scale": 1.0, **bad}
        with pytest.raises(InvalidArgumentError) as excinfo:
            generate_tab(ctx, infos, photos, "tiny", "", "", args["num_images"], args["seed"], args["steps"],
                         args["guidance"], args["adapter_scale"], 0.8)
        assert len(str(excinfo.value).splitlines()) == 1
    with pytest.raises(gradio_client.exceptions.AppError) as excinfo:   # and through the API: a message
        client.predict(photos, "tiny", "", "", 1, 7, 2, "nan", 1.0, 0.8, api_name="/generate")
    msg = str(excinfo.value)
    assert "guidance" in msg.lower() and "internal error" not in msg and msg.strip() not in ("", "None"), msg


def test_old_uploads_and_results_are_deleted(tmp_path):
    from facegen.app.context import sweep_work_dir

    cache = tmp_path / "gradio"
    old_upload = cache / "abc123" / "face.png"
    old_result = cache / "outputs" / "generate-1" / "generate-00.png"
    fresh = cache / "def456" / "new.png"
    for p in (old_upload, old_result, fresh):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    hours_ago = time.time() - 7200
    for p in (old_upload, old_result, old_upload.parent, old_result.parent):
        os.utime(p, (hours_ago, hours_ago))
    assert sweep_work_dir(tmp_path, max_age_s=3600) == 2
    assert not old_upload.exists() and not old_result.exists() and fresh.exists()
    assert not old_upload.parent.exists() and (cache / "outputs").is_dir()
