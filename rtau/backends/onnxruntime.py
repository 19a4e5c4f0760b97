"""ONNX Runtime backend: runs a contract ONNX step model on the CPU (or CUDA when available).

Run: `OnnxRuntimeBackend("model.onnx").step(images, state)`; see `rtau.backends.base` for shapes.
The contract (S, H, K, AU names) comes from the model's metadata, never from constants. The CUDA
execution provider is used when `onnxruntime-gpu` is installed and `device` allows it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtau.backends.base import Backend, BackendError
from rtau.contract import (
    INPUT_STATE,
    OUTPUT_AUS,
    OUTPUT_STATE,
    ContractError,
    ModelContract,
    check_session_io,
)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


class OnnxRuntimeBackend(Backend):
    """Contract step model on ONNX Runtime.

    device: 'auto' (CUDA provider if present, else CPU), 'cpu' or 'cuda' (error if absent).
    threads: intra-op threads; 0 lets ONNX Runtime decide (all physical cores).
    """

    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, device: str = "auto", threads: int = 0):
        import onnxruntime as ort

        path = Path(model_path)
        if device not in DEVICE_CHOICES:
            raise BackendError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
        if not path.is_file():
            raise BackendError(f"model file not found: {path}")
        available = ort.get_available_providers()
        if device == "cuda" and CUDA_PROVIDER not in available:
            raise BackendError(
                "ONNX Runtime has no CUDA provider here (install onnxruntime-gpu instead of "
                "onnxruntime, or use --backend tensorrt / torch)"
            )
        use_cuda = device != "cpu" and CUDA_PROVIDER in available
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if use_cuda else [CPU_PROVIDER]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises private exception types
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise BackendError(f"{path} is not a readable ONNX model ({first})") from None
        try:
            contract = ModelContract.from_metadata(
                dict(session.get_modelmeta().custom_metadata_map), source=str(path)
            )
            check_session_io(session, contract, str(path))
        except ContractError as exc:
            raise BackendError(str(exc)) from None
        super().__init__(contract)
        self.model_path = path
        self._session = session
        self._providers = session.get_providers()

    def _run(self, inputs: dict[str, np.ndarray], state: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        aus, state_out = self._session.run(
            [OUTPUT_AUS, OUTPUT_STATE], {**inputs, INPUT_STATE: state}
        )
        return aus, state_out

    def describe(self) -> str:
        device = "cuda" if self._providers[0] == CUDA_PROVIDER else "cpu"
        return (
            f"onnxruntime ({device}, {self.contract.precision}) model {self.model_path.name} "
            f"v{self.contract.model_version}"
        )

    def close(self) -> None:
        self._session = None
