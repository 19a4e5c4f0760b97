"""Fixtures for the backend tests: real-looking face frames and geometry, TensorRT-RTX engines
of the tiny models built here without a GPU, and TensorRT engines for this machine's GPU."""

from __future__ import annotations

import pytest

from tests.rtau.backends.cases import PARITY_STEPS


@pytest.fixture(scope="session")
def face_frames():
    """uint8[PARITY_STEPS, 112, 112, 3]: a real portrait under small motion and lighting."""
    from rtau.bench import face_crops

    return face_crops(112, PARITY_STEPS, seed=1)


@pytest.fixture(scope="session")
def face_geometry_frames():
    """float32[PARITY_STEPS, G]: geometry inputs drifting like an expression (`rtau.bench`)."""
    from rtau.bench import face_geometry

    return face_geometry(PARITY_STEPS, seed=1)


@pytest.fixture(scope="session")
def tiny_engine_of(tiny_onnx_of, tmp_path_factory):
    """kind -> a TensorRT engine of that tiny model for this machine's GPU (gpu tests only);
    skips where none can be built here."""
    from rtau.engine_build import EngineBuildConfig, EngineBuildError, build_engine

    built = {}

    def get(kind: str):
        if kind not in built:
            out = tmp_path_factory.mktemp("engine") / f"tiny-{kind.replace('+', '-')}.engine"
            try:
                result = build_engine(EngineBuildConfig(
                    model=tiny_onnx_of(kind), out=out, max_batch=8,
                    compute_capability=("current",), progress=False))
            except EngineBuildError as exc:
                pytest.skip(f"no engine for this GPU: {exc}")
            built[kind] = result.engine_path
        return built[kind]

    return get


@pytest.fixture(scope="session")
def tiny_engine(tiny_engine_of):
    """A TensorRT engine of the tiny image model for this machine's GPU (gpu tests only)."""
    return tiny_engine_of("image")


@pytest.fixture(scope="session")
def rtx_engine_of(tiny_onnx_of, tmp_path_factory):
    """kind -> a real TensorRT-RTX engine (BuildResult) of that tiny model (default targets),
    built without a GPU."""
    pytest.importorskip("tensorrt_rtx")
    from rtau.engine_build import EngineBuildConfig, build_engine

    built = {}

    def get(kind: str):
        if kind not in built:
            out = tmp_path_factory.mktemp("rtx") / f"tiny-{kind.replace('+', '-')}.engine"
            built[kind] = build_engine(EngineBuildConfig(model=tiny_onnx_of(kind), out=out,
                                                         target="rtx", progress=False))
        return built[kind]

    return get


@pytest.fixture(scope="session")
def rtx_engine(rtx_engine_of):
    """A real TensorRT-RTX engine of the tiny image model (default targets)."""
    return rtx_engine_of("image")
