"""Item 15 of issue 29: inputs that used to give a wrong result without an error (the vectors that
are no identity are in test_sidecars_and_arrays.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from facegen.errors import InvalidArgumentError

from conftest import assert_one_line_error, cli


def _saved_identity(tmp_path):
    import json

    p = tmp_path / "me.npy"
    np.save(p, np.random.default_rng(0).normal(size=(1, 128)).astype(np.float32))
    (tmp_path / "me.json").write_text(json.dumps({"encoder": "dlib-resnet-v1"}))
    return p


def test_reference_layout_with_id_embeds_is_refused_not_silently_portrait():
    from facegen.pipelines.request import check_face_layout

    with pytest.raises(InvalidArgumentError, match="portrait"):
        check_face_layout("reference", has_photos=False)
    check_face_layout("portrait", has_photos=False)
    check_face_layout("reference", has_photos=True)


def test_cli_reference_layout_with_id_embeds_is_one_line(capfd, tmp_path):
    p = _saved_identity(tmp_path)
    rc, _, err = cli(capfd, "generate", "--model", "tiny-instantid", "--id-embeds", p, "--face-layout", "reference",
                     "--out", tmp_path / "o", "--steps", "1")
    assert_one_line_error(rc, err, "reference")


@pytest.mark.parametrize("layout", ["0,0,1e-9,1e-9;0.5,0.5,1,1", "0.1,0.1,0.12,0.9;0.5,0.1,0.9,0.9"])
def test_a_sliver_face_box_is_refused(layout):
    from facegen.pipelines.people import parse_layout

    with pytest.raises(InvalidArgumentError, match="too small"):
        parse_layout(layout, 2)


def test_a_photo_path_with_a_comma_can_be_given_to_people(tmp_path, tom_hanks_path):
    from facegen.cli.people import person_photos

    odd = tmp_path / "hanks, tom.jpg"
    shutil.copyfile(tom_hanks_path, odd)
    assert person_photos(str(odd)) == [str(odd)]
    assert person_photos(f"{tom_hanks_path},{tom_hanks_path}") == [str(tom_hanks_path)] * 2
