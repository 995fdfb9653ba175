"""degrade() / estimate_degradation() (facegen.pipelines.degrade) and PSNR/SSIM (facegen.quality)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegen.errors import BadImageError, InvalidArgumentError
from facegen.faces.types import Face
from facegen.pipelines.degrade import degradation_report, degrade, degrade_level, estimate_degradation
from facegen.quality import evaluate_restoration, psnr, ssim, ssim_map

FACES_DIR = Path(__file__).resolve().parents[3] / "shared" / "faces"


def _photo(name: str) -> np.ndarray:
    path = FACES_DIR / name
    if not path.exists():
        pytest.skip(f"test photo {path} not available")
    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


@pytest.fixture(scope="module")
def face_photo() -> np.ndarray:
    """A 360×300 face-centred region of a real photo (keeps the tests fast)."""
    return np.ascontiguousarray(_photo("obama_1.jpg")[100:460, 330:630])


# -------------------------------------------------------------------------------------- degrade

def test_degrade_is_deterministic_and_keeps_size(face_photo):
    kw = dict(blur_sigma=1.5, noise_sigma=8.0, jpeg_quality=40, downscale=3.0)
    a = degrade(face_photo, **kw, seed=3)
    b = degrade(face_photo, **kw, seed=3)
    c = degrade(face_photo, **kw, seed=4)
    assert a.shape == face_photo.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the noise follows the seed
    assert np.array_equal(degrade(face_photo), face_photo) and degrade(face_photo) is not face_photo
    odd = face_photo[:101, :77]
    assert degrade(odd, downscale=4.0, jpeg_quality=30).shape == odd.shape


@pytest.mark.parametrize("knob,values", [
    ("blur_sigma", [0.5, 1.0, 2.0, 4.0]),
    ("noise_sigma", [2.0, 5.0, 10.0, 20.0]),
    ("jpeg_quality", [95, 60, 30, 10]),
    ("downscale", [1.5, 2.0, 4.0, 8.0]),
])
def test_psnr_falls_monotonically_with_each_degradation(face_photo, knob, values):
    scores = [psnr(degrade(face_photo, **{knob: v}, seed=0), face_photo) for v in values]
    assert all(math.isfinite(s) for s in scores)
    assert all(x > y for x, y in zip(scores, scores[1:])), scores
    ssims = [ssim(degrade(face_photo, **{knob: v}, seed=0), face_photo) for v in values]
    assert all(x > y for x, y in zip(ssims, ssims[1:])), ssims


def test_degrade_level_is_monotone(face_photo):
    levels = [0.0, 0.1, 0.3, 0.6, 1.0]
    scores = [psnr(degrade_level(face_photo, lv, seed=1), face_photo) for lv in levels]
    assert scores[0] == math.inf
    assert all(x > y for x, y in zip(scores, scores[1:])), scores
    with pytest.raises(InvalidArgumentError):
        degrade_level(face_photo, 1.5)


def test_degrade_rejects_bad_arguments(face_photo):
    with pytest.raises(InvalidArgumentError):
        degrade(face_photo, blur_sigma=-1)
    with pytest.raises(InvalidArgumentError):
        degrade(face_photo, downscale=0.5)
    with pytest.raises(InvalidArgumentError):
        degrade(face_photo, jpeg_quality=0)
    with pytest.raises(BadImageError):
        degrade(face_photo.astype(np.float32))


# --------------------------------------------------------------------------- estimate_degradation

@pytest.mark.parametrize("name", ["obama_1.jpg", "biden_2.jpg", "group_two_people.jpg"])
def test_estimate_degradation_increases_with_blur(name):
    image = _photo(name)
    scale = 600 / max(image.shape[:2])
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scores = [estimate_degradation(degrade(image, blur_sigma=s)) for s in (0.0, 1.0, 2.0, 4.0)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(x < y for x, y in zip(scores, scores[1:])), scores
    assert scores[0] < 0.4 and scores[-1] > 0.6  # σ = 4 px at 600 px ≈ σ = 1.7 at the 256-px working size


def test_estimate_degradation_sees_noise_jpeg_and_low_resolution(face_photo):
    clean = estimate_degradation(face_photo)
    assert clean < 0.35
    noisy = [estimate_degradation(degrade(face_photo, noise_sigma=s)) for s in (5.0, 10.0, 20.0)]
    assert clean < noisy[0] < noisy[1] < noisy[2]
    blocky = [estimate_degradation(degrade(face_photo, jpeg_quality=q)) for q in (70, 40, 15)]
    assert clean < blocky[0] < blocky[1] < blocky[2]
    small = [estimate_degradation(degrade(face_photo, downscale=f)) for f in (2.0, 4.0)]
    assert clean < small[0] < small[1]
    report = degradation_report(degrade(face_photo, jpeg_quality=15))
    assert report.blocks > 0.5 and report.blockiness_ratio > 1.5
    assert set(report.to_dict()) == {"score", "blur", "noise", "blocks", "reblur_metric", "noise_sigma",
                                     "blockiness_ratio"}


def test_estimate_degradation_measures_the_given_face(face_photo, tom_hanks_path, rgb_of):
    sharp = face_photo
    blurred = degrade(face_photo, blur_sigma=3.0)
    both = np.ascontiguousarray(np.hstack([sharp, blurred]))  # a sharp face and a blurred one
    h, w = sharp.shape[:2]

    def face_at(x0: int) -> Face:
        return Face(bbox=np.array([x0 + 60, 60, x0 + w - 60, h - 60], np.float32),
                    kps=np.zeros((5, 2), np.float32), score=1.0)

    left, right = estimate_degradation(both, face_at(0)), estimate_degradation(both, face_at(w))
    assert left < 0.4 < 0.8 < right
    assert estimate_degradation(rgb_of(tom_hanks_path)) > estimate_degradation(sharp)  # a 112-px face is soft


# ---------------------------------------------------------------------------------------- quality

def test_identical_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert psnr(x, x) == math.inf
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x[..., 0], x[..., 0]) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, x, channel="gray") == pytest.approx(1.0, abs=1e-12)


def test_psnr_known_values():
    a = np.zeros((8, 8), np.uint8)
    assert psnr(a, a + 10) == pytest.approx(10 * math.log10(255 ** 2 / 100))  # 28.13 dB
    assert psnr(a, a + 255) == pytest.approx(0.0)
    f = np.zeros((4, 4)), np.full((4, 4), 0.1)
    assert psnr(*f, data_range=1.0) == pytest.approx(20.0)
    with pytest.raises(InvalidArgumentError):
        psnr(*f)  # floats need a data range
    with pytest.raises(InvalidArgumentError):
        psnr(a, np.zeros((8, 9), np.uint8))


def test_ssim_known_values():
    # constant images: only the luminance term is left, (2μxμy + C1) / (μx² + μy² + C1)
    c1 = (0.01 * 255) ** 2
    a, b = np.full((32, 32), 100, np.uint8), np.full((32, 32), 140, np.uint8)
    expect = (2 * 100 * 140 + c1) / (100 ** 2 + 140 ** 2 + c1)
    assert ssim(a, b) == pytest.approx(expect, rel=1e-9)
    assert ssim_map(a, b).shape == (22, 22)  # the 'valid' part for an 11×11 window
    # deterministic patterns, reference values from scikit-image 0.26
    # structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    i, j = np.mgrid[0:48, 0:64]
    x = ((i * 7 + j * 13) % 256).astype(np.uint8)
    y = (np.sin(i / 5.0) * 60 + np.cos(j / 7.0) * 40 + 128).astype(np.uint8)
    assert ssim(x, y) == pytest.approx(0.025577605016437542, abs=1e-9)
    assert ssim(x, x // 2 + 40) == pytest.approx(0.7868404916801, abs=1e-9)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    with pytest.raises(InvalidArgumentError):
        ssim(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8))  # smaller than the window


def test_ssim_per_channel_mean_and_gray(face_photo):
    d = degrade(face_photo, blur_sigma=1.5, noise_sigma=6.0, seed=2)
    per_channel = [ssim(face_photo[..., c], d[..., c]) for c in range(3)]
    assert ssim(face_photo, d) == pytest.approx(np.mean(per_channel), abs=1e-12)
    assert 0.0 < ssim(face_photo, d, channel="gray") < 1.0
    with pytest.raises(InvalidArgumentError):
        ssim(face_photo, d, channel="red")


def test_evaluate_restoration(face_photo):
    degraded = degrade(face_photo, blur_sigma=2.0, noise_sigma=5.0, seed=0)
    restored = cv2.bilateralFilter(degraded, 5, 30, 5)  # any "restoration"
    calls = []

    def id_sim(a: np.ndarray, b: np.ndarray) -> float:
        calls.append((a.shape, b.shape))
        return 0.75

    rec = evaluate_restoration(restored, face_photo, id_sim, degraded=degraded)
    assert calls == [(face_photo.shape, face_photo.shape)]
    assert rec["id_similarity"] == 0.75
    assert rec["psnr"] == pytest.approx(psnr(restored, face_photo))
    assert rec["ssim"] == pytest.approx(ssim(restored, face_photo))
    assert rec["psnr_gain"] == pytest.approx(rec["psnr"] - rec["psnr_degraded"])
    assert set(rec) >= {"psnr", "ssim", "ssim_gray", "psnr_degraded", "ssim_degraded", "ssim_gain"}
    perfect = evaluate_restoration(face_photo, face_photo)
    assert perfect["psnr"] == math.inf and perfect["ssim"] == pytest.approx(1.0) and "id_similarity" not in perfect
