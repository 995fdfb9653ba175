"""Shared edit machinery: crop, masks, colour matching and paste-back (facegen.edit)."""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegen.edit import (FaceCrop, box_mask, crop_face, crop_mask, crop_template_points, ellipse_mask, face_mask,
                          hull_points, landmark_hull_mask, masked_lab_stats, match_color, paste_back, soften_mask)
from facegen.errors import BadImageError, InvalidArgumentError
from facegen.faces.align import inverse_warp, transform_points
from facegen.faces.types import Face

FACES_DIR = Path(__file__).resolve().parents[3] / "shared" / "faces"


def _photo(name: str) -> np.ndarray:
    path = FACES_DIR / name
    if not path.exists():
        pytest.skip(f"test photo {path} not available")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


@functools.lru_cache(maxsize=1)
def _dlib_models():
    dlib = pytest.importorskip("dlib")
    spec = importlib.util.find_spec("face_recognition_models")  # located, never imported
    if spec is None or spec.origin is None:
        pytest.skip("face_recognition_models not installed")
    dat = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dat))


def _face_from_68(lm: np.ndarray, bbox: np.ndarray) -> Face:
    kps = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)
    return Face(bbox=bbox.astype(np.float32), kps=kps, score=1.0, landmarks68=lm.astype(np.float32))


@functools.lru_cache(maxsize=None)
def _faces_of(name: str) -> tuple[Face, ...]:
    """Faces with 68 landmarks, found with dlib directly, largest first."""
    _, detector, predictor = _dlib_models()
    rgb = _photo(name)
    faces = []
    for r in detector(rgb, 1):
        shape = predictor(rgb, r)
        lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        faces.append(_face_from_68(lm, np.array([r.left(), r.top(), r.right(), r.bottom()])))
    if not faces:
        pytest.skip(f"dlib found no face in {name}")
    return tuple(sorted(faces, key=lambda f: -f.area))


def _map_face(face: Face, fn) -> Face:
    """A face whose points went through the coordinate map ``fn`` ((N, 2) -> (N, 2))."""
    lm = fn(face.landmarks68.astype(np.float64))
    x = fn(np.array([[face.bbox[0], face.bbox[1]], [face.bbox[2], face.bbox[3]]], dtype=np.float64))
    return _face_from_68(lm, np.array([x[:, 0].min(), x[:, 1].min(), x[:, 0].max(), x[:, 1].max()]))


