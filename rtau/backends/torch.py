"""Torch backend: the contract ONNX rebuilt as torch ops; FP16 CNN + FP32 cell with CUDA graphs.

Run: `TorchBackend("model.onnx").step(images, state, geometry)` or `--backend torch`; see
`rtau.backends.base` for shapes (images uint8[B, S, S, 3] and/or geometry float32[B, G], as the
model's contract lists them; state float32[B, H]). It is the fast path on NVIDIA GPUs where no
TensorRT runtime exists (Hopper with only TensorRT-RTX installed, machines without TensorRT).

The model is rebuilt from the ONNX weights by `rtau.backends.onnx_torch` (rtau never imports the
training package). On CUDA the graph runs in the engine layout (`fp16-cnn`: CNN in FP16,
geometry encoder, recurrent cell and state in FP32) with one `torch.cuda.CUDAGraph` per batch
bucket over static input/output buffers (one per model input: image uint8[b, S, S, 3],
geometry float32[b, G], state float32[b, H]), every bucket captured when the backend loads
(never in the middle of live use): a batch is padded up to the smallest bucket that holds it
(larger batches run in chunks of the largest bucket) and one step costs one graph replay plus
small copies through pinned host memory. On the CPU it runs eagerly in FP32: x86 CPUs have no
fast FP16 convolutions, so FP16 there would only be slower (`precision='fp16-cnn'` still works
on the CPU, for testing the FP16 graph without a GPU). A geometry-only model has no CNN: it
runs FP32 everywhere (`auto` picks fp32; asking for fp16-cnn is refused). torch (and onnx) are
imported when the backend is created, never at module import.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtau.backends.base import Backend, BackendError
from rtau.backends.buckets import chunks
from rtau.contract import PRECISION_FP16_CNN, PRECISION_FP32, ContractError, read_onnx_contract

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", PRECISION_FP32, PRECISION_FP16_CNN)
DEFAULT_CUDA_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
WARMUP_RUNS = 3
"""Eager runs on a side stream before capture, as torch.cuda.graph requires (cuDNN/cuBLAS
pick their algorithms and allocate workspaces outside the graph)."""


class _CudaGraphBucket:
    """Static buffers and a captured graph for one batch size (torch on CUDA).

    inputs: {name: (per-row shape, torch dtype)} of the model's per-face inputs; each gets a
    device buffer [batch, *shape] and a pinned host buffer of the same shape.
    """

    def __init__(self, graph, batch: int, inputs: dict, hidden: int, device) -> None:
        import torch

        self.batch = batch
        self.inputs = {name: torch.zeros((batch, *shape), dtype=dtype, device=device)
                       for name, (shape, dtype) in inputs.items()}
        self.host_inputs = {name: torch.zeros((batch, *shape), dtype=dtype).pin_memory()
                            for name, (shape, dtype) in inputs.items()}
        self.state = torch.zeros((batch, hidden), dtype=torch.float32, device=device)
        self.host_state = torch.zeros((batch, hidden), dtype=torch.float32).pin_memory()
        self.device = device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(WARMUP_RUNS):
                graph(self.inputs, self.state)
        torch.cuda.current_stream(device).wait_stream(side)
        self.cuda_graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.cuda_graph):
            self.aus, self.state_out = graph(self.inputs, self.state)
        self.host_aus = torch.zeros(tuple(self.aus.shape), dtype=torch.float32).pin_memory()
        self.host_state_out = torch.zeros((batch, hidden), dtype=torch.float32).pin_memory()

    def run(self, inputs: dict[str, np.ndarray], state: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of one piece ({name: array [n, ...]}, state [n, H], n <= batch): pad, replay."""
        import torch

        n = state.shape[0]
        for name, array in inputs.items():
            # Padded rows keep earlier rows' values: finite, and their outputs are dropped.
            self.host_inputs[name].numpy()[:n] = array
        host_state = self.host_state.numpy()
        host_state[:n] = state
        host_state[n:] = 0.0
        for name, buffer in self.inputs.items():
            buffer.copy_(self.host_inputs[name], non_blocking=True)
        self.state.copy_(self.host_state, non_blocking=True)
        self.cuda_graph.replay()
        self.host_aus.copy_(self.aus, non_blocking=True)
        self.host_state_out.copy_(self.state_out, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return self.host_aus.numpy()[:n].copy(), self.host_state_out.numpy()[:n].copy()


def input_buffers(contract) -> dict:
    """{name: (per-row shape, torch dtype)} of the contract's per-face inputs."""
    import torch

    from rtau.contract import io_spec

    spec = io_spec(contract)
    return {name: (tuple(spec[name]["shape"][1:]), getattr(torch, spec[name]["dtype"]))
            for name in contract.inputs}


class TorchBackend(Backend):
    """Contract step model on torch.

    device: 'auto' (CUDA if torch sees a GPU, else CPU), 'cpu' or 'cuda' (error if absent).
    precision: 'auto' (fp16-cnn on CUDA for a model with a CNN, else fp32), 'fp32' or
      'fp16-cnn' (models that take the image only).
    buckets: batch sizes with their own CUDA graph (CUDA only); default 1, 2, 4, ..., 128.
    cuda_graphs: capture graphs on CUDA (False: eager, for comparison).
    threads: CPU only: torch's intra-op threads, process-wide (0 = leave torch's setting). One
      thread avoids torch's spinning worker threads fighting other busy processes for cores.
    """

    name = "torch"

    def __init__(self, model_path: str | os.PathLike, device: str = "auto",
                 precision: str = "auto", buckets: tuple[int, ...] | None = None,
                 cuda_graphs: bool = True, threads: int = 0) -> None:
        try:
            import torch
        except ImportError:
            raise BackendError("the torch backend needs torch (pip install torch)") from None
        from rtau.backends.onnx_torch import OnnxTorchGraph

        path = Path(model_path)
        if device not in DEVICE_CHOICES:
            raise BackendError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
        if precision not in PRECISION_CHOICES:
            raise BackendError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
        if path.suffix != ".onnx" and path.is_file():
            raise BackendError(f"the torch backend runs a contract ONNX, not {path.name} "
                               "(engines run on --backend tensorrt)")
        try:
            contract = read_onnx_contract(path)
        except ContractError as exc:
            raise BackendError(str(exc)) from None
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA GPU here (a CPU build of torch, or no driver); "
                               "use --backend onnxruntime")
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if precision == "auto":
            precision = PRECISION_FP16_CNN if use_cuda and contract.uses_image else PRECISION_FP32
        if threads > 0 and not use_cuda:
            torch.set_num_threads(threads)
        super().__init__(contract)
        self.model_path = path
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.precision = precision
        self.graph = OnnxTorchGraph.load(path, self.device, precision)
        self.buckets = tuple(sorted(set(buckets or DEFAULT_CUDA_BUCKETS)))
        if not self.buckets or self.buckets[0] < 1:
            raise BackendError(f"buckets must be positive batch sizes, got {buckets}")
        self.cuda_graphs = bool(cuda_graphs and use_cuda)
        # Every bucket is captured now: a capture on first use would be a latency spike the
        # first time a number of faces appears in live use.
        self._graphs: dict[int, _CudaGraphBucket] = {}
        if self.cuda_graphs:
            for batch in self.buckets:
                self._graphs[batch] = _CudaGraphBucket(
                    self.graph, batch, input_buffers(contract), contract.state_size, self.device)

    def _run(self, inputs: dict[str, np.ndarray], state: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        if self.cuda_graphs:
            parts = [self._graphs[bucket].run({k: v[a:b] for k, v in inputs.items()}, state[a:b])
                     for a, b, bucket in chunks(state.shape[0], self.buckets)]
            if len(parts) == 1:
                return parts[0]
            return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return self._eager(inputs, state)

    def _eager(self, inputs: dict[str, np.ndarray], state: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
            state_t = torch.from_numpy(state).to(self.device)
            aus, state_out = self.graph(tensors, state_t)
            return (aus.float().cpu().numpy().copy(), state_out.float().cpu().numpy().copy())

    def describe(self) -> str:
        if self.device.type == "cuda":
            import torch

            where = f"cuda {torch.cuda.get_device_name(self.device)}"
            how = (f"CUDA graphs, buckets {','.join(map(str, self.buckets))}"
                   if self.cuda_graphs else "eager")
        else:
            where, how = "cpu", "eager"
        return (f"torch ({where}, {self.precision}, {how}) model {self.model_path.name} "
                f"v{self.contract.model_version}")

    def close(self) -> None:
        self._graphs.clear()
        self.graph = None
