"""The full-range detector: real BlazeFace on real group photos, tiling geometry, NMS."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtau.detect import (
    TILE_OVERLAP,
    FullRangeDetector,
    main,
    tile_origins,
    tile_side,
    weighted_nms,
)
from rtau.media import test_media


@pytest.fixture(scope="module")
def detector():
    return FullRangeDetector()


def test_finds_every_face_of_the_group_photos(detector):
    for name, people in (("t1.jpg", 6), ("multi_face.jpg", 5)):
        image = cv2.imread(str(test_media(name)))
        found = detector.detect(image)
        assert len(found) == people, name
        for d in found:
            x0, y0, x1, y1 = d.box
            assert 60 < x1 - x0 < 200 and 0.7 < (y1 - y0) / (x1 - x0) < 1.4
            assert d.keypoints.shape == (6, 2) and 0.5 <= d.score <= 1.0
            eyes = d.keypoints[:2]  # both eyes inside the box, in its upper half
            assert ((eyes[:, 0] > x0) & (eyes[:, 0] < x1)).all()
            assert ((eyes[:, 1] > y0) & (eyes[:, 1] < (y0 + y1) / 2)).all()
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_small_faces_need_the_tiles(detector):
    photo = cv2.imread(str(test_media("t1.jpg")))
    small = cv2.resize(photo, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    canvas = np.full((886, 1280, 3), 110, np.uint8)
    canvas[300:300 + small.shape[0], 400:400 + small.shape[1]] = small
    assert len(detector.detect(canvas)) == 6
    whole_only = FullRangeDetector(min_face_px=2000)  # one pass over the whole frame
    assert len(whole_only.windows(886, 1280)) == 1
    assert len(whole_only.detect(canvas)) < 6


def test_nothing_in_an_empty_frame_and_bad_input(detector):
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="min_face_px"):
        FullRangeDetector(min_face_px=0)


def test_tiles_cover_the_frame_with_overlap():
    side = tile_side(48)
    assert side == 576 and tile_side(96) == 2 * side
    for length in (577, 886, 1280, 1920, 4000):
        starts = tile_origins(length, side)
        assert starts[0] == 0 and starts[-1] + side == length
        gaps = np.diff(starts)
        assert (side - gaps >= TILE_OVERLAP * side - 1).all()
    assert tile_origins(500, side) == [0]



def test_windows_whole_frame_first_then_tiles(detector):
    assert detector.windows(360, 640) == [(0, 0, 640)]  # tiles would barely enlarge faces
    windows = detector.windows(886, 1280)
    assert windows[0] == (0, 0, 1280)
    assert len(windows) == 1 + 3 * 2 and {side for _, _, side in windows[1:]} == {576}


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    merged = weighted_nms(boxes, kps, scores)
    assert len(merged) == 2 and merged[0].score == pytest.approx(0.9)
    assert merged[0].box[0] == pytest.approx(0.6 / 1.5)  # score-weighted mean of 0 and 1
    assert merged[1].box == (50.0, 50.0, 60.0, 60.0)


def test_command_line(capsys, tmp_path):
    assert main([str(test_media("multi_face.jpg"))]) == 0
    assert "5 face(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main([str(bad)]) == 1
    assert "not an image" in capsys.readouterr().err