def _support(mask_crop: np.ndarray, M: np.ndarray, hw: tuple[int, int], grow: int = 2) -> np.ndarray:
    """Where the crop mask lands in the image (computed independently of paste_back), grown a little."""
    warped = inverse_warp((mask_crop > 0).astype(np.float32), M, hw)
    return cv2.dilate((warped > 0).astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


def _size_for(image: np.ndarray, face: Face) -> int:
    """Smallest crop side that does not shrink the face (scale ≥ 0.85)."""
    for size in (512, 768, 1024):
        if crop_face(image, face, size).scale >= 0.85:
            return size
    return 1024


# ----------------------------------------------------------------------------------------- crop

@pytest.mark.parametrize("template,size,margin", [("ffhq", 512, 0.0), ("ffhq", 256, 0.3), ("arcface", 112, 0.0),
                                                  ("arcface", 224, 0.25)])
def test_crop_puts_keypoints_on_the_template(template, size, margin):
    image = _photo("obama_1.jpg")
    face = _faces_of("obama_1.jpg")[0]
    fc = crop_face(image, face, size, template, margin)
    assert isinstance(fc, FaceCrop)
    assert fc.crop.shape == (size, size, 3) and fc.crop.dtype == np.uint8
    assert fc.M.shape == (2, 3) and fc.image_hw == image.shape[:2]
    # a real face fits the template up to its own shape (least squares)
    residual = np.linalg.norm(transform_points(face.kps, fc.M) - crop_template_points(size, template, margin), axis=1)
    assert residual.mean() < 0.05 * size
    # keypoints that *are* a rotated, scaled, shifted template land on it exactly
    t = np.deg2rad(20)
    rot = 0.4 * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    kps = (crop_template_points(512, template) @ rot.T + [300, 150]).astype(np.float32)
    synthetic = Face(bbox=np.array([250, 100, 500, 400], np.float32), kps=kps, score=1.0)
    fc_s = crop_face(image, synthetic, size, template, margin)
    ref = crop_template_points(size, template, margin)
    assert np.abs(transform_points(kps, fc_s.M) - ref).max() < 1e-2
    assert abs(fc_s.scale - np.sqrt(abs(np.linalg.det(fc_s.M[:, :2])))) < 1e-9
    # a wider margin shows the face smaller
    assert crop_face(image, face, size, template, margin + 0.2).scale < fc.scale


def test_crop_of_a_large_face_is_area_reduced_not_aliased():
    image = _photo("biden_2.jpg")
    face = _faces_of("biden_2.jpg")[0]
    big = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    big_face = _map_face(face, lambda p: (p + 0.5) * 3 - 0.5)
    small, large = crop_face(image, face, 256), crop_face(big, big_face, 256)
    assert large.scale < 0.3
    # the same 256 crop whether the face was 450 or 1350 px wide (area reduction, not point sampling)
    diff = np.abs(small.crop.astype(int) - large.crop.astype(int))
    assert diff.mean() < 2.0


def test_crop_rejects_bad_input():
    face = Face(bbox=np.array([10, 10, 50, 50], np.float32), kps=np.full((5, 2), 30, np.float32), score=1.0)
    with pytest.raises(BadImageError):
        crop_face(np.zeros((64, 64), np.uint8), face)
    with pytest.raises(InvalidArgumentError):
        crop_face(np.zeros((64, 64, 3), np.uint8), face, 100, "arcface")  # not a multiple of 112/128


# ---------------------------------------------------------------------------------------- masks

def _ray_profiles(mask: np.ndarray, centre: np.ndarray, n_rays: int = 24) -> list[np.ndarray]:
    h, w = mask.shape
    out = []
    for t in np.linspace(0, 2 * np.pi, n_rays, endpoint=False):
        r = np.arange(0, max(h, w), 0.5)
        xs, ys = centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)
        ok = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
        # bilinear samples so the profile is that of the continuous mask
        vals = cv2.remap(mask, xs[ok].astype(np.float32).reshape(1, -1), ys[ok].astype(np.float32).reshape(1, -1),
                         cv2.INTER_LINEAR).ravel()
        out.append(vals)
    return out


@pytest.mark.parametrize("kind", ["hull", "ellipse"])
def test_masks_are_soft_in_unit_range_and_fall_off_monotonically(kind):
    face = _faces_of("obama_1.jpg")[0]
    fc = crop_face(_photo("obama_1.jpg"), face, 512, margin=0.25)
    mask = face_mask(fc, face, kind, dilate_px=8, feather_px=24)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask.min() == 0.0 and mask.max() == 1.0
    soft = (mask > 0) & (mask < 1)
    assert soft.sum() > 0.05 * (mask > 0).sum()  # a real feathered band, not a hard edge
    nose = transform_points(face.kps, fc.M)[2]
    assert mask[int(nose[1]), int(nose[0])] == 1.0
    assert mask[0, 0] == 0.0 and mask[-1, -1] == 0.0
    for profile in _ray_profiles(mask, nose):
        assert profile[0] == 1.0 and profile[-1] == 0.0
        assert np.all(np.diff(profile) <= 1e-5), "alpha must not rise again going outward"


def test_feather_and_dilate_widths():
    hard = np.zeros((200, 200), np.uint8)
    hard[50:150, 50:150] = 255
    for feather in (0, 6, 20):
        m = soften_mask(hard, 0, feather)
        row = m[100]
        # alpha is exactly 0 beyond `feather` outside the edge and 1 beyond `feather` inside
        assert np.all(row[: 50 - feather - 1] == 0) and np.all(row[150 + feather + 1:] == 0)
        assert np.all(row[50 + feather + 1: 150 - feather - 1] == 1)
    assert soften_mask(hard, 10, 0).sum() > soften_mask(hard, 0, 0).sum() > soften_mask(hard, -10, 0).sum()
    assert soften_mask(np.zeros((20, 20), bool), 3, 3).max() == 0.0
    with pytest.raises(InvalidArgumentError):
        soften_mask(np.zeros((4, 4, 3)), 1, 1)


