"""The TensorRT backend: what runs without a GPU (bucket logic, manifest checks, refusals of an
engine that does not fit) and, on a GPU, parity with ONNX Runtime over 1,000 unrolled steps."""

from __future__ import annotations

import json
import shutil

import pytest

from rtau.backends import BackendError, create_backend
from rtau.backends.buckets import choose_bucket, chunks
from rtau.backends.tensorrt import (
    GpuInfo,
    check_engine_fits,
    describe_invalidity,
    engine_validity,
    installed_flavour,
    resolve_engine,
)
from rtau.engine_manifest import Flavour
from tests.conftest import HAS_GPU, TINY_KINDS
from tests.rtau.backends.cases import PARITY_STEPS, PARITY_TOLERANCE, unrolled_max_error

trt = pytest.importorskip("tensorrt_rtx")
RTX = Flavour("rtx", trt.__version__)


def test_the_runtime_never_imports_the_engine_builder():
    import ast
    from pathlib import Path

    import rtau.backends.tensorrt as runtime

    tree = ast.parse(Path(runtime.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "rtau.engine_build" not in modules and "rtau.engine_manifest" in modules


def test_buckets_padding_and_pieces():
    buckets = (1, 2, 4, 8)
    assert [choose_bucket(n, buckets) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 8]
    assert chunks(3, buckets) == [(0, 3, 4)]
    assert chunks(19, buckets) == [(0, 8, 8), (8, 16, 8), (16, 19, 4)]
    assert chunks(0, buckets) == []


def test_engine_fits_only_its_runtime_and_gpus(rtx_engine):
    manifest = rtx_engine.manifest
    ampere = GpuInfo("NVIDIA GeForce RTX 3090", "8.6")
    check_engine_fits(manifest, RTX, ampere)
    check_engine_fits(manifest, RTX, None)
    with pytest.raises(BackendError, match=r"not installed here \(pip install 'rtau\[rtx\]'\)"):
        check_engine_fits(manifest, None, ampere)
    with pytest.raises(BackendError, match=r"is installed: rebuild with `rtau build-engine`"):
        check_engine_fits(manifest, Flavour("rtx", "0.9.0"), ampere)
    hopper = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(BackendError, match="cannot run TensorRT-RTX engines.*--backend torch"):
        check_engine_fits(manifest, RTX, hopper)
    turing = GpuInfo("NVIDIA GeForce RTX 2080 Ti", "7.5")
    with pytest.raises(BackendError, match=r"targets compute capabilities 8\.0, 8\.6, 8\.9, "
                       r"12\.0.*--compute-capability 7\.5"):
        check_engine_fits(manifest, RTX, turing)
    with pytest.raises(BackendError, match="unknown TensorRT flavour"):
        check_engine_fits({**manifest, "tensorrt": {"flavour": "onnx"}}, RTX, ampere)


def test_invalidity_diagnostics_in_words():
    assert describe_invalidity(2) == "unsupported compute capability"
    assert describe_invalidity(1 | 4) == "TensorRT version mismatch, CUDA driver too old"
    assert describe_invalidity(0) == "no reason given"


def test_backend_refuses_a_mismatched_manifest_before_touching_a_gpu(rtx_engine, tmp_path):
    engine = tmp_path / "tiny.engine"
    shutil.copy(rtx_engine.engine_path, engine)
    manifest = json.loads(rtx_engine.manifest_path.read_text())
    manifest["tensorrt"]["version"] = "0.0.1"
    engine.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(BackendError, match="built with tensorrt-rtx 0.0.1.*rebuild with"):
        create_backend("tensorrt", engine)
    engine.with_suffix(".json").write_text("{}")
    with pytest.raises(BackendError, match="not an rtau engine manifest"):
        create_backend("tensorrt", engine)
    engine.with_suffix(".json").unlink()
    with pytest.raises(BackendError, match="has no manifest.*rtau build-engine"):
        create_backend("tensorrt", engine)
    with pytest.raises(BackendError, match="engine file not found|has no manifest"):
        create_backend("tensorrt", tmp_path / "missing.engine")


@pytest.mark.skipif(HAS_GPU, reason="checks the refusal on a machine without a GPU")
def test_backend_without_a_gpu_says_so(rtx_engine):
    pytest.importorskip("cuda.bindings")
    with pytest.raises(BackendError, match="no usable CUDA GPU"):
        create_backend("tensorrt", rtx_engine.engine_path)


def test_an_onnx_finds_its_default_engine(tiny_onnx, tmp_path, monkeypatch):
    import rtau.engine_build as eb
    import rtau.engine_manifest

    monkeypatch.setattr(rtau.engine_manifest, "ENGINES_DIR", tmp_path / "engines")
    with pytest.raises(BackendError, match="no engine built from .*rtau build-engine --model"):
        resolve_engine(tiny_onnx)
    result = eb.build_engine(eb.EngineBuildConfig(model=tiny_onnx, target="rtx", max_batch=1,
                                                  progress=False))
    assert result.engine_path.parent == tmp_path / "engines"
    assert resolve_engine(tiny_onnx) == result.engine_path
    assert installed_flavour("rtx") == RTX


@pytest.mark.gpu
@pytest.mark.parametrize("kind", TINY_KINDS)
def test_gpu_parity_over_1000_steps(kind, tiny_engine_of, tiny_onnx_of, face_frames,
                                    face_geometry_frames):
    """Skips with the runtime's own reason where no TensorRT can run (e.g. RTX on Hopper)."""
    try:
        backend = create_backend("tensorrt", tiny_engine_of(kind))
    except BackendError as exc:
        pytest.skip(f"tensorrt cannot run here: {exc}")
    reference = create_backend("onnxruntime", tiny_onnx_of(kind))
    c = reference.contract
    with backend:
        error = unrolled_max_error(
            backend, reference, face_frames[:PARITY_STEPS] if c.uses_image else None, batch=3,
            geometry=face_geometry_frames[:PARITY_STEPS] if c.uses_geometry else None)
    assert error <= PARITY_TOLERANCE, error


@pytest.mark.gpu
def test_rtx_engine_validity_on_this_gpu(rtx_engine, capsys):
    """The runtime's own verdict on an RTX engine here agrees with the manifest's targets and
    what TensorRT-RTX can run: VALID (or SUBOPTIMAL) on a targeted RTX-class GPU, INVALID for
    an unsupported compute capability elsewhere (Hopper: 9.0). Run with `-s` to see it."""
    pytest.importorskip("cuda.bindings")
    from rtau.backends.tensorrt import RTX_COMPUTE_CAPABILITIES, current_gpu

    gpu = current_gpu()
    verdict = engine_validity(rtx_engine.engine_path)
    with capsys.disabled():
        print(f"\nTensorRT-RTX {trt.__version__} get_engine_validity on {gpu.name} "
              f"({gpu.compute_capability}): {verdict}")
    targets = rtx_engine.manifest["targets"]["compute_capabilities"]
    if gpu.compute_capability in targets and gpu.compute_capability in RTX_COMPUTE_CAPABILITIES:
        assert verdict in ("VALID", "SUBOPTIMAL"), verdict
    else:
        assert verdict.startswith("INVALID") and "compute capability" in verdict, verdict
