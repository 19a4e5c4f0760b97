"""Alignment: similarity estimation round trips, invariances, no reflections, real faces."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from rtau import mesh
from rtau.align import (
    CANONICAL_TEMPLATE,
    CROP_SIZE,
    align_face,
    five_points,
    invert,
    similarity_transform,
    template,
    transform_points,
)
from rtau.faces import FaceDetector
from rtau.media import public_domain_faces


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, [[tx], [ty]]])


@pytest.mark.parametrize(("angle", "scale", "tx", "ty"),
                         [(0, 1, 0, 0), (30, 2.5, 10, -4), (-75, 0.3, 100, 50), (179, 1.1, 5, 5)])
def test_recovers_a_known_similarity(angle, scale, tx, ty):
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    m = _similarity(angle, scale, tx, ty)
    est = similarity_transform(src, transform_points(src, m))
    assert est.shape == (2, 3) and est.dtype == np.float64
    np.testing.assert_allclose(est, m, atol=1e-8)
    back = transform_points(transform_points(src, est), invert(est))
    np.testing.assert_allclose(back, src, atol=1e-8)
    np.testing.assert_allclose(invert(invert(est)), est, atol=1e-10)


def test_least_squares_with_noise_beats_any_nearby_similarity():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (5, 2))
    dst = transform_points(src, _similarity(20, 0.8, 3, 4)) + rng.normal(0, 2, (5, 2))
    est = similarity_transform(src, dst)
    best = ((transform_points(src, est) - dst) ** 2).sum()
    angle = np.degrees(np.arctan2(est[1, 0], est[0, 0]))
    scale = np.hypot(est[0, 0], est[1, 0])
    for _ in range(200):
        other = _similarity(angle + rng.normal(0, 1), scale * (1 + rng.normal(0, 0.01)),
                            *(est[:, 2] + rng.normal(0, 0.5, 2)))
        assert ((transform_points(src, other) - dst) ** 2).sum() >= best - 1e-9


def test_never_returns_a_reflection():
    rng = np.random.default_rng(1)
    for _ in range(50):
        src = rng.uniform(0, 100, (5, 2))
        for mirrored in (src * [-1, 1], src * [1, -1], src[:, ::-1]):
            est = similarity_transform(src, mirrored)
            assert np.linalg.det(est[:, :2]) > 0
            a, b = est[0, :2], est[1, :2]
            assert np.isclose(a[0], b[1]) and np.isclose(a[1], -b[0])  # rotation x scale


def test_template_points_invariant_to_the_face_pose():
    base = template() * 3 + 200  # a face 3x bigger somewhere in a frame
    for angle, scale in ((0, 1), (25, 0.5), (-40, 2), (90, 1.3)):
        pts = transform_points(base, _similarity(angle, scale, 17, -9))
        lm = np.zeros((478, 2))
        lm[[468, 473, 1, 61, 291]] = pts
        m = similarity_transform(five_points(lm), template())
        np.testing.assert_allclose(transform_points(pts, m), template(), atol=1e-6)


def test_template_geometry():
    t = CANONICAL_TEMPLATE
    assert t.shape == (5, 2)
    assert t[0, 0] < t[2, 0] < t[1, 0] and t[3, 0] < t[4, 0]  # subject's right on image left
    assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes above nose above mouth
    assert abs(t[:, 0].mean() - CROP_SIZE / 2) < 1.0  # centred horizontally
    np.testing.assert_allclose(template(224), 2 * t)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="478"):
        five_points(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="identical"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        align_face(np.zeros((50, 50, 3), np.float32), np.zeros((478, 3)))


def _margins_ok(mapped: np.ndarray) -> None:
    brows = list(mesh.RIGHT_BROW_UPPER + mesh.LEFT_BROW_UPPER)
    assert mapped[mesh.FOREHEAD_TOP, 1] > 4  # forehead line inside, with a margin
    assert mapped[brows, 1].min() > 15  # brows well inside: room to rise (AU1/2)
    assert mapped[mesh.CHIN, 1] < CROP_SIZE - 4  # chin inside: room for AU17/26


def test_real_face_eyes_land_on_the_template(single_face_landmarks):
    image, landmarks = single_face_landmarks
    aligned = align_face(image, landmarks)
    assert aligned.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and aligned.crop.dtype == np.uint8
    assert aligned.matrix.shape == (2, 3) and aligned.matrix.dtype == np.float32
    mapped = transform_points(landmarks[:, :2], aligned.matrix)
    assert np.abs(mapped[[468, 473]] - template()[:2]).max() < 4.0
    _margins_ok(mapped)
    # the crop really is the warped frame
    expected = cv2.warpAffine(image, aligned.matrix.astype(np.float64), (CROP_SIZE, CROP_SIZE),
                              borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(expected.astype(int) - aligned.crop.astype(int)).max() <= 1


def test_aligned_crop_is_invariant_to_rotation_scale_and_shift(single_face_landmarks):
    # Warp the real image by a known similarity; aligning the warped image with the warped
    # landmarks must give (almost) the same crop: the pose of the face in the frame is removed.
    image, landmarks = single_face_landmarks
    reference = align_face(image, landmarks).crop.astype(np.float32)
    h, w = image.shape[:2]
    for angle, scale, tx, ty in ((20, 0.8, 40, -10), (-35, 1.4, -60, 30)):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += (tx, ty)
        moved = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR)
        moved_lm = transform_points(landmarks[:, :2], m)
        crop = align_face(moved, moved_lm).crop.astype(np.float32)
        assert np.abs(crop - reference).mean() < 2.0  # resampling blur only (~0.5-0.7)
    # while landmarks off by only 3 px give a clearly different crop (~11): the test can fail
    shifted = landmarks.copy()
    shifted[:, 0] += 3
    assert np.abs(align_face(image, shifted).crop.astype(np.float32) - reference).mean() > 5


def test_second_real_face_fits_the_template():
    image = cv2.imread(str(public_domain_faces()[0]))
    with FaceDetector(video=False) as detector:
        (face,) = detector.detect(image)
    aligned = align_face(image, face.landmarks)
    mapped = transform_points(face.landmarks[:, :2], aligned.matrix)
    assert np.abs(mapped[[468, 473]] - template()[:2]).max() < 4.0
    _margins_ok(mapped)


def test_align_stays_light():
    # rtau.align must not import MediaPipe (seconds to import): data tools import it in workers.
    code = "import sys, rtau.align; sys.exit('mediapipe' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
