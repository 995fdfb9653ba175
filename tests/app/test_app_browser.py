"""The web demo in a real browser: Debian's headless Chromium driven by Playwright for Python.

Open the page, upload a photo, click Generate, wait for the gallery, check an image is shown
with its seed, ID similarity and preset, and that "Reuse this seed" fills the seed box.
Screenshots before and after the run go to ``test-artifacts/`` (gitignored), with the time
from click to result. Skipped when Chromium or Playwright is absent (no browser download).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from conftest import REPO

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("FACEGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).is_file() or shutil.which("chromium")),
                                reason="chromium is not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from facegen.app import build_app, launch_app

    app = build_app(model="tiny", work_dir=tmp_path_factory.mktemp("app-work"), preload=True)
    _, url, _ = launch_app(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


@pytest.fixture(scope="module")
def page():
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        yield pg
        context.close()
        browser.close()


def test_generate_in_the_browser(app_url, page, tom_hanks_path):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app_url, wait_until="domcontentloaded")
    run = page.locator("#gen-run")
    run.wait_for(state="visible", timeout=60_000)
    assert page.locator("#gen-prompt").count() == 0 or not page.locator("#gen-prompt").is_visible()
    page.screenshot(path=str(ARTIFACTS / "app_generate_before.png"), full_page=True)

    page.locator("#gen-photos input[type=file]").set_input_files(str(tom_hanks_path))
    page.locator("#gen-photos img").first.wait_for(state="visible", timeout=30_000)

    page.locator("#gen-num input[type=number]").fill("1")     # one image: the quickest run
    page.locator("#gen-num input[type=number]").press("Enter")
    t0 = time.perf_counter()
    run.click()
    result = page.locator("#gen-gallery img").first
    result.wait_for(state="visible", timeout=120_000)
    page.wait_for_function(
        "() => { const im = document.querySelector('#gen-gallery img');"
        " return im && im.complete && im.naturalWidth > 0; }", timeout=60_000)
    elapsed = time.perf_counter() - t0
    info = page.locator("#gen-info")
    info.get_by_text("tiny").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_generate_after.png"), full_page=True)
    (ARTIFACTS / "app_timing.json").write_text(json.dumps({"click_to_result_s": round(elapsed, 2)}) + "\n")
    print(f"click to result: {elapsed:.1f} s")

    text = info.inner_text()
    assert "ID similarity" in text and "seed" in text
    assert page.locator("#gen-gallery img").count() >= 1
    natural = page.evaluate("() => document.querySelector('#gen-gallery img').naturalWidth")
    assert natural > 0

    # pick the first result, reuse its seed: it lands in the seed box (under Advanced)
    seed_shown = int(page.locator("#gen-info table tbody tr").first.locator("td").nth(1).inner_text())
    assert f"seed {seed_shown}" in page.locator("#gen-gallery").inner_text()
    result.click()
    page.locator("#gen-picked").get_by_text(f"seed {seed_shown}").wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    page.locator("#gen-reuse").click()
    seed_box = page.locator("#gen-seed input")
    page.wait_for_function(
        f"() => {{ const el = document.querySelector('#gen-seed input'); return el && el.value == '{seed_shown}'; }}",
        timeout=30_000)
    assert seed_box.input_value() == str(seed_shown)


def test_several_people_in_the_browser(app_url, page, shared_faces):
    """The Generate tab's "Several people" mode: one upload per person, the layout shown as
    boxes, one image with a row per person in the table."""
    page.goto(app_url, wait_until="domcontentloaded")
    page.locator("#people-mode").get_by_text("Several people").first.click()
    run = page.locator("#people-run")
    run.wait_for(state="visible", timeout=60_000)
    page.locator("#people-preview img").first.wait_for(state="visible", timeout=30_000)
    for k, name in enumerate(("obama_1.jpg", "biden_1.jpg")):
        page.locator(f"#people-photos-{k} input[type=file]").set_input_files(str(shared_faces / name))
        page.locator(f"#people-photos-{k} img").first.wait_for(state="visible", timeout=30_000)
    run.click()
    page.locator("#people-gallery img").first.wait_for(state="visible", timeout=180_000)
    info = page.locator("#people-info")
    info.get_by_text("person 2").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_people_after.png"), full_page=True)
    text = info.inner_text()
    assert "person 1" in text and "person 2" in text and "face in its box" in text
    assert "person 3" not in text
