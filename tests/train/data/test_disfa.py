"""DISFA reader: the distributed layout is read exactly; every malformation gets a clear message.

Run: `python -m pytest tests/train/data/test_disfa.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
from trees import FRAME_SIZE, frame_level, make_disfa, truncate, write_labels, write_video

from rtau.aus import DISFA_AUS
from train.data.disfa import read_disfa
from train.data.source import DatasetError

LEVEL_TOLERANCE = 6  # MJPG is lossy; the grey levels are 18 apart


@pytest.fixture
def disfa_root(tmp_path):
    return tmp_path / "DISFA"


def label_file(root, subject, au):
    return root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt"


def test_reads_layout_labels_and_frames(disfa_root):
    written = make_disfa(disfa_root, subjects=("SN001", "SN003"), aus=(1, 2, 12), num_frames=12)
    entries = read_disfa(disfa_root)
    assert [e.id for e in entries] == ["SN001", "SN003"]
    for entry in entries:
        assert entry.subject == entry.id
        assert entry.au_names == ("AU01", "AU02", "AU12")
        assert entry.num_frames == 12
        assert entry.labels.dtype == np.float32 and entry.mask.dtype == bool
        np.testing.assert_array_equal(entry.labels, written[entry.id])
        assert entry.mask.all()
        frames = list(entry.frames())
        assert len(frames) == 12
        w, h = FRAME_SIZE
        assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in frames)
        levels = [float(f.mean()) for f in frames]
        expected = [frame_level(i) for i in range(12)]
        np.testing.assert_allclose(levels, expected, atol=LEVEL_TOLERANCE)


def test_accepts_synthetic_subjects_and_requested_aus(disfa_root):
    written = make_disfa(disfa_root, subjects=("SYN001",), aus=(1, 12, 25), num_frames=6)
    (entry,) = read_disfa(disfa_root, aus=("AU25", "12"))
    assert entry.id == "SYN001" and entry.au_names == ("AU25", "AU12")
    np.testing.assert_array_equal(entry.labels, written["SYN001"][:, [2, 1]])


def test_fractional_intensities_are_exact(disfa_root):
    make_disfa(disfa_root, subjects=("SYN001",), aus=(12,), num_frames=4)
    values = [0.0, 1.25, 4.999, 5.0]
    write_labels(label_file(disfa_root, "SYN001", 12), values)
    (entry,) = read_disfa(disfa_root)
    np.testing.assert_array_equal(entry.labels[:, 0], np.float32(values))


def test_missing_label_file_of_requested_au(disfa_root):
    make_disfa(disfa_root, aus=(1, 2))
    with pytest.raises(DatasetError, match=r"SN001_au4\.txt: label file not found"):
        read_disfa(disfa_root, aus=DISFA_AUS)


def test_missing_label_file_of_one_subject(disfa_root):
    make_disfa(disfa_root)
    label_file(disfa_root, "SN002", 12).unlink()
    with pytest.raises(DatasetError, match=r"SN002_au12\.txt: label file not found"):
        read_disfa(disfa_root)


def test_wrong_line_count(disfa_root):
    make_disfa(disfa_root, num_frames=12)
    path = label_file(disfa_root, "SN002", 2)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:11]))
    with pytest.raises(DatasetError) as info:
        read_disfa(disfa_root)
    message = str(info.value)
    assert "SN002_au2.txt" in message and "11 lines" in message and "12 frames" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("3,x", r"line 3: intensity 'x' is not a number"),
        ("3,7", r"line 3: intensity 7 is outside 0\.\.5"),
        ("3,-1", r"line 3: intensity -1 is outside 0\.\.5"),
        ("3,nan", r"line 3: intensity nan is outside"),
        ("3,2,1", r"line 3: expected 2 columns"),
        ("3", r"line 3: expected 2 columns"),
        ("three,2", r"line 3: frame number 'three' is not an integer"),
        ("2,1", r"line 3: frame 2 appears twice \(first on line 2\)"),
        ("4,1", r"line 3: frame 4 follows frame 2"),
        ("", r"line 3: expected 2 columns"),
    ],
)
def test_bad_line_names_file_and_line(disfa_root, line, expected):
    make_disfa(disfa_root, subjects=("SN001",), aus=(1,), num_frames=6)
    path = label_file(disfa_root, "SN001", 1)
    lines = path.read_text().splitlines()
    lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"SN001_au1\.txt, " + expected):
        read_disfa(disfa_root)


def test_frames_must_start_at_one(disfa_root):
    make_disfa(disfa_root, subjects=("SN001",), aus=(1,), num_frames=5)
    write_labels(label_file(disfa_root, "SN001", 1), [0, 1, 2, 3, 4], first_frame=0)
    with pytest.raises(DatasetError, match=r"line 1: first frame is 0, expected 1"):
        read_disfa(disfa_root)


def test_truncated_video_fails_while_decoding(disfa_root):
    make_disfa(disfa_root, subjects=("SN001",), num_frames=40)
    video = disfa_root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    truncate(video, 0.5)
    (entry,) = read_disfa(disfa_root)  # the AVI header still announces 40 frames
    with pytest.raises(DatasetError, match=r"LeftVideoSN001_comp\.avi: only \d+ of 40 frames"):
        for _ in entry.frames():
            pass


def test_video_that_is_not_a_video(disfa_root):
    make_disfa(disfa_root, subjects=("SN001",))
    video = disfa_root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    video.write_bytes(b"not a video at all" * 100)
    with pytest.raises(
        DatasetError, match=r"LeftVideoSN001_comp\.avi: cannot be opened as a video"
    ):
        read_disfa(disfa_root)


def test_video_longer_than_labels(disfa_root):
    make_disfa(disfa_root, subjects=("SN001",), aus=(1,), num_frames=8)
    write_video(disfa_root / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi", 9)
    with pytest.raises(DatasetError, match=r"SN001_au1\.txt: has 8 lines but .* has 9 frames"):
        read_disfa(disfa_root)


def test_missing_video_and_missing_label_folder(disfa_root):
    make_disfa(disfa_root)
    (disfa_root / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi").unlink()
    with pytest.raises(DatasetError, match=r"LeftVideoSN002_comp\.avi: video not found"):
        read_disfa(disfa_root)
    write_video(disfa_root / "Videos_LeftCamera" / "LeftVideoSN009_comp.avi", 12)
    write_video(disfa_root / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi", 12)
    with pytest.raises(DatasetError, match=r"SN009: label folder not found"):
        read_disfa(disfa_root)


def test_misnamed_video_and_missing_layout(disfa_root, tmp_path):
    make_disfa(disfa_root, subjects=("SN001",))
    write_video(disfa_root / "Videos_LeftCamera" / "RightVideoSN001.avi", 3)
    with pytest.raises(DatasetError, match=r"RightVideoSN001\.avi: video name does not follow"):
        read_disfa(disfa_root)
    with pytest.raises(DatasetError, match=r"Videos_LeftCamera: folder not found"):
        read_disfa(tmp_path / "elsewhere")
