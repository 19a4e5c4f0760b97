"""The TensorRT backend's buffer, state-slot and CUDA-graph logic, run against a fake CUDA runtime
and a fake execution context (no GPU here): padding to a bucket, pieces larger than the largest
bucket, two alternating state buffers never bound as both input and output, graphs replayed
with the addresses they were captured with."""

from __future__ import annotations

import ctypes
import sys
import types
from enum import Enum

import numpy as np
import pytest

from rtau.backends.base import BackendError
from rtau.backends.tensorrt import TensorRTBackend, _Bucket
from rtau.contract import ModelContract

CROP, HIDDEN, AUS = 4, 6, 3


class FakeCuda:
    """Just enough of cuda.bindings.runtime: memory is ctypes buffers, a captured graph is the
    list of operations recorded while capturing, launched by replaying it."""

    class cudaMemcpyKind(Enum):  # noqa: N801 - mirrors the binding's name
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(Enum):  # noqa: N801
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self) -> None:
        self.buffers: dict[int, ctypes.Array] = {}
        self.recording: list | None = None
        self.launches = 0

    def _alloc(self, nbytes):
        buf = (ctypes.c_byte * nbytes)()
        self.buffers[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    cudaMallocHost = cudaMalloc = _alloc

    def submit(self, op) -> None:
        if self.recording is not None:
            self.recording.append(op)
        else:
            op()

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        assert dst in self.buffers and src in self.buffers
        self.submit(lambda: ctypes.memmove(dst, src, count))
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.recording = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        graph, self.recording = self.recording, None
        return 0, graph

    def cudaGraphInstantiate(self, graph, flags):
        return 0, list(graph)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.launches += 1
        for op in graph_exec:
            op()
        return (0,)

    def cudaGetErrorString(self, err):
        return 0, b"fake"

    def ok(self, *args):
        return (0,)

    cudaStreamSynchronize = cudaGraphExecDestroy = cudaGraphDestroy = ok
    cudaFree = cudaFreeHost = cudaStreamDestroy = ok


def view(cuda: FakeCuda, ptr: int, dtype, shape):
    return np.frombuffer(cuda.buffers[ptr], dtype=dtype).reshape(shape)


def reference_step(images: np.ndarray, state: np.ndarray):
    """What the fake engine computes: state_out = 0.5 state + row mean / 255, aus = 3 sigmoid."""
    mean = images.reshape(images.shape[0], -1).astype(np.float32).mean(axis=1, keepdims=True)
    state_out = (0.5 * state + mean / 255.0).astype(np.float32)
    aus = (5.0 / (1.0 + np.exp(-state_out[:, :AUS]))).astype(np.float32)
    return aus, state_out


class FakeContext:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple] = {}

    def set_optimization_profile_async(self, profile, stream):
        self.profile = profile
        return True

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        # TensorRT reads the bound addresses when it enqueues: a captured graph keeps them.
        a = dict(self.addresses)
        assert a["state"] != a["state_out"], "one buffer bound as both input and output"
        batch = self.shapes["image"][0]

        def run():
            images = view(self.cuda, a["image"], np.uint8, (batch, CROP, CROP, 3))
            state = view(self.cuda, a["state"], np.float32, (batch, HIDDEN))
            aus, state_out = reference_step(images, state)
            view(self.cuda, a["state_out"], np.float32, (batch, HIDDEN))[:] = state_out
            view(self.cuda, a["aus"], np.float32, (batch, AUS))[:] = aus

        self.cuda.submit(run)
        return True


class FakeEngine:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.contexts: list[FakeContext] = []

    def create_execution_context(self, *args):
        self.contexts.append(FakeContext(self.cuda))
        return self.contexts[-1]


@pytest.fixture
def cuda(monkeypatch):
    fake = FakeCuda()
    package = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = fake
    package.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", package)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", fake)
    return fake


def _frames(b, seed):
    return np.random.default_rng(seed).integers(0, 256, (b, CROP, CROP, 3), dtype=np.uint8)


def test_bucket_pads_alternates_state_buffers_and_replays_graphs(cuda):
    engine = FakeEngine(cuda)
    bucket = _Bucket(engine, None, profile=2, batch=4, crop=CROP, hidden=HIDDEN, num_aus=AUS,
                     stream=0)
    ctx = engine.contexts[0]
    assert ctx.profile == 2 and ctx.shapes == {"image": (4, CROP, CROP, 3), "state": (4, HIDDEN)}
    assert len(bucket._execs) == 2 and bucket.state_d[0] != bucket.state_d[1]
    state = np.random.default_rng(0).normal(size=(3, HIDDEN)).astype(np.float32)
    expected_state = state.copy()
    for t in range(5):
        images = _frames(3, t)
        slot = bucket.slot
        aus, state = bucket.run(images, state)
        want_aus, expected_state = reference_step(images, expected_state)
        np.testing.assert_allclose(aus, want_aus, rtol=1e-6)
        np.testing.assert_allclose(state, expected_state, rtol=1e-6)
        assert bucket.slot == 1 - slot
        assert aus.shape == (3, AUS) and state.shape == (3, HIDDEN)
    assert cuda.launches == 5
    bucket.close()
    assert bucket._execs == [] and bucket.context is None


def test_backend_runs_pieces_in_buckets(cuda):
    engine = FakeEngine(cuda)
    backend = object.__new__(TensorRTBackend)
    backend.contract = ModelContract(crop_size=CROP, state_size=HIDDEN,
                                     au_names=("AU01", "AU02", "AU04"))
    backend.buckets = (1, 2, 4)
    backend._buckets = {b: _Bucket(engine, None, i, b, CROP, HIDDEN, AUS, 0)
                        for i, b in enumerate(backend.buckets)}
    images = _frames(7, 1)
    state = np.random.default_rng(2).normal(size=(7, HIDDEN)).astype(np.float32)
    aus, state_out = backend.step(images, state)  # pieces: 4 rows in bucket 4, 3 padded to 4
    want_aus, want_state = reference_step(images, state)
    np.testing.assert_allclose(aus, want_aus, rtol=1e-6)
    np.testing.assert_allclose(state_out, want_state, rtol=1e-6)
    assert [b.slot for b in backend._buckets.values()] == [0, 0, 0]  # 4 ran twice
    one, _ = backend.step(images[:1], state[:1])
    np.testing.assert_allclose(one, want_aus[:1], rtol=1e-6)
    with pytest.raises(BackendError, match="uint8"):
        backend.step(images.astype(np.float32), state)


def test_cuda_errors_become_backend_errors(cuda):
    from rtau.backends.tensorrt import cuda_call

    class Err(int):
        name = "cudaErrorMemoryAllocation"

    with pytest.raises(BackendError, match="CUDA error 2 .*cudaErrorMemoryAllocation.*fake"):
        cuda_call((Err(2), None))
    assert cuda_call((0, 7)) == 7 and cuda_call((0,)) is None and cuda_call((0, 1, 2)) == (1, 2)
