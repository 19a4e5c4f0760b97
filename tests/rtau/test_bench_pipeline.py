"""The face-stage split of the pipeline benchmark, on a real group photo played as a clip."""

from __future__ import annotations

import cv2
import numpy as np

from rtau.bench_pipeline import FACE_STAGES, face_stage_timings
from rtau.faces import DEFAULT_DETECT_EVERY
from rtau.media import test_media

FRAMES = 7


def test_face_stage_split_on_a_group_clip(tmp_path):
    photo = cv2.imread(str(test_media("multi_face.jpg")))
    clip = tmp_path / "group.mp4"
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for n in range(FRAMES):
        writer.write(cv2.warpAffine(photo, np.float32([[1, 0, 2 * n], [0, 1, 0]]), (w, h),
                                    borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    stages = face_stage_timings(clip, loops=1, max_faces=8)
    assert set(stages) == set(FACE_STAGES)
    detect_frames = len(range(0, FRAMES, DEFAULT_DETECT_EVERY))
    assert stages["face detect"]["samples"] == detect_frames
    assert stages["landmarks / face"]["samples"] == FRAMES
    for s in stages.values():
        assert 0 < s["p50_ms"] <= s["p99_ms"] and s["measured_in"] == "faces"