def test_hull_mask_covers_the_forehead():
    image = _photo("obama_1.jpg")
    face = _faces_of("obama_1.jpg")[0]
    lm = face.landmarks68
    brow_mid = lm[17:27].mean(0)
    height = np.linalg.norm(brow_mid - lm[33])
    above = (brow_mid + np.array([0.0, -0.35 * height])).astype(int)  # the face is about upright
    with_fh = landmark_hull_mask(face, image.shape[:2])
    without = landmark_hull_mask(face, image.shape[:2], forehead=0.0)
    assert with_fh[above[1], above[0]] > 0.5 and without[above[1], above[0]] == 0.0
    assert hull_points(lm).shape == (78, 2)
    # in crop coordinates via M: the same shape, just moved
    fc = crop_face(image, face, 512)
    in_crop = landmark_hull_mask(face, (512, 512), fc.M)
    back = inverse_warp(in_crop, fc.M, image.shape[:2])
    inter = ((back > 0.5) & (with_fh > 0.5)).sum() / ((back > 0.5) | (with_fh > 0.5)).sum()
    assert inter > 0.95


def test_mouth_mask_covers_the_lips_only():
    """From the 68 points: the lips fully on, the eyes and the nose tip off; from the 5 keypoints
    alone, an ellipse between the mouth corners that overlaps the lips' mask."""
    from facegen.edit import mouth_mask

    image = _photo("obama_1.jpg")
    face = _faces_of("obama_1.jpg")[0]
    lm = face.landmarks68
    m = mouth_mask(face, image.shape[:2])
    lips = np.round(lm[48:60]).astype(int)
    assert (m[lips[:, 1], lips[:, 0]] == 1).all()                       # every outer-lip point kept whole
    for p in (lm[36:42].mean(0), lm[42:48].mean(0), lm[30]):            # eyes, nose tip
        assert m[int(p[1]), int(p[0])] == 0
    fallback = mouth_mask(Face(bbox=face.bbox, kps=face.kps, score=face.score), image.shape[:2])
    assert fallback[int(lm[62, 1]), int(lm[62, 0])] == 1                 # the inner lip's middle
    iou = ((m > 0.5) & (fallback > 0.5)).sum() / ((m > 0.5) | (fallback > 0.5)).sum()
    assert iou > 0.4


def test_five_point_ellipse_stands_in_for_the_hull():
    image = _photo("obama_2.jpg")
    face = _faces_of("obama_2.jpg")[0]
    hull = landmark_hull_mask(face, image.shape[:2]) > 0.5
    no_lm = Face(bbox=face.bbox, kps=face.kps, score=face.score)
    fallback = landmark_hull_mask(no_lm, image.shape[:2]) > 0.5
    assert np.array_equal(fallback, ellipse_mask(face.kps, image.shape[:2]) > 0.5)
    iou = (hull & fallback).sum() / (hull | fallback).sum()
    assert iou > 0.7


def test_crop_mask_and_box_mask():
    for template, size in (("ffhq", 512), ("arcface", 112)):
        m = crop_mask(size, template)
        pts = crop_template_points(size, template).astype(int)
        assert np.all(m[pts[:, 1], pts[:, 0]] == 1.0)
        assert m[0, 0] == m[0, -1] == m[-1, 0] == m[-1, -1] == 0.0
    b = box_mask(128)
    assert b.dtype == np.float32 and b.shape == (128, 128)
    assert b[64, 64] == 1.0 and np.all(b[0] == 0) and np.all(b[:, 0] == 0)
    assert np.allclose(b, b.T)  # (the even 12×12 kernel, as in inswapper, is off-centre by one pixel)
    # k_erode = 12 → the 6 outer rows are eroded; blurred with a 2·6+1 kernel
    assert b[64, :].argmax() > 6 and 0 < b[64, 8] < 1
    with pytest.raises(InvalidArgumentError):
        box_mask(8)


