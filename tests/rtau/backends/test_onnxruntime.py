"""The ONNX Runtime backend on a real exported model: metadata and clear errors.

Its step behaviour is checked with every other backend in `test_backend_contract.py`.
"""

from __future__ import annotations

import pytest

from rtau.backends import BackendError, create_backend
from rtau.backends.onnxruntime import OnnxRuntimeBackend

onnx = pytest.importorskip("onnx")


def test_reads_the_contract_from_metadata(tiny_onnx, tiny_model):
    backend = create_backend("onnxruntime", tiny_onnx)
    c = backend.contract
    assert (c.crop_size, c.state_size) == (112, tiny_model.cfg.hidden_size)
    assert c.au_names == tuple(tiny_model.cfg.au_names)
    assert "onnxruntime (cpu, fp32)" in backend.describe()


def test_missing_corrupt_and_foreign_models(tmp_path):
    (tmp_path / "corrupt.onnx").write_bytes(b"garbage" * 100)
    for name, refusal in (("missing.onnx", "not found"),
                          ("corrupt.onnx", "not a readable ONNX model")):
        with pytest.raises(BackendError, match=refusal):
            OnnxRuntimeBackend(tmp_path / name)

    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "foreign", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(BackendError, match="not an rtau step model") as info:
        OnnxRuntimeBackend(foreign)
    assert "\n" not in str(info.value)


def test_unknown_backend_name(tiny_onnx):
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("tpu", tiny_onnx)
