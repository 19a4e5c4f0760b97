"""Geometry features: the crop frame of the rigid points, invariant to where the face is."""

from __future__ import annotations

import numpy as np
import pytest

from rtau import mesh
from rtau.align import RIGID_TEMPLATE
from rtau.contract import GEOMETRY_LANDMARKS_XY, KNOWN_GEOMETRY
from rtau.geometry import GEOMETRY_FRAME_SIZE, GEOMETRY_SIZE, geometry_batch, geometry_features


def _face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lm = np.zeros((mesh.NUM_LANDMARKS, 3))
    lm[:, :2] = rng.uniform(20, 92, (mesh.NUM_LANDMARKS, 2))
    lm[list(mesh.RIGID_POINTS), :2] = RIGID_TEMPLATE
    lm[:, 2] = rng.normal(0, 5, mesh.NUM_LANDMARKS)
    return lm


def _move(lm: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]):
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = lm.copy()
    out[:, :2] = lm[:, :2] @ rot.T + shift
    return out


def test_layout_size_and_rigid_points_on_the_template():
    features = geometry_features(_face())
    assert features.dtype == np.float32 and features.shape == (GEOMETRY_SIZE,)
    assert KNOWN_GEOMETRY[GEOMETRY_LANDMARKS_XY] == GEOMETRY_SIZE
    points = (features.reshape(-1, 2) + 0.5) * GEOMETRY_FRAME_SIZE
    np.testing.assert_allclose(points[list(mesh.RIGID_POINTS)], RIGID_TEMPLATE, atol=1e-3)


def test_the_same_face_anywhere_in_the_frame_gives_the_same_features():
    face = _face(1)
    moved = _move(face, angle_deg=17.0, scale=3.4, shift=(410.0, -35.0))
    np.testing.assert_allclose(geometry_features(moved), geometry_features(face), atol=1e-5)


def test_an_expression_changes_the_features_where_it_moves_points():
    face = _face(2)
    smile = face.copy()
    smile[mesh.MOUTH_LEFT, :2] += (2.0, -2.0)
    delta = (geometry_features(smile) - geometry_features(face)).reshape(-1, 2)
    assert np.abs(delta[mesh.MOUTH_LEFT]).min() > 0.01
    others = np.delete(np.abs(delta).max(axis=1), mesh.MOUTH_LEFT)
    assert others.max() < 1e-6  # the rigid fit ignores the mouth


def test_batch_and_bad_input():
    rng = np.random.default_rng(1)
    faces = []
    for i in range(3, 40):  # each face somewhere else in the frame: its own turn, size, place
        angle, scale = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 4.0)
        c, s_ = scale * np.cos(angle), scale * np.sin(angle)
        face = _face(i)
        face[:, :2] = face[:, :2] @ np.array([[c, s_], [-s_, c]]) + rng.uniform(0, 500, 2)
        face[:, :2] += rng.normal(0, 0.5, face[:, :2].shape)
        faces.append(face)
    batch = geometry_batch(faces)
    assert batch.shape == (len(faces), GEOMETRY_SIZE)
    # the batched fit is the per-face one (to float32 rounding), for lists and arrays alike
    one_by_one = np.stack([geometry_features(f) for f in faces])
    np.testing.assert_allclose(batch, one_by_one, rtol=0, atol=2e-7)
    np.testing.assert_array_equal(geometry_batch(np.stack(faces)), batch)
    assert geometry_batch([]).shape == (0, GEOMETRY_SIZE)
    with pytest.raises(ValueError, match="landmarks of shape"):
        geometry_batch(np.zeros((2, 68, 2)))
    with pytest.raises(ValueError, match="identical"):
        geometry_batch(np.zeros((1, 478, 3)))
    with pytest.raises(ValueError, match="landmarks of shape"):
        geometry_features(np.zeros((68, 2)))
