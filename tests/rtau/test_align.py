"""Alignment: similarity estimation round trips, invariances, no reflections, real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtau.align import (
    CROP_SIZE,
    align_face,
    five_points,
    invert,
    similarity_transform,
    template,
    transform_points,
)


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
    np.testing.assert_allclose(est, m, atol=1e-8)
    back = transform_points(transform_points(src, est), invert(est))
    np.testing.assert_allclose(back, src, atol=1e-8)


def test_never_returns_a_reflection():
    src = np.random.default_rng(1).uniform(0, 100, (5, 2))
    mirrored = src * [-1, 1]
    est = similarity_transform(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0


def test_template_points_invariant_to_the_face_pose():
    base = template() * 3 + 200  # a face 3x bigger somewhere in a frame
    for angle, scale in ((0, 1), (25, 0.5), (-40, 2)):
        pts = transform_points(base, _similarity(angle, scale, 17, -9))
        lm = np.zeros((478, 2))
        lm[[468, 473, 1, 61, 291]] = pts
        m = similarity_transform(five_points(lm), template())
        np.testing.assert_allclose(transform_points(pts, m), template(), atol=1e-6)


def test_five_points_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="478"):
        five_points(np.zeros((68, 2)))


def test_real_face_eyes_land_on_the_template(single_face_landmarks):
    image, landmarks = single_face_landmarks
    aligned = align_face(image, landmarks)
    assert aligned.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and aligned.crop.dtype == np.uint8
    mapped = transform_points(landmarks[:, :2], aligned.matrix)
    eyes = mapped[[468, 473]]
    assert np.abs(eyes - template()[:2]).max() < 4.0
    # brows, forehead line and chin inside the crop
    assert mapped[10, 1] > 2 and mapped[152, 1] < CROP_SIZE - 4
    # the crop really is the warped frame
    expected = cv2.warpAffine(image, aligned.matrix.astype(np.float64), (CROP_SIZE, CROP_SIZE),
                              borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(expected.astype(int) - aligned.crop.astype(int)).max() <= 1
