"""Hostile inputs to the CLI, the image loader and the model loaders (issue 17, CLI/io/model half).

Nothing lost (inputs never overwritten, images written as they are made), nothing hung
(FIFOs), nothing exhausted (configs bounded before loading), and one short line naming the
file and the problem for every bad input.  The CLI runs in-process (``facegen.cli.main``)
so the tiny preset's modules load once for the whole file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, cli
from PIL import Image

from facegen.cli import main
from facegen.errors import BadImageError
from facegen.paths import ModelAccess


@pytest.fixture()
def face_copy(tom_hanks_path, tmp_path):
    path = tmp_path / "me.png"
    shutil.copyfile(tom_hanks_path, path)
    return path


# ---------------------------------------------------------------- 1. never overwrite an input
def test_edit_out_may_not_be_an_input_nor_an_existing_file(capfd, face_copy, tmp_path):
    before = face_copy.read_bytes()
    spelled_otherwise = str(tmp_path / "." / face_copy.name)
    for args in (["swap", "--model", "tiny", "--source", str(face_copy), "--target", str(face_copy)],
                 ["restore", "--model", "tiny", "--image", str(face_copy)],
                 ["age", "--model", "tiny-faceid", "--image", str(face_copy), "--age", "60", "--from-age", "30"]):
        rc, _, err = cli(capfd, *args, "--out", spelled_otherwise, "--consent", "--overwrite")
        assert_one_line_error(rc, err, "is also an input")
    assert face_copy.read_bytes() == before
    existing = tmp_path / "old.png"
    existing.write_bytes(b"a previous result")
    rc, _, err = cli(capfd, "restore", "--model", "tiny", "--image", str(face_copy), "--out", str(existing),
                     "--consent")
    assert_one_line_error(rc, err, "already exists", "--overwrite")
    assert existing.read_bytes() == b"a previous result"


def test_generate_into_the_reference_folder_is_refused(capfd, tom_hanks_path, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    shutil.copyfile(tom_hanks_path, refs / "0000.png")
    before = (refs / "0000.png").read_bytes()
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--id", str(refs), "--out", str(refs), "--overwrite")
    assert_one_line_error(rc, err, "--out", "--id")
    assert (refs / "0000.png").read_bytes() == before and sorted(os.listdir(refs)) == ["0000.png"]


def test_generate_rerun_refused_then_overwrite_leaves_no_stale_images(capfd, face_copy, tmp_path):
    out = tmp_path / "out"
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--id", str(face_copy), "-n", "3", "--seed", "1",
                     "--steps", "1", "--out", str(out), "--no-progress")
    assert rc == 0, err
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(first) == 3
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--id", str(face_copy), "-n", "1", "--seed", "9",
                     "--steps", "1", "--out", str(out), "--no-progress")
    assert_one_line_error(rc, err, "already holds", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == first
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--id", str(face_copy), "-n", "1", "--seed", "9",
                     "--steps", "1", "--out", str(out), "--no-progress", "--overwrite")
    assert rc == 0, err
    listed = [json.loads(line)["file"] for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert listed == ["0000.png"] and sorted(p.name for p in out.glob("*.png")) == listed


# ---------------------------------------------------------------- 2. images written as they are made
def test_generate_interrupted_keeps_the_finished_images(capfd, monkeypatch, face_copy, tmp_path):
    import torch

    class Interrupting(torch.Generator):
        """The third image's generator: Ctrl-C arrives while images 0 and 1 are done."""

        def manual_seed(self, seed):  # noqa: D102
            if seed == 1002:
                raise KeyboardInterrupt
            return super().manual_seed(seed)

    monkeypatch.setattr(torch, "Generator", Interrupting)
    out = tmp_path / "out"
    rc, _, _ = cli(capfd, "generate", "--model", "tiny", "--id", str(face_copy), "-n", "4", "--seed", "1000",
                   "--steps", "1", "--out", str(out), "--no-progress")
    assert rc == 130
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["0000.png", "0001.png"]
    assert [r["seed"] for r in records] == [1000, 1001]
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "0001.png", "metadata.jsonl"]  # no temp files
    for r in records:
        with Image.open(out / r["file"]) as im:
            im.load()


