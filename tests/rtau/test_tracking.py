"""Face ids: the tracker on synthetic boxes, and on two real faces walking through each other."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtau.detect import FullRangeDetector
from rtau.faces import Face, FaceDetector
from rtau.media import test_media
from rtau.tracking import FaceTracker
from tests.rtau.face_scenes import crossing_clip, face_sprite, nearest


def _face(x: float, y: float, size: float = 80.0) -> Face:
    return Face(np.zeros((478, 3), np.float32), (x, y, x + size, y + size))


def test_tracker_keeps_ids_on_moving_faces():
    tracker = FaceTracker(max_lost=2)
    for t in range(30):
        tracked = tracker.update([_face(10 + 3 * t, 10 + t), _face(400 - 3 * t, 200)])
        assert [tf.id for tf in tracked] == [0, 1]
        assert tracker.dropped == []


def test_crossing_boxes_are_not_swapped():
    # Two boxes walk through each other (they overlap while they cross), listed in random
    # order; the motion prediction keeps each on its own track.
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


def test_a_face_hidden_while_moving_is_found_where_it_went():
    # 10 px a frame, hidden for 12 frames: it reappears 130 px (1.6 face sizes) from where it
    # vanished. Without the velocity it would be a stranger; with it, the same id.
    tracker = FaceTracker(max_lost=30)
    for t in range(6):
        assert [tf.id for tf in tracker.update([_face(100 + 10 * t, 100)])] == [0]
    for _ in range(12):
        tracker.update([])
    assert [tf.id for tf in tracker.update([_face(100 + 10 * 18, 100)])] == [0]
    still = FaceTracker(max_lost=30)
    still.update([_face(100, 100)])
    for _ in range(12):
        still.update([])
    assert [tf.id for tf in still.update([_face(230, 100)])] == [1]


def test_fast_move_keeps_id_by_centre_distance():
    tracker = FaceTracker(min_iou=0.3, max_centre_shift=0.5)
    tracker.update([_face(100, 100)])
    assert [t.id for t in tracker.update([_face(135, 100)])] == [0]
    assert [t.id for t in tracker.update([_face(171, 100)])] == [0]
    # a face two face-widths beyond where this one is heading is someone else
    assert [t.id for t in tracker.update([_face(400, 125)])] == [1]


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


@pytest.mark.parametrize("detect_every", [1, 5])
def test_two_real_faces_crossing_keep_their_ids(detect_every):
    # Two faces cut from insightface's t1.jpg walk through each other, one passing behind the
    # other (hidden for about ten frames). Each person keeps one id, never the other's.
    photo = cv2.imread(str(test_media("t1.jpg")))
    boxes = sorted(d.box for d in FullRangeDetector().detect(photo))
    clip, centres = crossing_clip(face_sprite(photo, boxes[0]), face_sprite(photo, boxes[3]))
    tracker = FaceTracker(max_lost=30)
    ids: list[set[int]] = [set(), set()]
    seen = np.zeros((len(clip), 2), bool)
    with FaceDetector(max_faces=2, detect_every=detect_every) as detector:
        for n, frame in enumerate(clip):
            for tf in tracker.update(detector.detect(frame)):
                person, dist = nearest(centres[n], tf.face.box)
                assert dist < 40, f"frame {n}: a face where nobody is"
                ids[person].add(tf.id)
                seen[n, person] = True
    assert seen[:, 0].all(), "the face in front is followed in every frame"
    hidden = np.flatnonzero(~seen[:, 1])
    assert 0 < len(hidden) <= 15 and seen[-5:, 1].all(), "the face behind comes back"
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1], ids
