"""Fixtures for the backend tests: real-looking face frames, a TensorRT-RTX engine of the tiny
model built here without a GPU, and a TensorRT engine for this machine's GPU."""

from __future__ import annotations

import pytest

from tests.rtau.backends.cases import PARITY_STEPS


@pytest.fixture(scope="session")
def face_frames():
    """uint8[PARITY_STEPS, 112, 112, 3]: a real portrait under small motion and lighting."""
    from rtau.bench import face_crops

    return face_crops(112, PARITY_STEPS, seed=1)


@pytest.fixture(scope="session")
def tiny_engine(tiny_onnx, tmp_path_factory):
    """A TensorRT engine of the tiny model for this machine's GPU (gpu tests only)."""
    from rtau.engine_build import EngineBuildConfig, EngineBuildError, build_engine

    out = tmp_path_factory.mktemp("engine") / "tiny.engine"
    try:
        result = build_engine(EngineBuildConfig(model=tiny_onnx, out=out, max_batch=8,
                                                compute_capability=("current",), progress=False))
    except EngineBuildError as exc:
        pytest.skip(f"no engine for this GPU: {exc}")
    return result.engine_path


@pytest.fixture(scope="session")
def rtx_engine(tiny_onnx, tmp_path_factory):
    """A real TensorRT-RTX engine of the tiny model (default targets), built without a GPU."""
    pytest.importorskip("tensorrt_rtx")
    from rtau.engine_build import EngineBuildConfig, build_engine

    out = tmp_path_factory.mktemp("rtx") / "tiny.engine"
    return build_engine(EngineBuildConfig(model=tiny_onnx, out=out, target="rtx",
                                          progress=False))