# ---------------------------------------------------------------- 10. FIFOs and other non-files
def test_fifo_as_photo_is_refused_not_waited_on(tmp_path):
    from facegen.io import load_image, read_metadata

    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)
    for fn in (load_image, read_metadata):
        box: dict = {}

        def call(fn=fn, box=box):
            try:
                fn(fifo)
            except Exception as exc:  # noqa: BLE001
                box["exc"] = exc

        t = threading.Thread(target=call, daemon=True)
        t.start()
        t.join(10)
        if t.is_alive():  # unblock the reader so the test process is not left hanging
            with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
            pytest.fail(f"{fn.__name__} waited on a FIFO")
        assert isinstance(box.get("exc"), BadImageError) and "not a regular file" in str(box["exc"])


# ---------------------------------------------------------------- 12. bounded steps, finite numbers
def test_cli_numbers_are_bounded_and_finite_before_loading(capfd, face_copy, tmp_path):
    gen = ["generate", "--model", "tiny", "--id", str(face_copy), "--out", str(tmp_path / "o")]
    for bad in ("inf", "nan", "-inf"):
        rc, _, err = cli_exit(capfd, *gen, f"--guidance={bad}")
        assert_one_line_error(rc, err, "--guidance", "finite")
    rc, _, err = cli(capfd, *gen, "--steps", "10000")
    assert_one_line_error(rc, err, "--steps", "FACEGEN_MAX_STEPS")
    rc, _, err = cli(capfd, *gen, "-n", "100000")
    assert_one_line_error(rc, err, "--num-images", "FACEGEN_MAX_IMAGES")
    rc, _, err = cli_exit(capfd, "swap", "--model", "tiny", "--source", str(face_copy), "--target",
                          str(face_copy), "--out", str(tmp_path / "s.png"), "--consent", "--strength", "nan")
    assert_one_line_error(rc, err, "--strength")
    assert not (tmp_path / "o").exists()


