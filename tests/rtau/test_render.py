"""Rendering is pure: overlay pixels follow the AU values exactly where `bar_layout` says,
the rest of the frame is untouched; the rich tables carry the AU names and values."""

from __future__ import annotations

import cv2
import numpy as np
from rich.console import Console

from rtau.aus import DISFA_AUS
from rtau.estimator import FaceEstimate
from rtau.media import test_media as media_file
from rtau.render import (
    BAR_FILL_COLOUR,
    BAR_TRACK_COLOUR,
    STATUS_HEIGHT,
    au_table,
    bar_layout,
    draw_overlay,
    stats_table,
)

BOX = (200.0, 80.0, 330.0, 240.0)


def estimate(values, face_id=1, box=BOX, calibration="off") -> FaceEstimate:
    aus = np.asarray(values, np.float32)
    return FaceEstimate(id=face_id, box=box, landmarks=np.zeros((478, 3), np.float32), aus=aus,
                        raw_aus=aus, au_names=DISFA_AUS, age=1, calibration=calibration,
                        crop=np.zeros((8, 8, 3), np.uint8))


def frame() -> np.ndarray:
    image = cv2.imread(str(media_file("single_face.jpg")))
    return np.ascontiguousarray(cv2.resize(image, (640, 360)))


def test_layout_goes_right_of_the_box_or_left_when_no_room():
    right = bar_layout(BOX, 12, (640, 360))
    assert right.panel[0] > BOX[2] and len(right.tracks) == 12
    left = bar_layout((500, 50, 630, 200), 12, (640, 360))
    assert left.panel[2] < 500
    clamped = bar_layout((0, 350, 630, 359), 12, (640, 360))
    assert 0 <= clamped.panel[0] and clamped.panel[3] <= 360 - STATUS_HEIGHT


def test_bar_pixels_follow_values_and_nothing_else_changes():
    base = frame()
    k = len(DISFA_AUS)
    values = np.linspace(0.0, 5.0, k)
    low = draw_overlay(base, [estimate(np.zeros(k))], DISFA_AUS)
    high = draw_overlay(base, [estimate(values)], DISFA_AUS)
    assert (base == frame()).all(), "draw_overlay must not modify its input"
    layout = bar_layout(BOX, k, (640, 360))
    for value, (x0, y0, x1, y1) in zip(values, layout.tracks, strict=True):
        filled = int(round(value / 5.0 * (x1 - x0)))
        row_low, row_high = low[y0:y1, x0:x1], high[y0:y1, x0:x1]
        assert (row_low == BAR_TRACK_COLOUR).all()
        assert (row_high[:, :filled] == BAR_FILL_COLOUR).all()
        assert (row_high[:, filled:] == BAR_TRACK_COLOUR).all()
    # Only the AU panel's bars and numbers differ between the two overlays.
    px0, py0, px1, py1 = layout.panel
    diff = np.any(low != high, axis=2)
    assert diff[py0:py1, px0:px1].sum() > 0
    diff[py0:py1, px0:px1] = False
    assert diff.sum() == 0
    # Away from the box, the panel and the status line, the frame is untouched.
    assert (low[:60, :150] == base[:60, :150]).all()


def test_status_line_is_drawn_only_when_asked():
    base = frame()
    without = draw_overlay(base, [], DISFA_AUS)
    with_status = draw_overlay(base, [], DISFA_AUS, fps=29.7, timings={"step": 3.2})
    assert (without == base).all()
    assert (with_status[-STATUS_HEIGHT:] != base[-STATUS_HEIGHT:]).any()
    assert (with_status[:-STATUS_HEIGHT] == base[:-STATUS_HEIGHT]).all()


def test_au_table_lists_every_au_and_face():
    faces = [estimate(np.full(12, 2.5), 1), estimate(np.zeros(12), 4, calibration="calibrating")]
    table = au_table(faces, DISFA_AUS, fps=30.0, timings={"landmarks": 12.0, "step": 3.0},
                     frame_index=41)
    assert table.row_count == 12 and len(table.columns) == 4
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "AU12" in text and "Lip corner puller" in text and "2.50" in text
    assert "face 4 (calibrating)" in text and "frame 41" in text and "step 3.0" in text
    empty = Console(width=120, record=True)
    empty.print(au_table([], DISFA_AUS))
    assert "no face" in empty.export_text()


def test_stats_table():
    console = Console(width=120, record=True)
    console.print(stats_table({"step": (3.0, 7.5, 100)}))
    text = console.export_text()
    assert "step" in text and "3.00" in text and "7.50" in text and "100" in text

