"""Fixtures on real media: a still with one face and its MediaPipe landmarks."""

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
