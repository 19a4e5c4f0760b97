"""TensorRT backend: runs an engine from `rtau build-engine` (full TensorRT or TensorRT-RTX).

Run: `TensorRTBackend("engines/default-rtx-1.7.1.116.engine").step(images, state, geometry)`
or `--backend tensorrt --model ENGINE`; given a contract ONNX instead, it looks for the engine
that `rtau build-engine` writes for it by default and checks that the engine was built from
exactly that file (sha256). See `rtau.backends.base` for shapes: the engine takes the per-face
inputs its manifest's contract lists (image uint8[B, S, S, 3] and/or geometry float32[B, G])
and state float32[B, H].

Before anything touches the GPU, the engine's manifest must fit: its TensorRT flavour installed
at the same version, this GPU's compute capability among its targets; then the runtime's own
`get_engine_validity` must not say INVALID. Otherwise the backend refuses in one sentence that
ends in "rebuild with `rtau build-engine`" (or, on a GPU that flavour cannot run at all, names
the backend that can).

Running uses only numpy, the TensorRT runtime and cuda-python (`cuda.bindings.runtime`), in the
style of NVIDIA's samples: one stream; per batch bucket (one optimisation profile each) an
execution context, a device buffer and a pinned host buffer per input and output, and two
state buffers used in alternation, so a step's `state` input and `state_out` output are never
the same buffer; tensor addresses set with `set_tensor_address` and one CUDA graph captured
per bucket and state slot (copy in, `execute_async_v3`, copy out). A batch is padded up to its
bucket; batches larger than the largest bucket run in pieces. TensorRT-RTX compiles kernels on
first use; they are kept in the runtime cache file beside the engine and loaded on the next start.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtau.backends.base import Backend, BackendError
from rtau.backends.buckets import chunks
from rtau.contract import (
    INPUT_STATE,
    OUTPUT_AUS,
    OUTPUT_STATE,
    ModelContract,
    io_spec,
    sha256_file,
)
from rtau.engine_manifest import (
    FLAVOUR_EXTRAS,
    FLAVOUR_MODULES,
    FLAVOUR_PACKAGES,
    EngineManifestError,
    Flavour,
    contract_from_manifest,
    default_engine_path,
    read_engine_manifest,
    runtime_cache_path,
)

REBUILD = "rebuild with `rtau build-engine`"
RTX_RUNS_ON = "RTX-class GPUs (compute capability 7.5, 8.0, 8.6, 8.9, 12.x)"
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
"""Compute capabilities TensorRT-RTX can build for at all: not Volta, not Hopper (9.0)."""
INVALIDITY_REASONS = {
    1: "TensorRT version mismatch", 2: "unsupported compute capability",
    4: "CUDA driver too old", 8: "CUDA runtime too old", 16: "not enough GPU memory",
    32: "malformed engine", 64: "CUDA error",
}
"""Bits of TensorRT-RTX's EngineInvalidityDiagnostics."""
CUDA_STREAM_NON_BLOCKING = 1
STATE_SLOTS = (0, 1)
"""Slot s reads state buffer s and writes buffer 1 - s; each slot has its own graph."""


@dataclass(frozen=True)
class GpuInfo:
    """CUDA device 0 as cuda-python sees it."""

    name: str
    compute_capability: str


