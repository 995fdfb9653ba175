"""Item 9 of issue 29: every JSON facegen reads from a file someone else wrote (PNG text chunks,
MP4 tags, dataset records and shard listings) is checked for shape and depth: a hostile value is
ignored or one line, never an internal failure or a recursion crash."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from facegen.errors import FacegenError

from conftest import assert_one_line_error, cli

HOSTILE = ['{"provenance": {"watermark": "x"}}', '{"provenance": "x"}', '{"provenance": {"content_id": [1]}}',
           "[1,2]", '"text"', "[" * 200_000 + "]" * 200_000, '{"a": ' * 5000 + "1" + "}" * 5000,
           '{"provenance": NaN}', "{not json"]


def _png(path, payload: str):
    info = PngImagePlugin.PngInfo()
    info.add_text("facegen", payload)
    info.add_text("ai_generated", "true")
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("payload", HOSTILE)
def test_png_facegen_text_of_any_shape_is_inspected_without_a_crash(capfd, tmp_path, payload):
    p = _png(tmp_path / "x.png", payload)
    rc, out, err = cli(capfd, "inspect", p)
    assert rc == 0 and "internal failure" not in err and "Traceback" not in err, err
    from facegen.io import read_metadata

    assert read_metadata(p)["metadata"] == {}        # the wrong shape is ignored, not half-read


def test_png_facegen_text_of_the_right_shape_is_read(tmp_path):
    from facegen.io import read_metadata

    p = _png(tmp_path / "x.png", json.dumps({"seed": 3, "provenance": {"content_id": "abc", "watermark": None}}))
    assert read_metadata(p)["metadata"]["provenance"]["content_id"] == "abc"


@pytest.mark.parametrize("payload", ["[1,2]", '{"provenance": {"watermark": "x"}}', "[" * 100_000])
def test_mp4_facegen_tag_of_any_shape_is_inspected_without_a_crash(capfd, tmp_path, payload):
    av = pytest.importorskip("av")
    p = tmp_path / "x.mp4"
    with av.open(str(p), "w", format="mp4", options={"movflags": "+use_metadata_tags"}) as c:
        c.metadata["facegen"] = payload
        c.metadata["ai_generated"] = "true"
        vs = c.add_stream("libx264", rate=5)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                c.mux(packet)
        for packet in vs.encode():
            c.mux(packet)
    rc, out, err = cli(capfd, "inspect", p)
    assert rc == 0 and "internal failure" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("line", ["{not json", "[1, 2]", '{"key": 5, "identity": 1}', '{"key": "a"}',
                                  "[" * 200_000, '{"key": "a", "identity": 1, "file": ["x"]}'])
def test_hand_edited_dataset_record_is_one_line(tmp_path, line):
    from facegen.dataset import writers as W

    p = tmp_path / "part.jsonl"
    p.write_text('{"key": "000000_00", "identity": 0, "file": "images/0/0.png"}\n' + line + "\n")
    with pytest.raises(FacegenError) as exc:
        W.parse_jsonl(p.read_bytes(), name=str(p))
    assert "line 2" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("listing", ['{"files": [1, 2]}', "[" * 200_000 + "]" * 200_000,
                                     '{"files": {"a": {"size": "big", "sha256": "x"}}}', "{}"])
def test_hand_edited_shard_listing_is_a_damaged_shard(tmp_path, listing):
    from facegen.dataset import writers as W

    marker = W.files_path(tmp_path, 0)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(listing)
    assert "unreadable" in W.shard_problem(tmp_path, 0, "imagefolder")


def test_dataset_report_on_a_hand_edited_part_line_is_one_line(capfd, tmp_path):
    from facegen.dataset import writers as W

    rc, _, err = cli(capfd, "dataset", "--model", "tiny", "--num-ids", "2", "--images-per-id", "1",
                     "--out", tmp_path / "ds", "--format", "imagefolder")
    assert rc == 0, err
    part = W.part_path(tmp_path / "ds", 0)
    part.write_text(part.read_text() + "{not json\n")
    rc, _, err = cli(capfd, "dataset-report", tmp_path / "ds", "--out", tmp_path / "rep")
    assert_one_line_error(rc, err, "line")


@pytest.mark.parametrize("line", ["[" * 200_000, "[1, 2]", '{"file": ["x"]}', "\xff"])
def test_a_hostile_metadata_jsonl_in_the_out_folder_is_no_crash(tmp_path, line):
    from facegen.cli.checks import previous_run

    (tmp_path / "metadata.jsonl").write_text('{"file": "0000.png"}\n' + line + "\n", encoding="utf-8",
                                              errors="surrogateescape")
    assert previous_run(tmp_path) == ["0000.png"]


@pytest.mark.parametrize("stats", ['{"rejected": [1]}', '{"dropped": "x"}', "[" * 200_000])
def test_hand_edited_shard_statistics_are_one_line(capfd, tmp_path, stats):
    from facegen.dataset import writers as W
    from facegen.dataset.stats import dataset_stats

    rc, _, err = cli(capfd, "dataset", "--model", "tiny", "--num-ids", "2", "--images-per-id", "1",
                     "--out", tmp_path / "ds", "--format", "imagefolder", "--no-progress")
    assert rc == 0, err
    root = tmp_path / "ds"
    W.stats_path(root, 0).write_text(stats)
    listing = json.loads(W.files_path(root, 0).read_text())        # the edit made consistently
    rel = W.stats_path(root, 0).relative_to(root).as_posix()
    listing["files"][rel] = {"size": len(stats), "sha256": hashlib.sha256(stats.encode()).hexdigest()}
    W.files_path(root, 0).write_text(json.dumps(listing))
    with pytest.raises(FacegenError) as exc:
        dataset_stats(tmp_path / "ds")
    assert "shard statistics" in str(exc.value) and "\n" not in str(exc.value)
