"""``facegen embed --save FILE.npy`` then ``facegen generate --id-embeds FILE.npy``: the saved
identity gives the pixels the photo gives (same encoder, same seed); a file from another
encoder, or without its sidecar, is one ``error:`` line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facegen.cli import main
from facegen.errors import InvalidArgumentError
from facegen.id.embedding import IDEmbedding
from facegen.id.saved import load_id_embeds, save_id_embeds

GEN = ["generate", "--model", "tiny", "--seed", "5", "--steps", "2", "-n", "2", "--no-progress"]


def _pixels(folder: Path) -> list[np.ndarray]:
    from facegen.io import load_image
    return [load_image(p) for p in sorted(folder.glob("*.png"))]


def _same(a: Path, b: Path) -> bool:
    pa, pb = _pixels(a), _pixels(b)
    return len(pa) == len(pb) == 2 and all(np.array_equal(x, y) for x, y in zip(pa, pb))


def _one_error(capfd) -> str:
    lines = [ln for ln in capfd.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.fixture(scope="module")
def saved(tom_hanks_path, group_photo_path, tmp_path_factory) -> dict[str, Path]:
    """One person in two photos (the insightface wheel's Tom Hanks and its mirror image), saved
    one file each and both in one file, and another person (the group photo's first face)."""
    from PIL import Image, ImageOps

    d = tmp_path_factory.mktemp("embeds")
    mirrored = d / "mirrored.png"
    ImageOps.mirror(Image.open(tom_hanks_path).convert("RGB")).save(mirrored)
    o1, o2 = str(tom_hanks_path), str(mirrored)
    for args in ([o1, "--save", str(d / "o1.npy")], [o2, "--save", str(d / "o2.npy")],
                 [o1, o2, "--save", str(d / "o12.npy")], [str(group_photo_path), "--faces", "0", "--save",
                                                          str(d / "b1.npy")]):
        assert main(["embed", *args]) == 0
    return {"o1": d / "o1.npy", "o2": d / "o2.npy", "o12": d / "o12.npy", "b1": d / "b1.npy",
            "o1_photo": Path(o1), "o2_photo": Path(o2)}


def test_embed_save_writes_the_vector_and_names_its_encoder(saved):
    x = np.load(saved["o12"])
    meta = json.loads(saved["o12"].with_suffix(".json").read_text())
    assert x.shape == (2, 128) and x.dtype == np.float32
    assert meta["encoder"] == "dlib-resnet-v1" and meta["count"] == 2 and meta["dim"] == 128
    assert [s["image"] for s in meta["sources"]] == [str(saved["o1_photo"]), str(saved["o2_photo"])]
    assert np.load(saved["o1"]).shape == (1, 128)
    assert np.array_equal(np.load(saved["o1"])[0], x[0])        # the same photo, the same vector
    embs = load_id_embeds(saved["o12"])
    assert [e.encoder for e in embs] == ["dlib-resnet-v1"] * 2 and np.array_equal(embs[1].vector, x[1])
    from facegen.dataset.report_analysis import load_reference     # the same file is a leakage reference
    ref = load_reference(saved["o12"])
    assert ref.encoder == "dlib-resnet-v1" and ref.people == ["o12"] and np.array_equal(ref.vectors, x)


def test_generate_from_saved_embeddings_gives_the_photos_pixels(saved, tmp_path, capfd):
    for name, ident in (("photo", ["--id", str(saved["o1_photo"])]), ("embeds", ["--id-embeds", str(saved["o1"])])):
        assert main([*GEN, *ident, "--out", str(tmp_path / name)]) == 0, capfd.readouterr().err
    assert _same(tmp_path / "photo", tmp_path / "embeds")
    text = (tmp_path / "embeds" / "metadata.jsonl").read_text()
    rec = json.loads(text.splitlines()[0])
    assert rec["references"] == [saved["o1"].name] and rec["seed"] == 5
    assert str(saved["o1"].parent) not in text and str(tmp_path) not in text    # no paths written, names only


def test_several_saved_embeddings_average_like_several_photos(saved):
    from facegen.pipelines.generation import IDGenerationPipeline

    pipe = IDGenerationPipeline.from_preset("tiny")
    kw = {"seed": 5, "num_inference_steps": 2, "progress": False, "measure_similarity": False}
    photos = pipe(id_images=[saved["o1_photo"], saved["o2_photo"]], **kw).images[0]
    files = pipe(id_embeds=load_id_embeds(saved["o1"]) + load_id_embeds(saved["o2"]), **kw).images[0]
    rows = pipe(id_embeds=load_id_embeds(saved["o12"]), **kw).images[0]
    one = pipe(id_embeds=load_id_embeds(saved["o1"]), **kw).images[0]
    other = pipe(id_embeds=load_id_embeds(saved["b1"]), **kw).images[0]
    px = [np.asarray(im) for im in (photos, files, rows, one, other)]
    assert np.array_equal(px[0], px[1]) and np.array_equal(px[1], px[2])
    assert not np.array_equal(px[2], px[3]) and not np.array_equal(px[3], px[4])   # the identity is really used


def test_an_embedding_of_another_encoder_is_refused(saved, tmp_path, capfd):
    # a dlib file for a preset trained on Arc2Face's ArcFace: refused before any weights are looked for
    assert main(["generate", "--model", "arc2face", "--id-embeds", str(saved["o1"]), "--out",
                 str(tmp_path / "a")]) == 2
    assert "trained on 'arc2face-arcface' embeddings, got one from 'dlib-resnet-v1'" in _one_error(capfd)
    # an ArcFace (buffalo_l) file for the tiny preset's dlib contract
    other = IDEmbedding(np.random.default_rng(0).normal(size=512).astype(np.float32), "buffalo_l-w600k-r50")
    save_id_embeds(tmp_path / "arcface.npy", [other])
    assert main([*GEN, "--id-embeds", str(saved["o1"]), str(tmp_path / "arcface.npy"), "--out",
                 str(tmp_path / "b")]) == 2
    assert "got one from 'buffalo_l-w600k-r50'" in _one_error(capfd)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_saved_files_are_one_line_each(saved, tmp_path, capfd):
    bare = tmp_path / "bare.npy"
    np.save(bare, np.load(saved["o1"]))                          # no sidecar: the encoder is unknown
    wrong_dim = tmp_path / "short.npy"
    np.save(wrong_dim, np.zeros(64, np.float32))
    wrong_dim.with_suffix(".json").write_text('{"encoder": "dlib-resnet-v1"}')
    typo = tmp_path / "typo.npy"
    np.save(typo, np.load(saved["o1"]))
    typo.with_suffix(".json").write_text('{"encoder": "dlib-resnet"}')
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    for path, message in ((bare, "has no bare.json beside it naming its encoder"),
                          (wrong_dim, "64-D vectors, but encoder 'dlib-resnet-v1' makes 128-D ones"),
                          (typo, "unknown encoder 'dlib-resnet'; choose one of"),
                          (junk, "is not a plain .npy array"),
                          (tmp_path / "missing.npy", "no such file"),
                          (saved["o1_photo"], "give a saved embedding (.npy with its .json)")):
        assert main([*GEN, "--id-embeds", str(path), "--out", str(tmp_path / "out")]) == 2
        line = _one_error(capfd)
        assert line.startswith(f"error: --id-embeds {path.with_suffix('')}") and message in line, line
    with pytest.raises(InvalidArgumentError, match="NaN"):
        np.save(bare, np.full(128, np.nan, np.float32))
        bare.with_suffix(".json").write_text('{"encoder": "dlib-resnet-v1"}')
        load_id_embeds(bare)


def test_embed_save_refuses_what_it_cannot_keep(saved, group_photo_path, tmp_path, capfd):
    out = tmp_path / "g.npy"
    assert main(["embed", str(group_photo_path), "--faces", "all", "--save", str(out)]) == 2
    assert "one person's embeddings" in _one_error(capfd)
    assert main(["embed", str(saved["o1_photo"]), "--save", str(saved["o1"])]) == 2      # exists
    assert "--overwrite" in _one_error(capfd)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["embed", str(saved["o1_photo"]), str(bad), "--save", str(out)]) == 2
    err = capfd.readouterr().err
    assert "not written: 1 image(s) failed" in err and not out.exists() and not out.with_suffix(".json").exists()
