"""The CLI contract: JSON output, exit codes, one-line errors (run in a subprocess)."""

import json
import subprocess
import sys


from conftest import REPO


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "facegen", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)


def assert_user_error(proc, pattern):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert lines and pattern in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_embed_json_lines(tom_hanks_path, group_photo_path):
    proc = run("embed", str(tom_hanks_path), str(group_photo_path), "--faces", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(tom_hanks_path), str(group_photo_path)]
    assert len(records[0]["faces"]) == 1 and len(records[1]["faces"]) == 6
    face = records[0]["faces"][0]
    assert set(face) >= {"bbox", "kps", "score", "embedding", "encoder"}
    assert len(face["embedding"]) == 128 and face["encoder"] == "dlib-resnet-v1"
    assert len(face["kps"]) == 5 and len(face["bbox"]) == 4


def test_verify_same_and_different(shared_faces):
    same = run("verify", str(shared_faces / "obama_1.jpg"), str(shared_faces / "obama_2.jpg"), "--json")
    assert same.returncode == 0, same.stderr
    out = json.loads(same.stdout)
    assert out["same"] is True and out["encoder"] == "dlib-resnet-v1"
    assert out["similarity"] >= out["threshold"]
    diff = run("verify", str(shared_faces / "obama_1.jpg"), str(shared_faces / "biden_1.jpg"), "--json")
    out = json.loads(diff.stdout)
    assert out["same"] is False and out["similarity"] < out["threshold"]


def test_verify_flipped_copy_is_same(tom_hanks_path, tmp_path):
    from PIL import Image, ImageOps
    flipped = tmp_path / "flipped.jpg"
    ImageOps.mirror(Image.open(tom_hanks_path).convert("RGB")).save(flipped, quality=90)
    proc = run("verify", str(tom_hanks_path), str(flipped), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["same"] is True


def test_bad_inputs_one_line_exit_2(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert_user_error(run("embed", str(empty)), "empty.png")
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    assert_user_error(run("verify", str(text), str(text)), "notes.jpg")
    assert_user_error(run("embed", str(tmp_path / "missing.jpg")), "missing.jpg")
    assert_user_error(run("embed", str(tmp_path)), str(tmp_path))
    from PIL import Image
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (120, 120, 120)).save(blank)
    assert_user_error(run("embed", str(blank)), "no face")
    assert_user_error(run("embed", str(blank), "--faces", "biggest"), "unknown face policy")
    assert_user_error(run("embed", str(blank), "--encoder", "nope"), "unknown encoder 'nope'")   # a name or a trained run's folder


def test_embed_keeps_going_after_a_bad_image(tom_hanks_path, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    proc = run("embed", str(bad), str(tom_hanks_path), "--json")
    assert proc.returncode == 2
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert "error" in lines[0] and lines[1]["faces"], proc.stdout


def test_onnx_encoder_without_weights_or_licence(tom_hanks_path, tmp_path):
    import os
    env = {k: v for k, v in os.environ.items() if k != "FACEGEN_ACCEPT_NONCOMMERCIAL"}
    env["FACEGEN_HOME"] = str(tmp_path)
    proc = run("embed", str(tom_hanks_path), "--encoder", "antelopev2-glintr100", env=env)
    assert_user_error(proc, "non-commercial")
    proc = run("embed", str(tom_hanks_path), "--encoder", "antelopev2-glintr100", "--accept-license", env=env)
    assert_user_error(proc, "antelopev2")
    assert str(tmp_path) in proc.stderr


def test_doctor_reports_encoders_and_device():
    proc = run("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["encoders"]["dlib-resnet-v1"]["ready"] is True
    assert rep["encoders"]["arc2face-arcface"]["ready"] in (True, False)
    assert "cuda" in rep["device"] and rep["packages"]["torch"]
