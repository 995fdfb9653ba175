"""Detection, landmarks, selection on real photos (dlib, offline)."""

import io

import numpy as np
import pytest
from PIL import Image

from facegen.errors import FaceTooSmallError, InvalidArgumentError, NoFaceError
from facegen.faces import FacePolicy, detect_faces, select_faces, sort_faces
from facegen.faces.dlib_backend import kps5_from_68
from facegen.faces.types import Face


def _face(x1, y1, x2, y2):
    return Face(np.array([x1, y1, x2, y2], np.float32), np.zeros((5, 2), np.float32), 1.0)


def test_tom_hanks_one_face_with_plausible_keypoints(tom_hanks_path, rgb_of):
    rgb = rgb_of(tom_hanks_path)
    faces = detect_faces(rgb)
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks68.shape == (68, 2)
    le, re_, nose, lm, rm = f.kps
    assert le[0] < nose[0] < re_[0] and lm[0] < rm[0]
    assert le[1] < nose[1] < lm[1]
    # an aligned 112 crop: the eyes sit near the ArcFace template's
    assert abs(le[0] - 38.3) < 10 and abs(re_[0] - 73.5) < 10


def test_group_photo_all_faces_in_reading_order(group_photo_path, rgb_of):
    faces = detect_faces(rgb_of(group_photo_path))
    assert len(faces) == 6
    centres = [(f.bbox[0] + f.bbox[2]) / 2 for f in faces]
    assert centres == sorted(centres)


@pytest.mark.parametrize("aug", ["flip", "crop", "jpeg", "upscale"])
def test_detection_survives_augmentation(tom_hanks_path, rgb_of, aug):
    rgb = rgb_of(tom_hanks_path)
    if aug == "flip":
        rgb = rgb[:, ::-1].copy()
    elif aug == "crop":
        rgb = rgb[6:106, 4:108].copy()
    elif aug == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=40)
        rgb = np.asarray(Image.open(buf).convert("RGB"))
    else:
        rgb = np.asarray(Image.fromarray(rgb).resize((448, 448)))
    assert len(detect_faces(rgb)) == 1


def test_no_face_and_too_small():
    blank = np.full((200, 200, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="no face found"):
        detect_faces(blank)


def test_too_small_face_is_a_clear_error(tom_hanks_path, rgb_of):
    rgb = rgb_of(tom_hanks_path)
    with pytest.raises(FaceTooSmallError, match="too small"):
        detect_faces(rgb, min_face_size=500)


def test_policies():
    faces = sort_faces([_face(300, 0, 400, 100), _face(0, 0, 200, 200), _face(150, 0, 210, 60)])
    assert [f.bbox[0] for f in faces] == [0, 150, 300]
    assert select_faces(faces, "largest")[0].bbox[0] == 0
    assert len(select_faces(faces, "all")) == 3
    assert select_faces(faces, 2)[0].bbox[0] == 300
    assert select_faces(faces, "1")[0].bbox[0] == 150
    assert select_faces(faces, "most-similar", similarity=lambda f: -abs(f.bbox[0] - 160))[0].bbox[0] == 150
    with pytest.raises(InvalidArgumentError, match="out of range"):
        select_faces(faces, 3)
    with pytest.raises(InvalidArgumentError, match="unknown face policy"):
        FacePolicy.parse("biggest")
    with pytest.raises(InvalidArgumentError, match="needs a reference"):
        select_faces(faces, "most-similar")


def test_kps5_from_68_geometry():
    pts = np.zeros((68, 2), np.float32)
    pts[36:42] = [10, 20]
    pts[42:48] = [30, 20]
    pts[30] = [20, 30]
    pts[48] = [12, 40]
    pts[54] = [28, 40]
    assert kps5_from_68(pts).tolist() == [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]


def test_shared_faces_detect_one_face_each(shared_faces, rgb_of):
    for path in sorted(shared_faces.iterdir()):
        if path.suffix.lower() not in (".jpg", ".png"):
            continue
        faces = detect_faces(rgb_of(path))
        assert len(faces) == (2 if "group" in path.name else 1), path.name