def test_region_mask_hook():
    image = _photo("obama_1.jpg")
    face = _faces_of("obama_1.jpg")[0]
    fc = crop_face(image, face, 256)
    seen = []

    def parser(crop: np.ndarray) -> np.ndarray:
        seen.append(crop.shape)
        out = np.zeros(crop.shape[:2], np.float32)
        out[64:192, 80:176] = 1.0
        return out

    m = face_mask(fc, face, region_mask_fn=parser, dilate_px=0, feather_px=0)  # auto → region
    assert seen == [(256, 256, 3)]
    assert m[128, 128] == 1.0 and m[10, 10] == 0.0 and m[128, 60] == 0.0
    with pytest.raises(InvalidArgumentError, match="region_mask_fn"):
        face_mask(fc, face, "region")
    with pytest.raises(InvalidArgumentError, match="shape"):
        face_mask(fc, face, region_mask_fn=lambda c: np.ones((10, 10)))
    assert face_mask(fc, face).shape == (256, 256)  # auto → hull
    assert face_mask(fc, None).max() == 1.0  # auto → template ellipse


# ---------------------------------------------------------------------------------------- colour

def test_match_color_moves_masked_stats_to_the_target():
    image = _photo("obama_1.jpg")
    face = _faces_of("obama_1.jpg")[0]
    fc = crop_face(image, face, 256)
    mask = face_mask(fc, face)
    cast = fc.crop.astype(np.float32) * np.array([1.25, 0.9, 0.7]) + np.array([0, 10, 30])
    generated = np.clip(cast, 0, 255).astype(np.uint8)
    generated[mask == 0] = (0, 255, 0)  # outside the mask must not count
    mu_t, sd_t = masked_lab_stats(fc.crop, mask)
    mu_g, sd_g = masked_lab_stats(generated, mask)
    matched = match_color(generated, fc.crop, mask)
    mu_m, sd_m = masked_lab_stats(matched, mask)
    assert matched.shape == generated.shape and matched.dtype == np.uint8
    assert np.abs(mu_m - mu_t).sum() < 0.1 * np.abs(mu_g - mu_t).sum()
    assert np.abs(sd_m - sd_t).sum() < 0.3 * np.abs(sd_g - sd_t).sum()
    half = match_color(generated, fc.crop, mask, strength=0.5)
    mu_h, _ = masked_lab_stats(half, mask)
    assert np.abs(mu_m - mu_t).sum() < np.abs(mu_h - mu_t).sum() < np.abs(mu_g - mu_t).sum()
    same = match_color(generated, fc.crop, mask, method="none")
    assert np.array_equal(same, generated) and same is not generated
    assert np.abs(match_color(generated, fc.crop, mask, strength=0.0).astype(int) - generated).max() <= 1
    with pytest.raises(InvalidArgumentError):
        match_color(generated, fc.crop, mask, method="histogram")
    with pytest.raises(InvalidArgumentError):
        match_color(generated, fc.crop, np.ones((10, 10)))


# ------------------------------------------------------------------------------------ paste-back

