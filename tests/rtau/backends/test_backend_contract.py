"""The backend contract, shared by every backend that can run on this machine, for each kind of
step model: image only, geometry only, image + geometry (tiny models exported by train.export).

onnxruntime and torch (CPU, FP32) run everywhere; torch on CUDA (FP16 CNN, CUDA graphs) and
tensorrt carry the `gpu` marker and skip cleanly without a GPU (tensorrt also skips, with the
runtime's reason, on a GPU its engines cannot run on).
"""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import BackendError
from tests.conftest import TINY_KINDS
from tests.rtau.backends.cases import (
    open_backend,
    random_frames,
    random_geometry,
    random_inputs,
    random_state,
    rows,
    step,
)

FP32_ATOL = 1e-5
FP16_ATOL = 2e-2
"""Row independence tolerance: FP16 kernels differ a little between batch sizes."""

BACKENDS = [
    pytest.param(("onnxruntime", {}, FP32_ATOL), id="onnxruntime"),
    pytest.param(("torch", {"device": "cpu", "threads": 1}, FP32_ATOL), id="torch-cpu"),
    pytest.param(("torch", {"device": "cuda"}, FP16_ATOL), id="torch-cuda", marks=pytest.mark.gpu),
    pytest.param(("tensorrt", {}, FP16_ATOL), id="tensorrt", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="module", params=TINY_KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module", params=BACKENDS)
def case(request, kind):
    name, kwargs, atol = request.param
    backend = open_backend(name, kwargs, request, kind)
    yield backend, atol
    backend.close()


def test_step_shapes_dtypes_and_range(case):
    backend, _ = case
    c = backend.contract
    for b in (1, 5):
        aus, state = step(backend, random_inputs(c, b, b), backend.init_state(b))
        assert aus.shape == (b, c.num_aus) and aus.dtype == np.float32
        assert state.shape == (b, c.state_size) and state.dtype == np.float32
        assert np.isfinite(aus).all() and aus.min() >= 0 and aus.max() <= 5
    assert backend.describe().startswith(backend.name)


def test_batch_of_zero(case):
    backend, _ = case
    empty, empty_state = step(backend, random_inputs(backend.contract, 0, 0),
                              backend.init_state(0))
    assert empty.shape == (0, backend.contract.num_aus)
    assert empty_state.shape == (0, backend.contract.state_size)


def test_state_carries_information(case):
    backend, _ = case
    c = backend.contract
    state_a = state_b = backend.init_state(1)
    for t in range(6):
        _, state_a = step(backend, random_inputs(c, 1, t), state_a)
        other = random_inputs(c, 1, 100 + t)
        if other["images"] is not None:
            other["images"] //= 3
        _, state_b = step(backend, other, state_b)
    now = random_inputs(c, 1, 999)
    out_a, _ = step(backend, now, state_a)
    out_b, _ = step(backend, now, state_b)
    assert np.abs(out_a - out_b).max() > 1e-3


def test_each_faces_state_is_kept_separate(case):
    """A row's outputs depend on its own inputs and state only: the same face alone, or among
    others in another order, gives the same AUs and next state."""
    backend, atol = case
    c = backend.contract
    inputs = random_inputs(c, 4, 1)
    state = random_state(4, c.state_size, 2)
    together, together_state = step(backend, inputs, state)
    alone, alone_state = step(backend, rows(inputs, slice(1, 2)), state[1:2])
    np.testing.assert_allclose(together[1:2], alone, atol=atol)
    np.testing.assert_allclose(together_state[1:2], alone_state, atol=atol)
    order = np.array([3, 1, 0, 2])
    mixed, mixed_state = step(backend, rows(inputs, order), state[order])
    np.testing.assert_allclose(together[order], mixed, atol=atol)
    np.testing.assert_allclose(together_state[order], mixed_state, atol=atol)


def test_odd_and_oversized_batches(case):
    """Sizes between and beyond the GPU backends' buckets (padding, pieces) give the same rows."""
    backend, atol = case
    inputs = random_inputs(backend.contract, 11, 3)
    state = random_state(11, backend.contract.state_size, 4)
    whole, whole_state = step(backend, inputs, state)
    for a, b in ((0, 3), (3, 8), (8, 11)):
        part, part_state = step(backend, rows(inputs, slice(a, b)), state[a:b])
        np.testing.assert_allclose(whole[a:b], part, atol=atol)
        np.testing.assert_allclose(whole_state[a:b], part_state, atol=atol)


def _one_sentence(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text.count(". ") == 0, text
    return text


def test_bad_inputs_are_rejected(case):
    backend, _ = case
    c = backend.contract
    good = random_inputs(c, 1, 0)
    state = backend.init_state(1)
    with pytest.raises(BackendError, match="state must be"):
        step(backend, random_inputs(c, 2, 0), state)
    with pytest.raises(BackendError, match="state must be"):
        step(backend, good, state.astype(np.float64))
    if c.uses_image:
        with pytest.raises(BackendError, match="uint8"):
            step(backend, {**good, "images": good["images"].astype(np.float32)}, state)
        with pytest.raises(BackendError, match="uint8"):
            step(backend, {**good, "images": random_frames(1, 0, crop=64)}, state)
        with pytest.raises(BackendError, match="needs the image input") as missing:
            step(backend, {**good, "images": None}, state)
        _one_sentence(missing)
    else:
        with pytest.raises(BackendError, match="takes no image input") as unexpected:
            step(backend, {**good, "images": random_frames(1, 0)}, state)
        _one_sentence(unexpected)
    if c.uses_geometry:
        g = c.geometry_size
        with pytest.raises(BackendError, match=rf"needs the geometry input, float32\[B, {g}\]") \
                as missing:
            step(backend, {**good, "geometry": None}, state)
        _one_sentence(missing)
        with pytest.raises(BackendError, match=rf"geometry must be float32\[B, {g}\].*955") \
                as wrong:
            step(backend, {**good, "geometry": random_geometry(1, 0, g - 1)}, state)
        _one_sentence(wrong)
        with pytest.raises(BackendError, match="geometry must be float32"):
            step(backend, {**good, "geometry": good["geometry"].astype(np.float64)}, state)
    else:
        with pytest.raises(BackendError, match="takes no geometry input"):
            step(backend, {**good, "geometry": random_geometry(1, 0)}, state)
    if c.uses_image and c.uses_geometry:
        with pytest.raises(BackendError, match="different batch sizes"):
            step(backend, {**good, "geometry": random_geometry(2, 0)}, backend.init_state(2))
