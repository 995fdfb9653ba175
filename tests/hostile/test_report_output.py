"""Item 8 of issue 29: ``dataset-report --out`` never replaces files it was not told to, and never
writes into the dataset it measures (the next report would read the report folder as an identity,
or drop the identity that holds it)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, cli


@pytest.fixture()
def imagefolder(tmp_path):
    root = tmp_path / "ds"
    for who in ("ann", "bob"):
        (root / who).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(len(who)).integers(0, 255, (64, 64, 3), np.uint8)).save(
            root / who / "1.png")
    return root


def test_out_folder_with_files_is_not_replaced_without_overwrite(capfd, imagefolder, tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    rc, _, err = cli(capfd, "dataset-report", imagefolder, "--out", out, "--no-progress", "--no-plots")
    assert_one_line_error(rc, err, "--overwrite")
    assert (out / "report.md").read_text() == "my own notes\n"


@pytest.mark.parametrize("inside", ["ann/rep", "rep", "."])
def test_out_inside_the_dataset_is_refused(capfd, imagefolder, inside):
    rc, _, err = cli(capfd, "dataset-report", imagefolder, "--out", imagefolder / inside, "--no-progress",
                     "--no-plots")
    assert_one_line_error(rc, err, "inside the dataset")
    assert not (imagefolder / "ann" / "rep").exists()


def test_out_that_is_a_file_is_refused(capfd, imagefolder, tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("keep")
    rc, _, err = cli(capfd, "dataset-report", imagefolder, "--out", f, "--overwrite", "--no-progress", "--no-plots")
    assert rc == 2 and f.read_text() == "keep", err
