"""BP4D reader: image sequences + per-AU CSVs; 9 = not coded is masked, never a label.

Run: `python -m pytest tests/train/data/test_bp4d.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
from trees import frame_level, make_bp4d, write_labels

from train.data.bp4d import read_bp4d
from train.data.source import DatasetError

LEVEL_TOLERANCE = 6  # JPEG is lossy; the grey levels are 18 apart


@pytest.fixture
def bp4d_root(tmp_path):
    return tmp_path / "BP4D"


def csv_path(root, subject, task, au):
    return root / f"AU{au:02d}" / f"{subject}_{task}_AU{au:02d}.csv"


def test_reads_sequences_and_masks_not_coded(bp4d_root):
    written = make_bp4d(bp4d_root, num_frames=8)
    entries = read_bp4d(bp4d_root)
    assert [e.id for e in entries] == ["F001_T1", "M002_T3"]
    assert [e.subject for e in entries] == ["F001", "M002"]
    for entry in entries:
        values = written[entry.id]
        assert entry.au_names == ("AU06", "AU12")
        assert entry.num_frames == 8
        coded = values != 9.0
        np.testing.assert_array_equal(entry.mask, coded)
        np.testing.assert_array_equal(entry.labels[coded], values[coded])
        assert (entry.labels[~coded] == 0).all()  # a 9 never becomes a label
        assert entry.labels.max() <= 5
        frames = list(entry.frames())
        assert len(frames) == 8 and frames[0].dtype == np.uint8 and frames[0].ndim == 3
        levels = [float(f.mean()) for f in frames]
        np.testing.assert_allclose(levels, [frame_level(i) for i in range(8)], atol=LEVEL_TOLERANCE)


def test_frame_numbers_follow_image_names(bp4d_root):
    make_bp4d(bp4d_root, sequences=(("F003", "T2"),), num_frames=5, first_frame=700)
    (entry,) = read_bp4d(bp4d_root)
    assert entry.frame_files[0].name == "0700.jpg" and entry.num_frames == 5
    write_labels(csv_path(bp4d_root, "F003", "T2", 12), [1, 2, 3, 4, 5], first_frame=1)
    with pytest.raises(DatasetError, match=r"F003_T2_AU12\.csv, line 1: frame 1 but .*0700\.jpg"):
        read_bp4d(bp4d_root)


def test_requested_aus(bp4d_root):
    make_bp4d(bp4d_root, aus=(6, 12))
    (first, _) = read_bp4d(bp4d_root, aus=("AU12",))
    assert first.au_names == ("AU12",) and first.labels.shape == (8, 1)
    with pytest.raises(DatasetError, match=r"AU10: label folder not found"):
        read_bp4d(bp4d_root, aus=("AU06", "AU10"))


def test_intensity_seven_is_rejected(bp4d_root):
    make_bp4d(bp4d_root, num_frames=6)
    write_labels(csv_path(bp4d_root, "M002", "T3", 6), [0, 1, 7, 9, 2, 3])
    with pytest.raises(
        DatasetError,
        match=r"M002_T3_AU06\.csv, line 3: intensity 7 is outside "
        r"0\.\.5 or 9 \(not coded\)",
    ):
        read_bp4d(bp4d_root)


def test_wrong_line_count(bp4d_root):
    make_bp4d(bp4d_root, num_frames=8)
    write_labels(csv_path(bp4d_root, "F001", "T1", 12), [1] * 7)
    with pytest.raises(DatasetError, match=r"F001_T1_AU12\.csv: has 7 lines but .*T1 has 8 frames"):
        read_bp4d(bp4d_root)


def test_missing_csv_and_orphan_labels(bp4d_root):
    make_bp4d(bp4d_root)
    csv_path(bp4d_root, "F001", "T1", 6).unlink()
    with pytest.raises(DatasetError, match=r"F001_T1_AU06\.csv: label file not found"):
        read_bp4d(bp4d_root)
    write_labels(csv_path(bp4d_root, "F001", "T1", 6), [0] * 8)
    write_labels(csv_path(bp4d_root, "F009", "T4", 6), [0] * 8)
    with pytest.raises(DatasetError, match=r"F009_T4_AU06\.csv: no frames for these labels"):
        read_bp4d(bp4d_root)


def test_missing_frame_image(bp4d_root):
    make_bp4d(bp4d_root, num_frames=8)
    (bp4d_root / "Sequences" / "F001" / "T1" / "0004.jpg").unlink()
    with pytest.raises(DatasetError, match=r"T1: frame image 4 is missing"):
        read_bp4d(bp4d_root)


def test_duplicate_frame_in_labels(bp4d_root):
    make_bp4d(bp4d_root, num_frames=4)
    path = csv_path(bp4d_root, "F001", "T1", 6)
    path.write_text("1,0\n2,1\n2,1\n3,0\n")
    with pytest.raises(DatasetError, match=r"line 3: frame 2 appears twice"):
        read_bp4d(bp4d_root)


def test_undecodable_image(bp4d_root):
    make_bp4d(bp4d_root, num_frames=4)
    (bp4d_root / "Sequences" / "M002" / "T3" / "0003.jpg").write_bytes(b"\xff\xd8 broken")
    entry = read_bp4d(bp4d_root)[1]
    with pytest.raises(DatasetError, match=r"0003\.jpg: cannot be decoded as an image"):
        list(entry.frames())


def test_not_the_layout(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match=r"Sequences: folder not found"):
        read_bp4d(tmp_path / "x")
