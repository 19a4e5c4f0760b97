"""The TensorRT backend through its public constructor, on a real TensorRT-RTX engine file and
manifest, with the GPU side stood in for (no GPU here): a fake CUDA runtime (memory as ctypes
buffers, a captured graph as the list of operations recorded) and a fake engine in place of the
installed TensorRT's `Runtime`. Shown: the load path (GPU checks, validity, deserialisation,
tensor checks, one context and two graphs per bucket), each refusal in one sentence and before
the runtime is touched where it can be, padding to a bucket, pieces larger than the largest
bucket, two alternating state buffers never bound as both input and output, graphs replayed
with the addresses they were captured with, a buffer, shape and address per contract input
(image and/or geometry), and everything freed on close or on a failed load."""

from __future__ import annotations

import ctypes
import importlib.machinery
import sys
import types
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pytest

from rtau.backends import create_backend
from rtau.backends.base import BackendError
from rtau.backends.tensorrt import _Bucket

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
        self.freed: set[int] = set()
        self.recording: list | None = None
        self.launches = 0
        self.streams = 0
        self.device = DeviceProps(b"NVIDIA GeForce RTX 3090", 8, 6)

    def cudaGetDeviceProperties(self, index):  # noqa: N802 - the binding's name
        return 0, self.device

    def cudaStreamCreateWithFlags(self, flags):  # noqa: N802
        self.streams += 1
        return 0, self.streams

    def cudaStreamDestroy(self, stream):  # noqa: N802
        self.streams -= 1
        return (0,)

    def _free(self, ptr):
        assert ptr in self.buffers and ptr not in self.freed, "freed twice or never allocated"
        self.freed.add(ptr)
        return (0,)

    cudaFree = cudaFreeHost = _free

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


@dataclass
class DeviceProps:
    name: bytes
    major: int
    minor: int


def view(cuda: FakeCuda, ptr: int, dtype, shape):
    return np.frombuffer(cuda.buffers[ptr], dtype=dtype).reshape(shape)


def reference_step(images: np.ndarray | None, state: np.ndarray, num_aus: int = AUS,
                   geometry: np.ndarray | None = None):
    """What the fake engine computes: state_out = 0.5 state + row mean of the image / 255 + row
    mean of the geometry, aus = 5 sigmoid of the first num_aus state entries."""
    mean = np.zeros((state.shape[0], 1), np.float32)
    if images is not None:
        mean += images.reshape(images.shape[0], -1).astype(np.float32).mean(
            axis=1, keepdims=True) / 255.0
    if geometry is not None:
        mean += geometry.mean(axis=1, keepdims=True)
    state_out = (0.5 * state + mean).astype(np.float32)
    aus = (5.0 / (1.0 + np.exp(-state_out[:, :num_aus]))).astype(np.float32)
    return aus, state_out


class FakeContext:
    def __init__(self, cuda: FakeCuda, num_aus: int = AUS) -> None:
        self.cuda = cuda
        self.num_aus = num_aus
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
        assert set(a) == {*self.shapes, "aus", "state_out"}, "every input bound, with a shape"
        shapes, k = dict(self.shapes), self.num_aus
        state_shape = shapes["state"]

        def run():
            images = geometry = None
            if "image" in shapes:
                images = view(self.cuda, a["image"], np.uint8, shapes["image"])
            if "geometry" in shapes:
                geometry = view(self.cuda, a["geometry"], np.float32, shapes["geometry"])
            state = view(self.cuda, a["state"], np.float32, state_shape)
            aus, state_out = reference_step(images, state, k, geometry)
            view(self.cuda, a["state_out"], np.float32, state_shape)[:] = state_out
            view(self.cuda, a["aus"], np.float32, (state_shape[0], k))[:] = aus

        self.cuda.submit(run)
        return True


class FakeEngine:
    """An engine as TensorRT deserialises it: its I/O tensors, dtypes and profiles."""

    def __init__(self, cuda: FakeCuda, trt=None, profiles: int = 1, num_aus: int = AUS,
                 dtypes: dict | None = None) -> None:
        self.cuda = cuda
        self.num_aus = num_aus
        self.contexts: list[FakeContext] = []
        self.num_optimization_profiles = profiles
        if trt is not None:
            self._dtypes = dtypes or {"image": trt.DataType.UINT8, "state": trt.DataType.FLOAT,
                                      "aus": trt.DataType.FLOAT, "state_out": trt.DataType.FLOAT}
            self.num_io_tensors = len(self._dtypes)

    def get_tensor_name(self, i):
        return list(self._dtypes)[i]

    def get_tensor_dtype(self, name):
        return self._dtypes[name]

    def create_execution_context(self, *args):
        self.contexts.append(FakeContext(self.cuda, self.num_aus))
        return self.contexts[-1]


