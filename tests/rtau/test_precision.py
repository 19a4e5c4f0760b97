"""FP32 -> FP16-CNN conversion: layout, metadata, and numerical agreement under ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from rtau.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from rtau.contract import ContractError  # noqa: E402
from rtau.precision import META_CNN_OUTPUT, convert_cnn_to_fp16, convert_file  # noqa: E402


def test_converted_file_matches_fp32(tiny_onnx, tmp_path):
    out = convert_file(tiny_onnx, tmp_path / "half.onnx")
    fp32, fp16 = OnnxRuntimeBackend(tiny_onnx), OnnxRuntimeBackend(out)
    assert fp16.contract.precision == "fp16-cnn" and fp32.contract.precision == "fp32"
    rng = np.random.default_rng(0)
    s32 = fp32.init_state(3)
    s16 = fp16.init_state(3)
    worst = 0.0
    for _ in range(30):
        images = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
        a32, s32 = fp32.step(images, s32)
        a16, s16 = fp16.step(images, s16)
        worst = max(worst, float(np.abs(a32 - a16).max()))
    assert 0 < worst < 0.05


def test_conversion_is_idempotent_and_types_are_right(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    once = convert_cnn_to_fp16(model)
    twice = convert_cnn_to_fp16(once)
    assert once.SerializeToString() == twice.SerializeToString()
    casts = [n for n in once.graph.node if n.op_type == "Cast"]
    to = {n.name: next(a.i for a in n.attribute if a.name == "to") for n in casts}
    assert to["rtau_cnn_to_fp32"] == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in to.values()
    # the original model object is not modified
    assert all(i.data_type != onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_model_without_boundary_is_refused(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    kept = [p for p in model.metadata_props if p.key != META_CNN_OUTPUT]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    with pytest.raises(ContractError, match="CNN region is unknown"):
        convert_cnn_to_fp16(model)


def test_image_and_geometry_model_converts_only_its_cnn(tiny_onnx_of):
    """The geometry encoder and the running baseline are not ancestors of the pooled CNN
    feature: their weights stay FP32, and a geometry-only model is refused in one sentence."""
    from onnx import TensorProto

    once = convert_cnn_to_fp16(onnx.load(str(tiny_onnx_of("image+geometry"))))
    inits = {i.name: i.data_type for i in once.graph.initializer}
    geometry = {n: t for n, t in inits.items() if n.startswith("model.geometry_encoder.")}
    assert geometry and set(geometry.values()) == {TensorProto.FLOAT}
    conv = {inits[n.input[1]] for n in once.graph.node if n.op_type == "Conv"}
    assert conv == {TensorProto.FLOAT16}
    with pytest.raises(ContractError, match="takes no image, so it has no CNN to convert"):
        convert_cnn_to_fp16(onnx.load(str(tiny_onnx_of("geometry"))))
