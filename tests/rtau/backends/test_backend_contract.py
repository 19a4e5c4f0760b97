"""The backend contract, shared by every backend that can run on this machine.

onnxruntime and torch (CPU, FP32) run everywhere; torch on CUDA (FP16 CNN, CUDA graphs) and
tensorrt carry the `gpu` marker and skip cleanly without a GPU (tensorrt also skips, with the
runtime's reason, on a GPU its engines cannot run on).
"""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import BackendError
from tests.rtau.backends.cases import open_backend, random_frames, random_state

FP32_ATOL = 1e-5
FP16_ATOL = 2e-2
"""Row independence tolerance: FP16 kernels differ a little between batch sizes."""

BACKENDS = [
    pytest.param(("onnxruntime", {}, FP32_ATOL), id="onnxruntime"),
    pytest.param(("torch", {"device": "cpu", "threads": 1}, FP32_ATOL), id="torch-cpu"),
    pytest.param(("torch", {"device": "cuda"}, FP16_ATOL), id="torch-cuda", marks=pytest.mark.gpu),
    pytest.param(("tensorrt", {}, FP16_ATOL), id="tensorrt", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="module", params=BACKENDS)
def case(request):
    name, kwargs, atol = request.param
    backend = open_backend(name, kwargs, request)
    yield backend, atol
    backend.close()


def test_step_shapes_dtypes_and_range(case):
    backend, _ = case
    c = backend.contract
    for b in (1, 5):
        aus, state = backend.step(random_frames(b, b), backend.init_state(b))
        assert aus.shape == (b, c.num_aus) and aus.dtype == np.float32
        assert state.shape == (b, c.state_size) and state.dtype == np.float32
        assert np.isfinite(aus).all() and aus.min() >= 0 and aus.max() <= 5
    assert backend.describe().startswith(backend.name)


def test_batch_of_zero(case):
    backend, _ = case
    empty, empty_state = backend.step(random_frames(0, 0), backend.init_state(0))
    assert empty.shape == (0, backend.contract.num_aus)
    assert empty_state.shape == (0, backend.contract.state_size)


def test_state_carries_information(case):
    backend, _ = case
    state_a = state_b = backend.init_state(1)
    for t in range(6):
        _, state_a = backend.step(random_frames(1, t), state_a)
        _, state_b = backend.step(random_frames(1, 100 + t) // 3, state_b)
    frame = random_frames(1, 999)
    out_a, _ = backend.step(frame, state_a)
    out_b, _ = backend.step(frame, state_b)
    assert np.abs(out_a - out_b).max() > 1e-3


def test_batch_rows_are_independent(case):
    backend, atol = case
    images = random_frames(4, 1)
    state = random_state(4, backend.contract.state_size, 2)
    together, _ = backend.step(images, state)
    alone, _ = backend.step(images[1:2], state[1:2])
    np.testing.assert_allclose(together[1:2], alone, atol=atol)
    other = images.copy()
    other[0], other[2] = images[3], images[0]
    mixed, _ = backend.step(other, state)
    np.testing.assert_allclose(together[1], mixed[1], atol=atol)


def test_odd_and_oversized_batches(case):
    """Sizes between and beyond the GPU backends' buckets (padding, pieces) give the same rows."""
    backend, atol = case
    images = random_frames(11, 3)
    state = random_state(11, backend.contract.state_size, 4)
    whole, whole_state = backend.step(images, state)
    for a, b in ((0, 3), (3, 8), (8, 11)):
        part, part_state = backend.step(images[a:b], state[a:b])
        np.testing.assert_allclose(whole[a:b], part, atol=atol)
        np.testing.assert_allclose(whole_state[a:b], part_state, atol=atol)


def test_bad_inputs_are_rejected(case):
    backend, _ = case
    with pytest.raises(BackendError, match="uint8"):
        backend.step(random_frames(1, 0).astype(np.float32), backend.init_state(1))
    with pytest.raises(BackendError, match="uint8"):
        backend.step(random_frames(1, 0, crop=64), backend.init_state(1))
    with pytest.raises(BackendError, match="state must be"):
        backend.step(random_frames(2, 0), backend.init_state(1))
    with pytest.raises(BackendError, match="state must be"):
        backend.step(random_frames(1, 0), backend.init_state(1).astype(np.float64))
