"""Faces: the real MediaPipe landmarker on real media, model resolution, and the tracker."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtau import faces
from rtau.faces import Face, FaceDetector, FaceModelError, FaceTracker, resolve_landmarker_model
from rtau.media import public_domain_faces, test_media


def test_landmarker_on_real_stills(single_face_landmarks):
    image, lm = single_face_landmarks
    h, w = image.shape[:2]
    assert lm.shape == (478, 3) and lm.dtype == np.float32
    assert (lm[:, 0] >= 0).all() and (lm[:, 0] < w).all()
    assert (lm[:, 1] >= 0).all() and (lm[:, 1] < h).all()
    portrait = cv2.imread(str(public_domain_faces()[0]))
    with FaceDetector(video=False) as detector:
        found = detector.detect(portrait)
    assert len(found) == 1 and found[0].blendshapes and "mouthSmileLeft" in found[0].blendshapes


def test_landmarker_video_mode_on_a_clip():
    cap = cv2.VideoCapture(str(test_media("single_face.mp4")))
    counts = []
    with FaceDetector(video=True) as detector:
        for i in range(5):
            ok, frame = cap.read()
            assert ok
            counts.append(len(detector.detect(frame, timestamp_ms=33 * i)))
    assert counts == [1] * 5


def test_detect_rejects_bad_frames():
    with FaceDetector(video=False) as detector:
        with pytest.raises(ValueError, match="uint8"):
            detector.detect(np.zeros((10, 10), np.uint8))


def test_model_resolution_checks_sha256(tmp_path, monkeypatch):
    fake = tmp_path / "face_landmarker.task"
    fake.write_bytes(b"not the model")
    with pytest.raises(FaceModelError, match="sha256"):
        resolve_landmarker_model(fake)
    monkeypatch.setenv(faces.LANDMARKER_ENV, str(fake))
    with pytest.raises(FaceModelError, match="RTAU_FACE_LANDMARKER"):
        resolve_landmarker_model()
    monkeypatch.delenv(faces.LANDMARKER_ENV)
    path = resolve_landmarker_model()  # from the cache populated by `python -m rtau.media`
    monkeypatch.setenv(faces.LANDMARKER_ENV, str(path))
    assert resolve_landmarker_model() == path


def _face(x: float, y: float, size: float = 50.0) -> Face:
    return Face(np.zeros((478, 3), np.float32), (x, y, x + size, y + size))


def test_tracker_keeps_ids_on_moving_faces():
    tracker = FaceTracker(max_lost=2)
    ids = []
    for t in range(10):
        tracked = tracker.update([_face(10 + 3 * t, 10), _face(200 - 3 * t, 100)])
        ids.append([tf.id for tf in tracked])
    assert all(i == [0, 1] for i in ids)


def test_tracker_drops_lost_faces_and_never_reuses_ids():
    tracker = FaceTracker(max_lost=2)
    assert [t.id for t in tracker.update([_face(0, 0)])] == [0]
    tracker.update([])
    assert tracker.dropped == []
    tracker.update([])
    assert tracker.dropped == []
    tracker.update([])
    assert tracker.dropped == [0]
    assert [t.id for t in tracker.update([_face(0, 0)])] == [1]


def test_tracker_short_gap_keeps_id():
    tracker = FaceTracker(max_lost=3)
    tracker.update([_face(0, 0)])
    tracker.update([])
    assert [t.id for t in tracker.update([_face(2, 2)])] == [0]


def test_tracker_does_not_swap_separate_faces_when_order_changes():
    tracker = FaceTracker()
    tracker.update([_face(0, 0), _face(300, 0)])
    tracked = tracker.update([_face(302, 0), _face(1, 0)])
    assert [t.id for t in tracked] == [1, 0]