@pytest.fixture
def cuda(monkeypatch):
    fake = FakeCuda()
    package = types.ModuleType("cuda")
    package.__spec__ = importlib.machinery.ModuleSpec("cuda", None)
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
    bucket = _Bucket(engine, None, profile=2, batch=4,
                     inputs={"image": ((CROP, CROP, 3), np.uint8)}, hidden=HIDDEN, num_aus=AUS,
                     stream=0)
    ctx = engine.contexts[0]
    assert ctx.profile == 2 and ctx.shapes == {"image": (4, CROP, CROP, 3), "state": (4, HIDDEN)}
    assert len(bucket._execs) == 2 and bucket.state_d[0] != bucket.state_d[1]
    state = np.random.default_rng(0).normal(size=(3, HIDDEN)).astype(np.float32)
    expected_state = state.copy()
    for t in range(5):
        images = _frames(3, t)
        slot = bucket.slot
        aus, state = bucket.run({"image": images}, state)
        want_aus, expected_state = reference_step(images, expected_state)
        np.testing.assert_allclose(aus, want_aus, rtol=1e-6)
        np.testing.assert_allclose(state, expected_state, rtol=1e-6)
        assert bucket.slot == 1 - slot
        assert aus.shape == (3, AUS) and state.shape == (3, HIDDEN)
    assert cuda.launches == 5
    bucket.close()
    assert bucket._execs == [] and bucket.context is None


class FakeRuntime:
    """Stands in for the installed TensorRT's `Runtime` (which needs a GPU to deserialise):
    says what `verdict` says about the engine, and returns `engine` for it."""

    verdict = ("VALID", 0)
    engine = None
    created = 0

    def __init__(self, logger) -> None:
        type(self).created += 1

    def get_engine_validity(self, blob):
        import tensorrt_rtx as trt

        word, diagnostics = self.verdict
        return getattr(trt.EngineValidity, word), diagnostics

    def deserialize_cuda_engine(self, blob):
        assert len(blob) > 100_000, "the real engine file's bytes"
        return self.engine


def fake_engine_for(cuda, trt, manifest: dict) -> FakeEngine:
    """A FakeEngine with the tensors, dtypes and profiles of a real engine's manifest."""
    types = {"uint8": trt.DataType.UINT8, "float32": trt.DataType.FLOAT}
    return FakeEngine(cuda, trt, profiles=len(manifest["buckets"]),
                      num_aus=len(manifest["model"]["au_names"]),
                      dtypes={name: types[io["dtype"]] for name, io in manifest["io"].items()})


@pytest.fixture
def runtime(cuda, rtx_engine, monkeypatch):
    """The installed TensorRT-RTX with FakeRuntime in place of its Runtime; engines with one
    profile per bucket of the real engine's manifest."""
    trt = pytest.importorskip("tensorrt_rtx")
    monkeypatch.setattr(trt, "Runtime", FakeRuntime)
    monkeypatch.setattr(FakeRuntime, "verdict", ("VALID", 0))
    monkeypatch.setattr(FakeRuntime, "created", 0)
    monkeypatch.setattr(FakeRuntime, "engine", fake_engine_for(cuda, trt, rtx_engine.manifest))
    return trt


def _everything_freed(cuda: FakeCuda) -> bool:
    return cuda.freed == set(cuda.buffers) and cuda.streams == 0


def test_constructor_loads_runs_pieces_and_frees(runtime, cuda, rtx_engine):
    backend = create_backend("tensorrt", rtx_engine.engine_path, runtime_cache=False)
    contract = backend.contract
    buckets = tuple(rtx_engine.manifest["buckets"])
    assert backend.buckets == buckets == (1, 2, 4, 8)
    assert backend.validity == "VALID" and "RTX 3090 sm 8.6" in backend.describe()
    contexts = FakeRuntime.engine.contexts
    assert [c.profile for c in contexts] == list(range(len(buckets)))
    assert [c.shapes["image"][0] for c in contexts] == list(buckets)
    assert cuda.launches == 0, "graphs are captured at load, not launched"
    rng = np.random.default_rng(0)
    s, h, k = contract.crop_size, contract.state_size, contract.num_aus
    images = rng.integers(0, 256, (19, s, s, 3), dtype=np.uint8)
    state = rng.normal(size=(19, h)).astype(np.float32)
    aus, state_out = backend.step(images, state)  # pieces 8 + 8 + 3 (padded to 4)
    want_aus, want_state = reference_step(images, state, k)
    np.testing.assert_allclose(aus, want_aus, rtol=1e-6)
    np.testing.assert_allclose(state_out, want_state, rtol=1e-6)
    assert cuda.launches == 3
    assert [b.slot for b in backend._buckets.values()] == [0, 0, 1, 0]  # 8 ran twice
    with pytest.raises(BackendError, match="uint8"):
        backend.step(images.astype(np.float32), state)
    backend.close()
    assert _everything_freed(cuda)


@pytest.mark.parametrize(("gpu", "refusal"), [
    (("NVIDIA H200", 9, 0), "cannot run TensorRT-RTX engines.*use --backend torch"),
    (("NVIDIA GeForce RTX 2080 Ti", 7, 5),
     r"targets compute capabilities 8\.0, 8\.6, 8\.9, 12\.0.*--compute-capability 7\.5"),
])
def test_a_gpu_the_engine_cannot_serve_is_refused_before_the_runtime(runtime, cuda, rtx_engine,
                                                                      gpu, refusal):
    cuda.device = DeviceProps(gpu[0].encode(), gpu[1], gpu[2])
    with pytest.raises(BackendError, match=refusal):
        create_backend("tensorrt", rtx_engine.engine_path)
    assert FakeRuntime.created == 0 and cuda.buffers == {}


