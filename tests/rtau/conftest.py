"""Fixtures: a real still with one face and its MediaPipe landmarks; a network-free pip index;
a real clip cut short (its container declares more frames than it holds)."""

from __future__ import annotations

import cv2
import pytest


@pytest.fixture(scope="session")
def single_face_landmarks():
    from rtau.faces import FaceDetector
    from rtau.media import test_media

    image = cv2.imread(str(test_media("single_face.jpg")))
    with FaceDetector(video=False) as detector:
        faces = detector.detect(image)
    assert len(faces) == 1
    return image, faces[0].landmarks


@pytest.fixture
def offline_index(tmp_path, monkeypatch):
    """A local, network-free package index: pip sees only the wheels put in the returned
    folder (PIP_NO_INDEX + PIP_FIND_LINKS), and the cache is a fresh temp folder."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("RTAU_CACHE", str(tmp_path / "cache"))
    return index


TRUNCATED_DECLARED = 30
"""Frames the truncated clip's AVI header declares; the file holds about half of them."""


@pytest.fixture(scope="session")
def truncated_clip(tmp_path_factory):
    """(path, declared, decodable): the first 30 frames of `single_face.mp4` as an MJPEG AVI
    whose header says 30 frames, cut to half its bytes, as a download that stopped would be."""
    from rtau.media import test_media

    folder = tmp_path_factory.mktemp("truncated")
    full = folder / "full.avi"
    cap = cv2.VideoCapture(str(test_media("single_face.mp4")))
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for _ in range(TRUNCATED_DECLARED):
        ok, image = cap.read()
        assert ok
        writer.write(image)
    writer.release()
    cap.release()
    data = full.read_bytes()
    cut = folder / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    cap = cv2.VideoCapture(str(cut), cv2.CAP_FFMPEG)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == TRUNCATED_DECLARED
    decodable = 0
    while cap.read()[0]:
        decodable += 1
    cap.release()
    assert 0 < decodable < TRUNCATED_DECLARED
    return cut, TRUNCATED_DECLARED, decodable