def cli_exit(capfd, *args):
    """Like :func:`cli` for errors argparse reports (it exits)."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capfd.readouterr()
    return exc.value.code, out, err


def test_api_refuses_non_finite_and_too_many_steps():
    from facegen.errors import InvalidArgumentError
    from facegen.pipelines.generation import IDGenerationPipeline

    pipe = IDGenerationPipeline.from_preset("tiny")
    base = dict(id_images=["x.png"], id_embeds=None, num_images=1, seed=1, seeds=None, height=None, width=None,
                adapter_scale=None, controlnet_scale=None, lora_scale=None, prompt=None, negative_prompt=None,
                id_masks=None, control_kps=None, scheduler=None, batch_size=None)
    for kw in ({"guidance_scale": float("nan"), "num_inference_steps": 2},
               {"guidance_scale": float("inf"), "num_inference_steps": 2},
               {"guidance_scale": 3.0, "num_inference_steps": 1000},
               {"guidance_scale": 3.0, "num_inference_steps": 2, "adapter_scale": float("nan")}):
        with pytest.raises(InvalidArgumentError):
            pipe.check_inputs(**{**base, **kw})


def test_metadata_is_always_valid_json(tmp_path):
    from facegen.io import read_metadata, save_image

    path = save_image(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8),
                      {"guidance_scale": float("nan"), "id_similarity": float("inf")})
    raw = read_metadata(path)["text"]["facegen"]

    def no_constants(name):
        raise ValueError(f"non-JSON constant {name}")

    meta = json.loads(raw, parse_constant=no_constants)
    assert meta["guidance_scale"] is None and meta["id_similarity"] is None


# ---------------------------------------------------------------- 11, 13. corrupt or hostile model files
@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from facegen.models.registry import get_preset
    from facegen.models.resolve import resolve_preset

    resolved = resolve_preset(get_preset("tiny"))
    return resolved.repo_dir("base")


def _corrupt(folder: Path, rel: str, how) -> None:
    p = folder / rel
    if callable(how):
        how(p)
    else:
        p.write_bytes(how)


def _json_edit(**changes):
    def edit(p: Path) -> None:
        data = json.loads(p.read_text())
        data.update(changes)
        p.write_text(json.dumps(data))
    return edit


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:2000])


CORRUPTIONS = {   # id -> (file, corruption, loader key, words expected after the file name)
    "unet-config-list": ("unet/config.json", b"[1, 2]", "unet", "JSON object"),
    "unet-config-not-json": ("unet/config.json", b"{not json", "unet", "not valid JSON"),
    "unet-weights-truncated": ("unet/diffusion_pytorch_model.safetensors", _truncate, "unet", "truncated"),
    "vae-weights-zeroed": ("vae/diffusion_pytorch_model.safetensors", b"\0" * 64, "vae", "safetensors"),
    "text-config-list": ("text_encoder/config.json", b"[1]", "text", "JSON object"),
    "text-weights-garbage": ("text_encoder/model.safetensors", b"garbage", "text", "safetensors"),
    "tokenizer-vocab-list": ("tokenizer/vocab.json", b"[1]", "tokenizer", "vocab"),
    "tokenizer-max-length-1e12": ("tokenizer/tokenizer_config.json", _json_edit(model_max_length=1e12),
                                  "tokenizer", "model_max_length"),
    "scheduler-list": ("scheduler/scheduler_config.json", b"[1]", "scheduler", "JSON object"),
    "scheduler-3e9-timesteps": ("scheduler/scheduler_config.json", _json_edit(num_train_timesteps=3e9),
                                "scheduler", "num_train_timesteps"),
    "model-index-list": ("model_index.json", b"[1]", "index", "JSON object"),
}


def _load(key: str, repo: Path):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from facegen.models import loading as L

    if key == "unet":
        return L.load_diffusers_model(UNet2DConditionModel, repo / "unet", torch.float32)
    if key == "vae":
        return L.load_diffusers_model(AutoencoderKL, repo / "vae", torch.float32)
    if key == "text":
        return L.load_text_encoder(CLIPTextModel, repo / "text_encoder", torch.float32)
    if key == "tokenizer":
        return L.load_tokenizer(repo / "tokenizer")
    if key == "scheduler":
        return L.make_scheduler("ddim", L.load_scheduler_config(repo / "scheduler"))
    return L.check_pipeline_class(repo, "StableDiffusionPipeline")


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_model_file_is_one_line_naming_it(case, tiny_sd, tmp_path):
    from facegen.errors import ModelFileError

    rel, how, key, words = CORRUPTIONS[case]
    repo = tmp_path / "sd"
    shutil.copytree(tiny_sd, repo)
    _corrupt(repo, rel, how)
    with pytest.raises(ModelFileError) as excinfo:
        _load(key, repo)
    msg = str(excinfo.value)
    assert msg.startswith(str(repo / rel)) and words in msg, msg
    assert len(msg.splitlines()) == 1 and "huggingface.co" not in msg and len(msg) < 400, msg


def test_hostile_pickle_is_one_short_line(tmp_path):
    import pickle

    from facegen.errors import ModelFileError
    from facegen.models.loading import load_pickle_state

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "ip-adapter.bin"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError) as excinfo:
        load_pickle_state(path)
    msg = str(excinfo.value)
    assert msg.startswith(str(path)) and len(msg.splitlines()) == 1 and len(msg) < 300, msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg


def test_corrupt_onnx_file_names_it_and_runtime_is_quiet(tmp_path):
    pytest.importorskip("onnxruntime")
    from facegen.errors import ModelFileError
    from facegen.onnx_runtime import create_session

    bad = tmp_path / "w600k_r50.onnx"
    bad.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ModelFileError) as excinfo:
        create_session(bad, "cpu")
    msg = str(excinfo.value)
    assert msg.startswith(str(bad)) and len(msg.splitlines()) == 1, msg

    seen = {}

    def factory(path, providers, sess_options=None):
        seen["options"] = sess_options

        class S:
            def get_providers(self):
                return providers
        return S()

    create_session(bad, "cpu", session_factory=factory)
    assert seen["options"] is not None and seen["options"].log_severity_level >= 3   # errors only


def test_corrupt_tiny_cache_is_exit_2_naming_the_file(capfd, face_copy, tmp_path, monkeypatch, tiny_sd):
    from facegen.paths import cache_dir

    tiny_cache = cache_dir() / "tiny"
    home = tmp_path / "home"
    shutil.copytree(tiny_cache, home / "cache" / "tiny")
    monkeypatch.setenv("FACEGEN_HOME", str(home))
    unet = cache_dir() / tiny_sd.relative_to(tiny_cache.parent) / "vae" / "diffusion_pytorch_model.safetensors"
    _truncate(unet)
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--id", str(face_copy), "--out", str(tmp_path / "o"),
                     "--no-progress")
    assert_one_line_error(rc, err, str(unet), "truncated")


# ---------------------------------------------------------------- 16. cheap checks first
def test_edit_argument_errors_come_before_the_model(capfd, face_copy, tmp_path):
    home = tmp_path / "empty-models"          # arc2face is not installed here: loading it would fail
    common = ["--model", "arc2face", "--accept-license", "--models-dir", str(home), "--consent"]
    rc, _, err = cli(capfd, "swap", *common, "--source", str(tmp_path / "missing.jpg"), "--target",
                     str(face_copy), "--out", str(tmp_path / "a.png"))
    assert_one_line_error(rc, err, "missing.jpg")
    rc, _, err = cli(capfd, "restore", *common, "--image", str(face_copy), "--reference",
                     str(tmp_path / "nope.png"), "--out", str(tmp_path / "b.png"))
    assert_one_line_error(rc, err, "nope.png")
    rc, _, err = cli_exit(capfd, "swap", *common, "--source", str(face_copy), "--target", str(face_copy),
                          "--out", str(tmp_path / "c.png"), "--strength", "1.5")
    assert_one_line_error(rc, err, "--strength")


@pytest.mark.skipif(os.access("/sys", os.W_OK) and not os.path.ismount("/sys"), reason="needs a read-only /sys")
def test_unwritable_out_is_refused_before_generating(capfd, face_copy, tmp_path):
    rc, _, err = cli(capfd, "generate", "--model", "tiny", "--id", str(face_copy), "--out", "/sys/facegen-out",
                     "--no-progress")
    assert_one_line_error(rc, err, "--out /sys/facegen-out", "cannot write")
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = cli(capfd, "restore", "--model", "tiny", "--image", str(face_copy), "--out",
                     str(afile / "x.png"), "--consent")
    assert_one_line_error(rc, err, "--out", "cannot write")


def test_says_which_photo_has_no_face(capfd, face_copy, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    rc, _, err = cli(capfd, "swap", "--model", "tiny", "--source", str(face_copy), "--target", str(blank),
                     "--out", str(tmp_path / "a.png"), "--consent", "--no-progress")
    assert_one_line_error(rc, err, "target", "wall.png")
    rc, _, err = cli(capfd, "swap", "--model", "tiny", "--source", str(blank), "--target", str(face_copy),
                     "--out", str(tmp_path / "b.png"), "--consent", "--no-progress")
    assert_one_line_error(rc, err, "source", "wall.png")
    rc, _, err = cli(capfd, "restore", "--model", "tiny", "--image", str(face_copy), "--reference", str(blank),
                     "--out", str(tmp_path / "c.png"), "--consent", "--no-progress")
    assert_one_line_error(rc, err, "reference", "wall.png")


# ---------------------------------------------------------------- 18. noise
def test_an_edit_prints_only_its_result(capfd, face_copy, tmp_path):
    out = tmp_path / "r.png"
    rc, stdout, err = cli(capfd, "restore", "--model", "tiny", "--image", str(face_copy), "--out", str(out),
                          "--consent", "--no-progress", "--steps", "2", "--seed", "3")
    assert rc == 0, err
    assert "float32" not in err and err.strip() == "", err
    assert stdout.startswith(str(out))


def _jpeg_with_broken_exif(path: Path) -> None:
    buf = Path(path)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(buf, quality=90)
    data = buf.read_bytes()
    # a little-endian TIFF header whose IFD claims 2 entries pointing far past the segment
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x8769, 4, 1, 0x7FFF0000)
    tiff += struct.pack("<I", 0) + b"\x00" * 2
    exif = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    buf.write_bytes(data[:2] + app1 + data[2:])


def test_damaged_exif_is_one_short_log_line(tmp_path, caplog, recwarn):
    from facegen.io import load_image

    path = tmp_path / "camera.jpg"
    _jpeg_with_broken_exif(path)
    with caplog.at_level(logging.WARNING, logger="facegen"):
        rgb = load_image(path)
    assert rgb.shape == (64, 64, 3)
    assert not [w for w in recwarn if "EXIF" in str(w.message) or "exif" in str(w.message).lower()], \
        [str(w.message) for w in recwarn]
    msgs = [r.getMessage() for r in caplog.records if "EXIF" in r.getMessage()]
    assert len(msgs) <= 1 and all(str(path) in m and ".py" not in m for m in msgs), msgs


def test_doctor_says_a_preset_waits_for_its_encoder(tmp_path):
    from facegen.cli.doctor import doctor_report
    from facegen.models.registry import PRESETS

    preset = PRESETS["arc2face"]
    for comp in preset.components:              # every weight file of the preset, but no encoder files
        for f in comp.files:
            p = tmp_path / comp.repo / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    report = doctor_report(ModelAccess(str(tmp_path)))
    assert report["encoders"][preset.encoder]["ready"] is False
    st = report["presets"]["arc2face"]
    assert st["ready"] is False and preset.encoder in st["reason"], st