def cuda_call(result):
    """cuda-python returns (error, *values): raise BackendError on error, else the value(s)."""
    err, *values = result
    if int(err) != 0:
        from cuda.bindings import runtime as cudart

        _, text = cudart.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise BackendError(f"CUDA error {int(err)} ({getattr(err, 'name', err)}): {text}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu() -> GpuInfo:
    """Device 0's name and compute capability; BackendError when CUDA is not usable here."""
    if importlib.util.find_spec("cuda") is None:
        raise BackendError("the tensorrt backend needs cuda-python (pip install 'rtau[gpu]')")
    try:
        from cuda.bindings import runtime as cudart

        props = cuda_call(cudart.cudaGetDeviceProperties(0))
    except BackendError as exc:
        raise BackendError(f"no usable CUDA GPU for the tensorrt backend ({exc})") from None
    except Exception as exc:  # the bindings raise from their loader when no driver exists
        raise BackendError(f"no usable CUDA GPU for the tensorrt backend "
                           f"({' '.join(str(exc).split())})") from None
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
    return GpuInfo(str(name).strip("\x00 "), f"{props.major}.{props.minor}")


def installed_flavour(name: str) -> Flavour | None:
    """The installed TensorRT of flavour `name` ('tensorrt' or 'rtx'), or None."""
    module_name = FLAVOUR_MODULES[name]
    if importlib.util.find_spec(module_name) is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except Exception:  # a broken install (missing shared libraries)
        return None
    return Flavour(name, str(module.__version__))


def check_engine_fits(manifest: dict, installed: Flavour | None, gpu: GpuInfo | None,
                      source: str = "engine") -> None:
    """Refuse (BackendError) an engine that cannot run with this runtime on this GPU.

    installed: the installed TensorRT of the manifest's flavour (None: not installed).
    gpu: this machine's GPU (None: skip the GPU checks).
    """
    trt_info = manifest.get("tensorrt", {})
    flavour = trt_info.get("flavour")
    if flavour not in FLAVOUR_MODULES:
        raise BackendError(f"{source} names an unknown TensorRT flavour {flavour!r}: {REBUILD}")
    built = f"{FLAVOUR_PACKAGES[flavour]} {trt_info.get('version')}"
    if installed is None:
        raise BackendError(f"{source} was built with {built}, which is not installed here "
                           f"(pip install '{FLAVOUR_EXTRAS[flavour]}'), or {REBUILD}")
    if installed.version != trt_info.get("version"):
        raise BackendError(f"{source} was built with {built} but {installed.package} "
                           f"{installed.version} is installed: {REBUILD}")
    if gpu is None:
        return
    if flavour == "rtx" and gpu.compute_capability not in RTX_COMPUTE_CAPABILITIES:
        raise BackendError(
            f"{gpu.name} (compute capability {gpu.compute_capability}) cannot run TensorRT-RTX "
            f"engines, which run on {RTX_RUNS_ON}: use --backend torch here, or full TensorRT "
            "(`rtau build-engine --target tensorrt`)")
    targets = manifest.get("targets", {}).get("compute_capabilities", [])
    if gpu.compute_capability not in targets:
        raise BackendError(
            f"{source} targets compute capabilities {', '.join(targets) or 'none'}, not this "
            f"{gpu.name} ({gpu.compute_capability}): {REBUILD} --compute-capability "
            f"{gpu.compute_capability}")


def describe_invalidity(diagnostics: int) -> str:
    """TensorRT-RTX's diagnostics bitmask as words."""
    reasons = [text for bit, text in INVALIDITY_REASONS.items() if int(diagnostics) & bit]
    return ", ".join(reasons) or "no reason given"


def engine_validity(engine_path: str | os.PathLike) -> str:
    """The installed runtime's verdict on an engine for this GPU, e.g. 'INVALID (unsupported
    compute capability)'; 'unchecked' where the runtime has no `get_engine_validity`."""
    manifest = read_engine_manifest(engine_path)
    name = manifest.get("tensorrt", {}).get("flavour", "")
    flavour = installed_flavour(name) if name in FLAVOUR_MODULES else None
    if flavour is None:
        raise BackendError(f"the TensorRT that built {engine_path} is not installed here")
    trt = importlib.import_module(flavour.module_name)
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if not hasattr(runtime, "get_engine_validity"):
        return "unchecked"
    validity, diagnostics = runtime.get_engine_validity(Path(engine_path).read_bytes())
    word = str(validity).rsplit(".", 1)[-1]
    return word if word == "VALID" else f"{word} ({describe_invalidity(diagnostics)})"


def resolve_engine(model_path: Path) -> Path:
    """An engine path as given; for a contract ONNX, the engine built from it by default."""
    if model_path.suffix != ".onnx":
        return model_path
    if not model_path.is_file():
        raise BackendError(f"model file not found: {model_path}")
    onnx_sha = sha256_file(model_path)
    tried = []
    for name in FLAVOUR_MODULES:
        flavour = installed_flavour(name)
        if flavour is None:
            continue
        candidate = default_engine_path(model_path, flavour)
        tried.append(str(candidate))
        if not candidate.is_file():
            continue
        try:
            manifest = read_engine_manifest(candidate)
        except EngineManifestError:
            continue
        if manifest.get("source_onnx_sha256") == onnx_sha:
            return candidate
    where = f" (looked for {', '.join(tried)})" if tried else " (no TensorRT is installed)"
    raise BackendError(f"no engine built from {model_path}{where}: run `rtau build-engine "
                       f"--model {model_path}`, or pass --model ENGINE")


def _host_array(shape: tuple[int, ...], dtype) -> tuple[int, np.ndarray]:
    """(pointer, numpy view) of page-locked host memory, so copies can run asynchronously."""
    from cuda.bindings import runtime as cudart

    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    ptr = cuda_call(cudart.cudaMallocHost(nbytes))
    view = np.frombuffer((ctypes.c_byte * nbytes).from_address(ptr), dtype=dtype)
    return ptr, view.reshape(shape)


def input_specs(contract: ModelContract) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (per-row shape, numpy dtype)} of the contract's per-face inputs, in order:
    image ((S, S, 3), uint8), geometry ((G,), float32)."""
    spec = io_spec(contract)
    return {name: (tuple(spec[name]["shape"][1:]), np.dtype(spec[name]["dtype"]))
            for name in contract.inputs}


class _Bucket:
    """Everything one batch bucket needs: a context bound to its profile, buffers, two graphs.

    inputs: {name: (per-row shape, dtype)} of the engine's per-face inputs (`input_specs`); each
    gets a pinned host buffer and a device buffer [batch, *shape].
    """

    def __init__(self, engine, runtime_config, profile: int, batch: int,
                 inputs: dict[str, tuple[tuple[int, ...], np.dtype]], hidden: int,
                 num_aus: int, stream) -> None:
        from cuda.bindings import runtime as cudart

        self.batch = batch
        self.slot = 0
        self._stream = stream
        self._host: list[int] = []
        self._device: list[int] = []
        self._graphs: list = []
        self._execs: list = []
        if runtime_config is not None:
            self.context = engine.create_execution_context(runtime_config)
        else:
            self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT could not create an execution context for batch {batch}")
        self.context.set_optimization_profile_async(profile, int(stream))
        for name, (shape, _) in inputs.items():
            self.context.set_input_shape(name, (batch, *shape))
        self.context.set_input_shape(INPUT_STATE, (batch, hidden))

        def host(shape, dtype):
            ptr, view = _host_array(shape, dtype)
            self._host.append(ptr)
            return ptr, view

        def device(nbytes):
            ptr = cuda_call(cudart.cudaMalloc(nbytes))
            self._device.append(ptr)
            return ptr

        # name -> (host pointer, host view, device pointer); padded rows start as zeros.
        self.inputs = {}
        for name, (shape, dtype) in inputs.items():
            ptr, array = host((batch, *shape), dtype)
            array[:] = 0
            self.inputs[name] = (ptr, array, device(array.nbytes))
        self.state_h, self.state_view = host((batch, hidden), np.float32)
        self.aus_h, self.aus_view = host((batch, num_aus), np.float32)
        self.state_out_h, self.state_out_view = host((batch, hidden), np.float32)
        self.state_view[:] = 0.0
        self.aus_d = device(self.aus_view.nbytes)
        # Two state buffers: slot s reads state_d[s] and writes state_d[1 - s].
        self.state_d = (device(self.state_view.nbytes), device(self.state_view.nbytes))
        for slot in STATE_SLOTS:
            self._capture(slot)

    def _bind(self, slot: int) -> None:
        ctx = self.context
        for name, (_, _, dev) in self.inputs.items():
            ctx.set_tensor_address(name, dev)
        ctx.set_tensor_address(INPUT_STATE, self.state_d[slot])
        ctx.set_tensor_address(OUTPUT_STATE, self.state_d[1 - slot])
        ctx.set_tensor_address(OUTPUT_AUS, self.aus_d)

    def _enqueue(self, slot: int) -> None:
        from cuda.bindings import runtime as cudart

        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        s = self._stream
        for host_ptr, array, dev in self.inputs.values():
            cuda_call(cudart.cudaMemcpyAsync(dev, host_ptr, array.nbytes, h2d, s))
        cuda_call(cudart.cudaMemcpyAsync(self.state_d[slot], self.state_h,
                                         self.state_view.nbytes, h2d, s))
        if not self.context.execute_async_v3(int(s)):
            raise BackendError(f"TensorRT failed to enqueue the step (batch {self.batch})")
        cuda_call(cudart.cudaMemcpyAsync(self.aus_h, self.aus_d, self.aus_view.nbytes, d2h, s))
        cuda_call(cudart.cudaMemcpyAsync(self.state_out_h, self.state_d[1 - slot],
                                         self.state_out_view.nbytes, d2h, s))

    def _capture(self, slot: int) -> None:
        from cuda.bindings import runtime as cudart

        self._bind(slot)
        # One eager run first: TensorRT finishes shape-dependent setup (and TensorRT-RTX compiles
        # its kernels) on the first enqueue, which must not happen inside a capture.
        self._enqueue(slot)
        cuda_call(cudart.cudaStreamSynchronize(self._stream))
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(cudart.cudaStreamBeginCapture(self._stream, mode))
        try:
            self._enqueue(slot)
        finally:
            graph = cuda_call(cudart.cudaStreamEndCapture(self._stream))
        self._graphs.append(graph)
        self._execs.append(cuda_call(cudart.cudaGraphInstantiate(graph, 0)))

    def run(self, inputs: dict[str, np.ndarray], state: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of one piece ({name: [n, ...]}, state [n, H], n <= batch): pad, launch this
        slot's graph, wait, copy out. Padded input rows keep earlier values (finite)."""
        from cuda.bindings import runtime as cudart

        n = state.shape[0]
        for name, array in inputs.items():
            self.inputs[name][1][:n] = array
        self.state_view[:n] = state
        self.state_view[n:] = 0.0  # padded rows: any finite input, their outputs are dropped
        cuda_call(cudart.cudaGraphLaunch(self._execs[self.slot], self._stream))
        cuda_call(cudart.cudaStreamSynchronize(self._stream))
        self.slot ^= 1
        return self.aus_view[:n].copy(), self.state_out_view[:n].copy()

    def close(self) -> None:
        from cuda.bindings import runtime as cudart

        for graph_exec in self._execs:
            cudart.cudaGraphExecDestroy(graph_exec)
        for graph in self._graphs:
            cudart.cudaGraphDestroy(graph)
        for ptr in self._device:
            cudart.cudaFree(ptr)
        for ptr in self._host:
            cudart.cudaFreeHost(ptr)
        self._execs, self._graphs, self._device, self._host = [], [], [], []
        self.context = None


