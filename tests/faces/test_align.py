import cv2
import numpy as np
import pytest

from facegen.errors import InvalidArgumentError
from facegen.faces.align import (ARCFACE_112, FFHQ_512, estimate_norm, inverse_warp, invert_affine,
                                 template_points, transform_points, umeyama, warp_face)


def test_golden_template_values():
    assert np.allclose(ARCFACE_112, [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                     [41.5493, 92.3655], [70.7299, 92.2041]], atol=1e-5)
    assert FFHQ_512[0].tolist() == pytest.approx([192.98138, 239.94708])
    assert FFHQ_512[4].tolist() == pytest.approx([313.08905, 371.15118])


@pytest.mark.parametrize("size,scale,dx", [(112, 1, 0), (224, 2, 0), (128, 1, 8), (256, 2, 16), (512, 4, 32)])
def test_estimate_norm_sizes(size, scale, dx):
    expected = ARCFACE_112 * scale + np.array([dx, 0])
    assert np.allclose(template_points(size), expected, atol=1e-4)
    # the template maps onto itself with the identity transform
    m = estimate_norm(expected, size)
    assert np.allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-6)


def test_bad_sizes_and_points_refused():
    with pytest.raises(InvalidArgumentError, match="multiple of 112 or 128"):
        template_points(100)
    with pytest.raises(InvalidArgumentError, match="5 keypoints"):
        estimate_norm(np.zeros((4, 2)), 112)


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (s * r).T + t
    m = umeyama(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


def test_warp_then_inverse_round_trip_under_one_pixel():
    rng = np.random.default_rng(1)
    img = np.zeros((400, 300, 3), np.uint8)
    kps = ARCFACE_112 * 2.2 + np.array([60.0, 90.0])
    ang = 0.25
    rot = cv2.getRotationMatrix2D((150, 200), np.degrees(ang), 1.0)
    kps = transform_points(kps, rot)
    for size, template in ((112, "arcface"), (512, "ffhq"), (128, "arcface")):
        crop, m = warp_face(img, kps, size, template)
        assert crop.shape == (size, size, 3)
        back = transform_points(transform_points(kps, m), invert_affine(m))
        assert np.abs(back - kps).max() < 1e-3
    # pixels: a random point set inside the crop comes back within a pixel
    pts = rng.uniform(20, 90, (50, 2))
    crop, m = warp_face(img, kps, 112)
    round_trip = transform_points(transform_points(pts, invert_affine(m)), m)
    assert np.abs(round_trip - pts).max() < 1.0
    # image content: a bright dot in the crop lands where the inverse transform says
    crop = np.zeros((112, 112, 3), np.uint8)
    crop[55:58, 55:58] = 255
    full = inverse_warp(crop, m, img.shape[:2])
    ys, xs = np.nonzero(full[..., 0] > 100)
    expected = transform_points(np.array([[56.0, 56.0]]), invert_affine(m))[0]
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0


def test_margin_zooms_out_keeping_centre():
    img = np.zeros((300, 300, 3), np.uint8)
    kps = ARCFACE_112 * 2 + 20
    _, m0 = warp_face(img, kps, 112)
    _, m1 = warp_face(img, kps, 112, margin=0.25)
    p0 = transform_points(kps, m0)
    p1 = transform_points(kps, m1)
    assert np.allclose(p1.mean(0) - 56, (p0.mean(0) - 56) / 1.5, atol=1e-3)
