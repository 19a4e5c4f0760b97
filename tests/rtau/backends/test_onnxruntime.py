"""The ONNX Runtime backend on a real exported model: contract behaviour and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import BackendError, create_backend
from rtau.backends.onnxruntime import OnnxRuntimeBackend

onnx = pytest.importorskip("onnx")


def _frames(b: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, 112, 112, 3), dtype=np.uint8)


def test_reads_the_contract_from_metadata(tiny_onnx, tiny_model):
    backend = create_backend("onnxruntime", tiny_onnx)
    c = backend.contract
    assert (c.crop_size, c.state_size) == (112, tiny_model.cfg.hidden_size)
    assert c.au_names == tuple(tiny_model.cfg.au_names)
    assert "onnxruntime (cpu, fp32)" in backend.describe()


def test_step_shapes_and_range(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    aus, state = backend.step(_frames(5, 0), backend.init_state(5))
    assert aus.shape == (5, backend.contract.num_aus) and aus.dtype == np.float32
    assert state.shape == (5, backend.contract.state_size) and state.dtype == np.float32
    assert aus.min() >= 0 and aus.max() <= 5
    empty, empty_state = backend.step(_frames(0, 0), backend.init_state(0))
    assert empty.shape == (0, backend.contract.num_aus) and empty_state.shape[0] == 0


def test_state_carries_information(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    state_a = state_b = backend.init_state(1)
    for t in range(6):
        _, state_a = backend.step(_frames(1, t), state_a)
        _, state_b = backend.step(_frames(1, 100 + t) // 3, state_b)
    frame = _frames(1, 999)
    out_a, _ = backend.step(frame, state_a)
    out_b, _ = backend.step(frame, state_b)
    assert np.abs(out_a - out_b).max() > 1e-3


def test_batch_rows_are_independent(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    images = _frames(4, 1)
    state = np.random.default_rng(2).normal(size=(4, backend.contract.state_size))
    state = state.astype(np.float32)
    together, _ = backend.step(images, state)
    alone, _ = backend.step(images[1:2], state[1:2])
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)
    other = images.copy()
    other[0], other[2] = images[3], images[0]
    mixed, _ = backend.step(other, state)
    np.testing.assert_allclose(together[1], mixed[1], atol=1e-5)


def test_bad_inputs_are_rejected(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    with pytest.raises(BackendError, match="uint8"):
        backend.step(_frames(1, 0).astype(np.float32), backend.init_state(1))
    with pytest.raises(BackendError, match="state must be"):
        backend.step(_frames(2, 0), backend.init_state(1))


def test_missing_corrupt_and_foreign_models(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"garbage" * 100)
    with pytest.raises(BackendError, match="not a readable ONNX model"):
        OnnxRuntimeBackend(corrupt)

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
