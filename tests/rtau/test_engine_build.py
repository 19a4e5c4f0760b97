"""`rtau.engine_build`: real TensorRT-RTX engines built on this GPU-less machine (image,
geometry and image + geometry models), their manifests, skipping an up-to-date build, and
one-line errors."""

from __future__ import annotations

import json

import pytest

from rtau import engine_build
from rtau.contract import sha256_file
from rtau.engine_build import (
    EngineBuildConfig,
    EngineBuildError,
    TensorRTNotInstalled,
    build_engine,
    parse_compute_capabilities,
    parse_int_list,
    plan_buckets,
)
from rtau.model_files import DEFAULT_MODEL

trt = pytest.importorskip("tensorrt_rtx")


def _build(model, out, **kwargs):
    return build_engine(EngineBuildConfig(model=model, out=out, target="rtx", progress=False,
                                          **kwargs))


def _check_manifest(result, model, contract_state: int):
    from rtau.contract import read_onnx_contract

    contract = read_onnx_contract(model)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest == result.manifest
    assert manifest["format"] == "rtau.engine/1"
    assert manifest["source_onnx_sha256"] == sha256_file(model)
    assert manifest["engine_sha256"] == sha256_file(result.engine_path)
    assert manifest["tensorrt"] == {"flavour": "rtx", "package": "tensorrt-rtx",
                                    "module": "tensorrt_rtx", "version": trt.__version__}
    assert manifest["targets"]["compute_capabilities"] == ["8.0", "8.6", "8.9", "12.0"]
    # engines run the CNN in FP16; a geometry-only model has none and builds as it is
    assert manifest["precision"] == ("fp16-cnn" if contract.uses_image else "fp32")
    io = manifest["io"]
    if contract.uses_image:
        assert io["image"] == {"mode": "input", "dtype": "uint8", "shape": ["B", 112, 112, 3]}
    if contract.uses_geometry:
        assert io["geometry"] == {"mode": "input", "dtype": "float32",
                                  "shape": ["B", contract.geometry_size]}
    assert ("image" in io) == contract.uses_image
    assert io["state"] == {"mode": "input", "dtype": "float32", "shape": ["B", contract_state]}
    assert io["aus"]["dtype"] == "float32" and io["aus"]["mode"] == "output"
    assert io["state_out"] == {"mode": "output", "dtype": "float32",
                               "shape": ["B", contract_state]}
    assert manifest["model"]["state_size"] == contract_state
    return manifest


def test_builds_a_real_tiny_engine(tiny_onnx, tiny_model, tmp_path):
    result = _build(tiny_onnx, tmp_path / "tiny.engine", max_batch=8)
    assert not result.skipped and result.engine_path.stat().st_size > 100_000
    manifest = _check_manifest(result, tiny_onnx, tiny_model.cfg.hidden_size)
    assert manifest["buckets"] == [1, 2, 4, 8]
    assert [p["batch"] for p in manifest["profiles"]] == [1, 2, 4, 8]
    assert manifest["io"]["aus"]["shape"] == ["B", len(tiny_model.cfg.au_names)]
    assert manifest["cache"] == {"kind": "runtime", "file": "tiny.runtime.cache"}


@pytest.mark.parametrize(("kind", "precision"), [("geometry", "fp32"),
                                                  ("image+geometry", "fp16-cnn")])
def test_builds_geometry_models(kind, precision, tiny_onnx_of, tmp_path):
    """A geometry input gets its own profile per bucket and its FP32 tensor in the manifest; a
    geometry-only model has no CNN and builds FP32, one with the image builds FP16-CNN."""
    from rtau.contract import read_onnx_contract
    from rtau.engine_manifest import contract_from_manifest

    model = tiny_onnx_of(kind)
    contract = read_onnx_contract(model)
    result = _build(model, tmp_path / "geo.engine", max_batch=4)
    manifest = result.manifest
    assert manifest == json.loads(result.manifest_path.read_text())
    assert manifest["precision"] == manifest["build_key"]["precision"] == precision
    assert manifest["buckets"] == [1, 2, 4]
    io = manifest["io"]
    assert list(io) == [*contract.inputs, "state", "aus", "state_out"]
    assert io["geometry"] == {"mode": "input", "dtype": "float32",
                              "shape": ["B", contract.geometry_size]}
    assert io["state"]["shape"] == ["B", contract.state_size]
    assert ("image" in io) == (kind == "image+geometry")
    assert manifest["model"]["inputs"] == list(contract.inputs)
    assert contract_from_manifest(manifest) == \
        type(contract)(**{**contract.__dict__, "precision": precision})
    assert _build(model, tmp_path / "geo.engine", max_batch=4).skipped


