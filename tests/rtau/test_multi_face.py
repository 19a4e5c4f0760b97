"""Every face in the room through AUEstimator: group photos as clips, one batched step per
frame, and a face that leaves and comes back (its id and recurrent state, or a fresh start)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtau import AUEstimator
from rtau.backends.onnxruntime import OnnxRuntimeBackend
from rtau.detect import FullRangeDetector
from rtau.media import test_media
from tests.rtau.face_scenes import DRIFT_PX, cover, still_clip

FRAME_MS = 1000.0 / 30


class RecordingBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, keeping every step's state in and state out."""

    def __init__(self, path):
        super().__init__(path, device="cpu")
        self.steps: list[tuple[np.ndarray, np.ndarray]] = []

    def _run(self, inputs, state):
        aus, state_out = super()._run(inputs, state)
        self.steps.append((state.copy(), state_out.copy()))
        return aus, state_out


@pytest.fixture
def backend(tiny_onnx):
    with RecordingBackend(tiny_onnx) as b:
        yield b


def _shifted(box, n):
    return (box[0] + DRIFT_PX * n, box[1], box[2] + DRIFT_PX * n, box[3])


def test_group_photo_all_faces_in_one_step_each_frame(backend):
    photo = cv2.imread(str(test_media("t1.jpg")))
    with AUEstimator(backend=backend, max_faces=8) as est:
        per_frame = [est.update(frame, n * FRAME_MS)
                     for n, frame in enumerate(still_clip(photo, 12))]
    assert [len(faces) for faces in per_frame] == [6] * 12
    assert [s.shape[0] for s, _ in backend.steps] == [6] * 12, "one step of 6 per frame"
    ids = {f.id for faces in per_frame for f in faces}
    assert len(ids) == 6
    assert [f.age for f in per_frame[-1]] == [12] * 6
    # each face has its own state: six different rows after a few steps
    last_state = backend.steps[-1][1]
    assert len({row.tobytes() for row in last_state}) == 6


def test_a_face_hidden_briefly_gets_its_id_and_state_back(backend):
    photo = cv2.imread(str(test_media("t1.jpg")))
    target = FullRangeDetector().detect(photo)[0].box
    frames = still_clip(photo, 30)
    hidden = range(8, 20)  # 12 frames, 0.4 s at 30 fps
    for n in hidden:
        cover(frames[n], _shifted(target, n))
    with AUEstimator(backend=backend, max_faces=8) as est:
        per_frame = [est.update(frame, n * FRAME_MS) for n, frame in enumerate(frames)]

    def find(faces, n):
        x0, y0, x1, y1 = _shifted(target, n)
        return [f for f in faces if x0 < (f.box[0] + f.box[2]) / 2 < x1
                and y0 < (f.box[1] + f.box[3]) / 2 < y1]

    before = find(per_frame[hidden.start - 1], hidden.start - 1)
    assert len(before) == 1
    face_id = before[0].id
    assert all(not find(per_frame[n], n) for n in hidden), "covered: not found"
    assert [len(faces) for faces in per_frame] == [6 if n not in hidden else 5
                                                   for n in range(len(frames))]
    back_at = next(n for n in range(hidden.stop, len(frames)) if find(per_frame[n], n))
    assert back_at - hidden.stop <= 5, "found again at the next detection"
    returned = find(per_frame[back_at], back_at)[0]
    assert returned.id == face_id and returned.age == before[0].age + 1
    # the state it steps from is the one it left with, not a fresh zero state
    row_before = [f.id for f in per_frame[hidden.start - 1]].index(face_id)
    row_back = [f.id for f in per_frame[back_at]].index(face_id)
    left_with = backend.steps[hidden.start - 1][1][row_before]
    np.testing.assert_array_equal(backend.steps[back_at][0][row_back], left_with)
    assert np.abs(left_with).max() > 0
    assert len({f.id for faces in per_frame for f in faces}) == 6


def test_a_face_gone_for_over_a_second_comes_back_as_new(backend):
    still = cv2.imread(str(test_media("single_face.jpg")))
    box = FullRangeDetector().detect(still)[0].box
    frames = still_clip(still, 50)
    for n in range(5, 40):  # 35 frames > 30 (1 s at 30 fps)
        cover(frames[n], _shifted(box, n))
    with AUEstimator(backend=backend) as est:
        per_frame = [est.update(frame, n * FRAME_MS) for n, frame in enumerate(frames)]
        first = per_frame[4][0]
        back_at = next(n for n in range(40, 50) if per_frame[n])
        again = per_frame[back_at][0]
    assert again.id != first.id and again.age == 1
    step = sum(1 for faces in per_frame[:back_at] if faces)  # empty frames take no step
    assert not backend.steps[step][0].any(), "a fresh zero state"
