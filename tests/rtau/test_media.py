"""Test media and model files: cached, sha256-verified, clear errors."""

from __future__ import annotations

import cv2
import pytest

from rtau import media
from rtau.media import MediaError, test_media


def test_cached_clip_is_verified_and_decodes():
    path = test_media("single_face.mp4")
    assert media.sha256_matches(path, media.TEST_MEDIA["single_face.mp4"].sha256)
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 72
    ok, frame = cap.read()
    assert ok and frame.shape == (360, 640, 3)


def test_unknown_name():
    with pytest.raises(MediaError, match="unknown test media"):
        test_media("nope.mp4")


def test_corrupted_cache_entry_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv(media.CACHE_ENV, str(tmp_path))
    target = tmp_path / "media" / "single_face.jpg"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"tampered")
    assert not media.sha256_matches(target, media.TEST_MEDIA["single_face.jpg"].sha256)


def test_public_domain_faces_exist():
    faces = media.public_domain_faces()
    assert faces and all(p.is_file() for p in faces)
