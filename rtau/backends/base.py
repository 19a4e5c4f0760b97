"""The backend interface: one stateful step of a contract model, whatever runs it.

A backend holds a compiled or loaded step model and exposes:

- `contract`: the `rtau.contract.ModelContract` (S, H, K, AU names) read from the model file;
- `init_state(n) -> float32[n, H]`: the state of n new faces (zeros);
- `step(images uint8[B, S, S, 3] BGR, state float32[B, H])
  -> (aus float32[B, K], state float32[B, H])`:
  one timestep for B faces; rows are independent; the returned arrays belong to the caller;
- `name` and `describe()`: a short id (`onnxruntime`, `tensorrt`, `torch`) and a one-line
  human description (device, precision, provider).

Backends are registered by name in `rtau.backends` and imported lazily, so that a missing
optional dependency (TensorRT, torch, cuda-python) only matters when that backend is asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from rtau.closing import Closing
from rtau.contract import ModelContract


class BackendError(RuntimeError):
    """A backend cannot be created or run; the message is one readable sentence."""


class Backend(Closing, ABC):
    """Abstract stateful-step backend. Subclasses set `name` and implement `_run`."""

    name: str = "abstract"

    def __init__(self, contract: ModelContract) -> None:
        self.contract = contract

    def init_state(self, n: int) -> np.ndarray:
        """Zero state for n new faces, float32[n, H]."""
        return np.zeros((n, self.contract.state_size), dtype=np.float32)

    def step(self, images: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One timestep for B faces; validates shapes/dtypes, then runs the model."""
        s, h = self.contract.crop_size, self.contract.state_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise BackendError(
                f"images must be uint8[B, {s}, {s}, 3], got {images.dtype}{list(images.shape)}"
            )
        if state.dtype != np.float32 or state.shape != (images.shape[0], h):
            raise BackendError(
                f"state must be float32[{images.shape[0]}, {h}], "
                f"got {state.dtype}{list(state.shape)}"
            )
        if images.shape[0] == 0:
            return (np.zeros((0, self.contract.num_aus), np.float32), state.copy())
        return self._run(np.ascontiguousarray(images), np.ascontiguousarray(state))

    @abstractmethod
    def _run(self, images: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on validated, contiguous inputs."""

    @abstractmethod
    def describe(self) -> str:
        """One line: backend, device, precision, model."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release device resources. Idempotent."""