@pytest.mark.parametrize("name", ["obama_1.jpg", "biden_1.jpg", "lin_manuel_miranda_1.png", "biden_2.jpg"])
def test_identity_generator_paste_back_returns_the_input(name):
    image = _photo(name)
    face = _faces_of(name)[0]
    fc = crop_face(image, face, _size_for(image, face))
    mask = face_mask(fc, face)
    out = paste_back(image, fc.crop, fc.M, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    support = _support(mask, fc.M, image.shape[:2])
    assert np.array_equal(out[~support], image[~support])
    inside = inverse_warp(mask, fc.M, image.shape[:2]) >= 0.99
    diff = np.abs(out.astype(int) - image.astype(int))[inside]
    assert diff.mean() <= 1.5 and np.percentile(diff, 95) <= 5, (diff.mean(), np.percentile(diff, 95))


def test_identity_paste_of_an_upsampled_crop_is_nearly_lossless_without_antialias():
    image = _photo("group_two_people.jpg")
    face = _faces_of("group_two_people.jpg")[0]
    fc = crop_face(image, face, 512)
    assert fc.scale > 1.5
    mask = face_mask(fc, face)
    inside = inverse_warp(mask, fc.M, image.shape[:2]) >= 0.99
    exact = paste_back(image, fc.crop, fc.M, mask, antialias=False)
    smooth = paste_back(image, fc.crop, fc.M, mask)
    d_exact = np.abs(exact.astype(int) - image.astype(int))[inside]
    d_smooth = np.abs(smooth.astype(int) - image.astype(int))[inside]
    assert d_exact.mean() < 0.3 and d_exact.max() <= 3
    assert d_smooth.mean() < 1.0


def test_outside_the_mask_is_exact_on_a_random_image():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    kps = np.array([[200, 120], [250, 118], [226, 150], [205, 180], [248, 178]], np.float32)
    face = Face(bbox=np.array([170, 80, 285, 215], np.float32), kps=kps, score=1.0)
    fc = crop_face(image, face, 256, "ffhq", margin=0.1)
    mask = face_mask(fc, face)  # no landmarks → ellipse
    edited = 255 - fc.crop
    out = paste_back(image, edited, fc.M, mask)
    support = _support(mask, fc.M, image.shape[:2])
    assert np.array_equal(out[~support], image[~support])
    changed = np.any(out != image, axis=2)
    assert changed[int(kps[2, 1]), int(kps[2, 0])]
    assert changed.sum() > 0.5 * (inverse_warp(mask, fc.M, image.shape[:2]) > 0).sum()
    assert not changed[~support].any()
    # the alpha blend: fully inside, the edited (inverted) pixels come through
    core = inverse_warp(mask, fc.M, image.shape[:2]) == 1.0
    assert np.abs(out[core].astype(int) - (255 - image[core].astype(int))).mean() < 40
    # a crop larger than the image and a face at the border: still same size, still exact outside
    kps_edge = kps - [190, 0]
    edge_face = Face(bbox=face.bbox - [190, 0, 190, 0], kps=kps_edge, score=1.0)
    fc2 = crop_face(image, edge_face, 512)
    m2 = face_mask(fc2, edge_face)
    out2 = paste_back(image, 255 - fc2.crop, fc2.M, m2)
    s2 = _support(m2, fc2.M, image.shape[:2])
    assert out2.shape == image.shape and np.array_equal(out2[~s2], image[~s2]) and (out2 != image).any()


def test_rotated_and_transposed_inputs():
    image = _photo("obama_2.jpg")  # 626 × 1200, non-square
    face = _faces_of("obama_2.jpg")[0]
    h, w = image.shape[:2]
    fc = crop_face(image, face, 512)

    # EXIF orientation 6 decoded upright is a 90° rotation: same face, rotated array
    rot = np.ascontiguousarray(np.rot90(image, -1))  # clockwise: (x, y) → (h − 1 − y, x)
    rot_face = _map_face(face, lambda p: np.stack([h - 1 - p[:, 1], p[:, 0]], axis=1))
    fc_rot = crop_face(rot, rot_face, 512)
    assert np.abs(fc_rot.crop.astype(int) - fc.crop.astype(int)).mean() < 0.5  # the same aligned face
    mask = face_mask(fc_rot, rot_face)
    out = paste_back(rot, fc_rot.crop, fc_rot.M, mask)
    assert out.shape == rot.shape == (w, h, 3)
    support = _support(mask, fc_rot.M, rot.shape[:2])
    assert np.array_equal(out[~support], rot[~support])
    inside = inverse_warp(mask, fc_rot.M, rot.shape[:2]) >= 0.99
    assert np.abs(out.astype(int) - rot.astype(int))[inside].mean() <= 1.5
    # editing the rotated photo = rotating the edited upright photo (up to resampling)
    edit_up = paste_back(image, 255 - fc.crop, fc.M, face_mask(fc, face))
    edit_rot = paste_back(rot, 255 - fc_rot.crop, fc_rot.M, mask)
    assert np.abs(np.rot90(edit_up, -1).astype(int) - edit_rot.astype(int)).mean() < 0.5

    # a transposed array mirrors the face: a detector then reports the eyes swapped
    tr = np.ascontiguousarray(image.transpose(1, 0, 2))
    tr_face = _map_face(face, lambda p: p[:, ::-1])
    tr_face = Face(bbox=tr_face.bbox, kps=tr_face.kps[[1, 0, 2, 4, 3]], score=1.0, landmarks68=tr_face.landmarks68)
    fc_tr = crop_face(tr, tr_face, 512)
    m_tr = face_mask(fc_tr, tr_face)
    out_tr = paste_back(tr, 255 - fc_tr.crop, fc_tr.M, m_tr)
    s_tr = _support(m_tr, fc_tr.M, tr.shape[:2])
    assert out_tr.shape == tr.shape and np.array_equal(out_tr[~s_tr], tr[~s_tr]) and (out_tr != tr).any()


def test_multi_face_paste_leaves_the_other_face_untouched():
    image = _photo("group_two_people.jpg")
    faces = _faces_of("group_two_people.jpg")
    assert len(faces) == 2
    a, b = faces
    fa, fb = crop_face(image, a, 512), crop_face(image, b, 512)
    ma, mb = face_mask(fa, a), face_mask(fb, b)

    def region(face: Face) -> tuple[slice, slice]:
        x1, y1, x2, y2 = face.bbox
        pw, ph = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
        return slice(max(int(y1 - ph), 0), int(y2 + ph)), slice(max(int(x1 - pw), 0), int(x2 + pw))

    out_a = paste_back(image, 255 - fa.crop, fa.M, ma)
    assert np.array_equal(out_a[region(b)], image[region(b)])
    assert (out_a[region(a)] != image[region(a)]).mean() > 0.3
    out_ab = paste_back(out_a, 255 - fb.crop, fb.M, mb)
    assert (out_ab[region(b)] != image[region(b)]).mean() > 0.3
    support_b = _support(mb, fb.M, image.shape[:2])
    assert np.array_equal(out_ab[~support_b], out_a[~support_b])


def test_paste_back_on_a_12_megapixel_photo_only_touches_the_face():
    image = _photo("biden_2.jpg")
    face = _faces_of("biden_2.jpg")[0]
    s = 3.0  # 3600 × 3600 ≈ 13 MP
    big = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    big_face = _map_face(face, lambda p: (p + 0.5) * s - 0.5)
    fc = crop_face(big, big_face, 512)
    mask = face_mask(fc, big_face)
    t0 = time.perf_counter()
    out = paste_back(big, 255 - fc.crop, fc.M, mask)
    elapsed = time.perf_counter() - t0
    support = _support(mask, fc.M, big.shape[:2])
    assert out.shape == big.shape and np.array_equal(out[~support], big[~support])
    assert elapsed < 3.0, f"paste_back took {elapsed:.2f} s on a 13-MP photo"


def test_tom_hanks_crop_paste_roundtrip(tom_hanks_path, rgb_of):
    image = rgb_of(tom_hanks_path)  # 112 × 112 insightface sample
    _, detector, predictor = _dlib_models()
    rects = detector(image, 2)
    if not rects:
        pytest.skip("dlib found no face in the Tom Hanks sample")
    r = rects[0]
    lm = np.array([(p.x, p.y) for p in predictor(image, r).parts()], np.float32)
    face = _face_from_68(lm, np.array([r.left(), r.top(), r.right(), r.bottom()]))
    fc = crop_face(image, face, 512)
    mask = face_mask(fc, face)
    out = paste_back(image, fc.crop, fc.M, mask, antialias=False)
    support = _support(mask, fc.M, image.shape[:2])
    assert np.array_equal(out[~support], image[~support])
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 4


def test_paste_back_validates_its_inputs():
    image = np.zeros((64, 64, 3), np.uint8)
    crop = np.zeros((32, 32, 3), np.uint8)
    M = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    mask = np.ones((32, 32), np.float32)
    with pytest.raises(InvalidArgumentError):
        paste_back(image.astype(np.float32), crop, M, mask)
    with pytest.raises(InvalidArgumentError):
        paste_back(image, crop, M, np.ones((16, 16), np.float32))
    with pytest.raises(InvalidArgumentError):
        paste_back(image, crop, np.zeros((2, 3)), mask)
    with pytest.raises(InvalidArgumentError):
        paste_back(image, crop, M, mask * 2)
    empty = paste_back(image, crop + 9, M, np.zeros((32, 32), np.float32))
    assert np.array_equal(empty, image) and empty is not image
    # uint8 and bool masks are accepted
    assert paste_back(image, crop + 9, M, (mask * 255).astype(np.uint8))[5, 5, 0] == 9
    assert paste_back(image, crop + 9, M, mask > 0)[5, 5, 0] == 9
