"""Unlabeled-video reader: any folder of mp4/avi/mov/mkv, recursively; broken files fail clearly.

Run: `python -m pytest tests/train/data/test_videos.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
from trees import frame_level, truncate, write_video

from train.data.source import DatasetError
from train.data.videos import read_videos

LEVEL_TOLERANCE = 8


def test_finds_videos_recursively(tmp_path):
    write_video(tmp_path / "a.mp4", 5)
    write_video(tmp_path / "people" / "anna" / "talk.avi", 6)
    write_video(tmp_path / "people" / "ben.MOV", 7)
    write_video(tmp_path / "deep" / "x" / "y" / "z.mkv", 4)
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "._a.mp4").write_bytes(b"macOS metadata")
    entries = read_videos(tmp_path)
    assert [e.id for e in entries] == [
        "a.mp4",
        "deep/x/y/z.mkv",
        "people/anna/talk.avi",
        "people/ben.MOV",
    ]
    assert [e.subject for e in entries] == ["a", "deep/x/y", "people/anna", "people"]
    for entry, n in zip(entries, (5, 4, 6, 7), strict=True):
        assert entry.au_names == () and entry.labels.shape[1] == 0
        frames = list(entry.frames())
        assert len(frames) == n
        levels = [float(f.mean()) for f in frames]
        np.testing.assert_allclose(levels, [frame_level(i) for i in range(n)], atol=LEVEL_TOLERANCE)


def test_truncated_avi_fails_while_decoding(tmp_path):
    write_video(tmp_path / "clip.avi", 40)
    truncate(tmp_path / "clip.avi", 0.5)
    (entry,) = read_videos(tmp_path)
    with pytest.raises(DatasetError, match=r"clip\.avi: only \d+ of the 40 frames it announces"):
        list(entry.frames())


def test_truncated_mp4_fails_when_listed(tmp_path):
    write_video(tmp_path / "clip.mp4", 20)
    truncate(tmp_path / "clip.mp4", 0.5)
    with pytest.raises(DatasetError, match=r"clip\.mp4: cannot be opened as a video"):
        read_videos(tmp_path)


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no video files"):
        read_videos(tmp_path / "empty")
    with pytest.raises(DatasetError, match=r"nowhere: folder not found"):
        read_videos(tmp_path / "nowhere")