class TensorRTBackend(Backend):
    """Contract step engine on TensorRT / TensorRT-RTX with CUDA graphs (see module docstring).

    model_path: an engine from `rtau build-engine` (its `.json` manifest beside it), or the
      contract ONNX it was built from (its default engine path is used).
    runtime_cache: TensorRT-RTX only: load and save compiled kernels beside the engine.
    """

    name = "tensorrt"

    def __init__(self, model_path: str | os.PathLike, runtime_cache: bool = True) -> None:
        path = resolve_engine(Path(model_path))
        if not path.is_file():
            raise BackendError(f"engine file not found: {path}")
        try:
            manifest = read_engine_manifest(path)
            contract = contract_from_manifest(manifest, str(path))
        except EngineManifestError as exc:
            raise BackendError(str(exc)) from None
        flavour_name = manifest.get("tensorrt", {}).get("flavour", "")
        installed = installed_flavour(flavour_name) if flavour_name in FLAVOUR_MODULES else None
        check_engine_fits(manifest, installed, None, str(path))
        gpu = current_gpu()
        check_engine_fits(manifest, installed, gpu, str(path))
        super().__init__(contract)
        self.model_path = path
        self.manifest = manifest
        self.flavour = installed
        self.gpu = gpu
        self.buckets = tuple(int(b) for b in manifest["buckets"])
        self._buckets: dict[int, _Bucket] = {}
        self._stream = None
        self._cache = None
        self._cache_path = runtime_cache_path(path) if runtime_cache else None
        try:
            self._load(path)
        except BaseException:
            self.close()
            raise

    def _load(self, path: Path) -> None:
        from cuda.bindings import runtime as cudart

        trt = importlib.import_module(self.flavour.module_name)
        self._trt = trt
        logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(logger)
        blob = path.read_bytes()
        if hasattr(self._runtime, "get_engine_validity"):
            validity, diagnostics = self._runtime.get_engine_validity(blob)
            self.validity = str(validity).rsplit(".", 1)[-1]
            if validity == trt.EngineValidity.INVALID:
                raise BackendError(
                    f"{self.flavour.package} says {path} cannot run on this {self.gpu.name} "
                    f"({describe_invalidity(diagnostics)}): {REBUILD}")
        else:
            self.validity = "unchecked"
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise BackendError(f"{self.flavour.package} could not load {path}: {REBUILD}")
        self._check_engine_io()
        self._stream = cuda_call(cudart.cudaStreamCreateWithFlags(CUDA_STREAM_NON_BLOCKING))
        config = self._runtime_config()
        c = self.contract
        specs = input_specs(c)
        for profile, batch in enumerate(self.buckets):
            self._buckets[batch] = _Bucket(self._engine, config, profile, batch, specs,
                                           c.state_size, c.num_aus, self._stream)

    def _runtime_config(self):
        """TensorRT-RTX: a runtime config whose runtime cache is loaded from the cache file."""
        if self._cache_path is None or not hasattr(self._engine, "create_runtime_config"):
            return None
        config = self._engine.create_runtime_config()
        if not hasattr(config, "create_runtime_cache"):
            return config
        self._cache = config.create_runtime_cache()
        if self._cache_path.is_file():
            # A cache from another GPU or version is rejected by deserialize and rebuilt.
            self._cache.deserialize(self._cache_path.read_bytes())
        config.set_runtime_cache(self._cache)
        return config

    def _check_engine_io(self) -> None:
        trt = self._trt
        types = {"uint8": trt.DataType.UINT8, "float32": trt.DataType.FLOAT}
        spec = io_spec(self.contract)
        expected = {name: types[spec[name]["dtype"]]
                    for name in (*self.contract.inputs, INPUT_STATE, OUTPUT_AUS, OUTPUT_STATE)}
        engine = self._engine
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != set(expected) or engine.num_optimization_profiles != len(self.buckets):
            raise BackendError(f"{self.model_path} has tensors {sorted(names)} and "
                               f"{engine.num_optimization_profiles} profiles, not the rtau step "
                               f"with buckets {self.buckets}: {REBUILD}")
        wrong = {n: str(engine.get_tensor_dtype(n)) for n, d in expected.items()
                 if engine.get_tensor_dtype(n) != d}
        if wrong:
            raise BackendError(f"{self.model_path} has tensor dtypes {wrong}: {REBUILD}")

    def _run(self, inputs: dict[str, np.ndarray], state: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        parts = [self._buckets[bucket].run({k: v[a:b] for k, v in inputs.items()}, state[a:b])
                 for a, b, bucket in chunks(state.shape[0], self.buckets)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def describe(self) -> str:
        return (f"tensorrt ({self.flavour.package} {self.flavour.version}, {self.gpu.name} "
                f"sm {self.gpu.compute_capability}, {self.contract.precision}, CUDA graphs, "
                f"buckets {','.join(map(str, self.buckets))}, validity {self.validity}) engine "
                f"{self.model_path.name} v{self.contract.model_version}")

    def _save_runtime_cache(self) -> None:
        if self._cache is None or self._cache_path is None:
            return
        blob = self._cache.serialize()
        if blob is None or blob.nbytes == 0:
            return
        tmp = self._cache_path.with_name(f".{self._cache_path.name}.tmp")
        try:
            tmp.write_bytes(memoryview(blob))
            os.replace(tmp, self._cache_path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only engines folder only costs a recompile

    def close(self) -> None:
        from cuda.bindings import runtime as cudart

        if self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        self._save_runtime_cache()
        for bucket in self._buckets.values():
            bucket.close()
        self._buckets = {}
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._engine = None
        self._cache = None

