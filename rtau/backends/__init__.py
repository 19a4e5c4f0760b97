"""Backends that run the stateful step: registry and factory.

`create_backend(name, model_path)` builds one by name; `available_backends()` lists those whose
dependencies import here. Backends are imported lazily: asking for `onnxruntime` never imports
TensorRT or torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from rtau.backends.base import Backend, BackendError

BACKEND_NAMES = ("onnxruntime", "tensorrt", "torch")
_MODULES = {
    "onnxruntime": ("rtau.backends.onnxruntime", "OnnxRuntimeBackend", ("onnxruntime",)),
    "tensorrt": ("rtau.backends.tensorrt", "TensorRTBackend", ("cuda",)),
    "torch": ("rtau.backends.torch", "TorchBackend", ("torch", "onnx")),
}


def backend_importable(name: str) -> bool:
    """True if the backend's module exists and its third-party dependencies are installed."""
    module, _, deps = _MODULES[name]
    if importlib.util.find_spec(module) is None:
        return False
    return all(importlib.util.find_spec(dep) is not None for dep in deps)


def available_backends() -> list[str]:
    """Names of backends whose code and dependencies are present (not whether a GPU is)."""
    return [name for name in BACKEND_NAMES if backend_importable(name)]


def create_backend(name: str, model_path: str | os.PathLike, **kwargs) -> Backend:
    """Instantiate backend `name` on `model_path`; BackendError with a clear reason otherwise."""
    if name not in _MODULES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    module_name, class_name, _ = _MODULES[name]
    if importlib.util.find_spec(module_name) is None:
        raise BackendError(f"the {name} backend is not part of this rtau installation")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(model_path, **kwargs)


__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendError",
    "available_backends",
    "backend_importable",
    "create_backend",
]