def test_the_runtimes_own_verdict_and_a_bad_engine_are_refused(runtime, cuda, rtx_engine,
                                                               monkeypatch):
    monkeypatch.setattr(FakeRuntime, "verdict", ("INVALID", 2 | 16))
    with pytest.raises(BackendError, match=r"says .* cannot run on this NVIDIA GeForce RTX 3090 "
                       r"\(unsupported compute capability, not enough GPU memory\): rebuild"):
        create_backend("tensorrt", rtx_engine.engine_path)
    monkeypatch.setattr(FakeRuntime, "verdict", ("VALID", 0))
    monkeypatch.setattr(FakeRuntime, "engine", None)
    with pytest.raises(BackendError, match="could not load .*: rebuild with `rtau build-engine`"):
        create_backend("tensorrt", rtx_engine.engine_path)
    half = FakeEngine(cuda, runtime, profiles=4, dtypes={
        "image": runtime.DataType.HALF, "state": runtime.DataType.FLOAT,
        "aus": runtime.DataType.FLOAT, "state_out": runtime.DataType.FLOAT})
    monkeypatch.setattr(FakeRuntime, "engine", half)
    with pytest.raises(BackendError, match="has tensor dtypes .*image.*rebuild"):
        create_backend("tensorrt", rtx_engine.engine_path)
    monkeypatch.setattr(FakeRuntime, "engine", FakeEngine(cuda, runtime, profiles=2))
    with pytest.raises(BackendError, match="2 profiles, not the rtau step with buckets"):
        create_backend("tensorrt", rtx_engine.engine_path)
    assert FakeRuntime.created == 4 and _everything_freed(cuda)


@pytest.mark.parametrize("kind", ["geometry", "image+geometry"])
def test_geometry_engines_bind_and_copy_every_input(kind, runtime, cuda, rtx_engine_of,
                                                    monkeypatch):
    """A geometry model's engine gets a host and a device buffer, a shape and an address per
    contract input (geometry float32[b, G] beside or instead of the image), the geometry reaches
    the engine row by row through padding and pieces, and a missing input is refused."""
    result = rtx_engine_of(kind)
    monkeypatch.setattr(FakeRuntime, "engine", fake_engine_for(cuda, runtime, result.manifest))
    backend = create_backend("tensorrt", result.engine_path, runtime_cache=False)
    c = backend.contract
    assert c.uses_geometry and c.uses_image == (kind == "image+geometry")
    assert backend.contract.precision == result.manifest["precision"]
    assert result.manifest["precision"] in backend.describe()
    for ctx in FakeRuntime.engine.contexts:
        assert ctx.shapes["geometry"][1:] == (c.geometry_size,)
        assert ("image" in ctx.shapes) == c.uses_image
    rng = np.random.default_rng(1)
    n = 11  # 8 + 3 (padded to 4)
    images = rng.integers(0, 256, (n, c.crop_size, c.crop_size, 3), dtype=np.uint8) \
        if c.uses_image else None
    geometry = rng.uniform(-0.4, 0.4, (n, c.geometry_size)).astype(np.float32)
    state = rng.normal(size=(n, c.state_size)).astype(np.float32)
    aus, state_out = backend.step(images, state, geometry)
    want_aus, want_state = reference_step(images, state, c.num_aus, geometry)
    np.testing.assert_allclose(aus, want_aus, rtol=1e-5)
    np.testing.assert_allclose(state_out, want_state, rtol=1e-5)
    with pytest.raises(BackendError, match="needs the geometry input"):
        backend.step(images, state, None)
    backend.close()
    assert _everything_freed(cuda)


def test_an_engine_without_the_contracts_geometry_input_is_refused(runtime, cuda, rtx_engine_of,
                                                                    monkeypatch):
    result = rtx_engine_of("image+geometry")
    image_only = FakeEngine(cuda, runtime, profiles=len(result.manifest["buckets"]))
    monkeypatch.setattr(FakeRuntime, "engine", image_only)
    with pytest.raises(BackendError, match=r"has tensors \['aus', 'image', 'state', "
                                           r"'state_out'\].*rebuild"):
        create_backend("tensorrt", result.engine_path, runtime_cache=False)
    assert _everything_freed(cuda)


def test_cuda_errors_become_backend_errors(cuda):
    from rtau.backends.tensorrt import cuda_call

    class Err(int):
        name = "cudaErrorMemoryAllocation"

    with pytest.raises(BackendError, match="CUDA error 2 .*cudaErrorMemoryAllocation.*fake"):
        cuda_call((Err(2), None))
    assert cuda_call((0, 7)) == 7 and cuda_call((0,)) is None and cuda_call((0, 1, 2)) == (1, 2)