def test_rebuild_is_skipped_only_when_the_manifest_matches(tiny_onnx, tmp_path):
    out = tmp_path / "tiny.engine"
    first = _build(tiny_onnx, out, max_batch=4)
    mtime = out.stat().st_mtime_ns
    again = _build(tiny_onnx, out, max_batch=4)
    assert again.skipped and out.stat().st_mtime_ns == mtime
    assert again.manifest["engine_sha256"] == first.manifest["engine_sha256"]
    changed = _build(tiny_onnx, out, max_batch=4, buckets=(1, 4))
    assert not changed.skipped and changed.manifest["buckets"] == [1, 4]
    assert not _build(tiny_onnx, out, max_batch=4, buckets=(1, 4), force=True).skipped
    out.write_bytes(out.read_bytes()[:-10])  # a damaged engine is rebuilt
    assert not _build(tiny_onnx, out, max_batch=4, buckets=(1, 4)).skipped


def test_compute_capability_targets(tiny_onnx, tmp_path, monkeypatch):
    result = _build(tiny_onnx, tmp_path / "t.engine", max_batch=1,
                    compute_capability=("8.6",))
    assert result.manifest["targets"]["compute_capabilities"] == ["8.6"]
    with pytest.raises(EngineBuildError, match="cannot target compute capability 9.0"):
        _build(tiny_onnx, tmp_path / "h.engine", compute_capability=("9.0",))
    # Turing has no FP32 GEMM in TensorRT-RTX, and the recurrent cell is FP32 by design.
    with pytest.raises(EngineBuildError, match="could not build an engine"):
        _build(tiny_onnx, tmp_path / "t75.engine", max_batch=1, compute_capability=("7.5",))
    monkeypatch.setattr(engine_build, "_current_gpu", lambda: (None, None))
    with pytest.raises(EngineBuildError, match="must see a GPU"):
        _build(tiny_onnx, tmp_path / "c.engine", compute_capability=("current",))


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason=f"the default model {DEFAULT_MODEL} is "
                    "not in this checkout")
def test_builds_the_shipped_default_model(tmp_path, monkeypatch):
    from rtau.contract import read_onnx_contract

    monkeypatch.delenv("RTAU_MODEL", raising=False)

    contract = read_onnx_contract(DEFAULT_MODEL)
    result = build_engine(EngineBuildConfig(out=tmp_path / "default.engine", target="rtx",
                                            progress=False))
    manifest = _check_manifest(result, DEFAULT_MODEL, contract.state_size)
    assert manifest["model"]["au_names"] == list(contract.au_names)
    assert manifest["buckets"] == [1, 2, 4, 8]


def test_not_a_contract_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), str(foreign))
    with pytest.raises(EngineBuildError, match="not an rtau step model"):
        _build(foreign, tmp_path / "f.engine")
    assert not (tmp_path / "f.engine").exists()


def test_no_tensorrt_installed_names_the_extra(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_build, "flavour_installed", lambda name: False)
    with pytest.raises(TensorRTNotInstalled, match=r"rtau\[rtx\].*rtau\[trt\]"):
        build_engine(EngineBuildConfig(model=tiny_onnx, out=tmp_path / "x.engine",
                                       progress=False))
    with pytest.raises(TensorRTNotInstalled, match=r"pip install 'rtau\[trt\]'"):
        build_engine(EngineBuildConfig(model=tiny_onnx, target="tensorrt", progress=False))


def test_bucket_and_flag_parsing():
    assert plan_buckets(8, None) == (1, 2, 4, 8)
    assert plan_buckets(6, None) == (1, 2, 4, 6)
    assert plan_buckets(16, (4, 1, 4)) == (1, 4, 16)
    with pytest.raises(EngineBuildError, match="1..--max-batch"):
        plan_buckets(4, (1, 8))
    with pytest.raises(EngineBuildError, match="at least 1"):
        plan_buckets(0, None)
    assert parse_int_list("1, 2,4", "--buckets") == (1, 2, 4)
    with pytest.raises(EngineBuildError, match="comma-separated integers"):
        parse_int_list("1,two", "--buckets")
    assert parse_compute_capabilities("8.6, 12.0") == ("8.6", "12.0")
    assert parse_compute_capabilities("current") == ("current",)
    assert parse_compute_capabilities("") == ()
    with pytest.raises(EngineBuildError, match="like 8.6"):
        parse_compute_capabilities("sm86")
