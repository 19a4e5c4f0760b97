"""The backend interface: one stateful step of a contract model, whatever runs it.

A backend holds a compiled or loaded step model and exposes:

- `contract`: the `rtau.contract.ModelContract` (S, H, K, AU names, inputs) read from the model;
- `init_state(n) -> float32[n, H]`: the state of n new faces (zeros);
- `step(images uint8[B, S, S, 3] BGR | None, state float32[B, H], geometry float32[B, G] | None)
  -> (aus float32[B, K], state float32[B, H])`:
  one timestep for B faces; rows are independent; the returned arrays belong to the caller.
  `images` and `geometry` are given exactly when `contract.inputs` lists them (None otherwise);
  subclasses get them as `inputs: {name: array}` in `_run(inputs, state)`;
- `name` and `describe()`: a short id (`onnxruntime`, `tensorrt`, `torch`) and a one-line
  human description (device, precision, provider).

Backends are registered by name in `rtau.backends` and imported lazily, so that a missing
optional dependency (TensorRT, torch, cuda-python) only matters when that backend is asked for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from rtau.closing import Closing
from rtau.contract import INPUT_GEOMETRY, INPUT_IMAGE, ModelContract


class BackendError(RuntimeError):
    """A backend cannot be created or run; the message is one readable sentence."""


def face_inputs(contract: ModelContract, images: np.ndarray | None,
                geometry: np.ndarray | None) -> dict[str, np.ndarray]:
    """{input name: contiguous array} of the inputs the contract lists, in its order; BackendError
    (one sentence) for a missing, unexpected or mis-shaped input or differing batch sizes."""
    s, g = contract.crop_size, contract.geometry_size
    given = {INPUT_IMAGE: images, INPUT_GEOMETRY: geometry}
    expected = {INPUT_IMAGE: (np.uint8, (s, s, 3), f"uint8[B, {s}, {s}, 3]"),
                INPUT_GEOMETRY: (np.float32, (g,), f"float32[B, {g}]")}
    out = {}
    for name, array in given.items():
        if name not in contract.inputs:
            if array is not None:
                raise BackendError(f"this model takes no {name} input (it takes "
                                   f"{', '.join(contract.inputs)})")
            continue
        dtype, shape, text = expected[name]
        if array is None:
            raise BackendError(f"this model needs the {name} input, {text}")
        if array.dtype != dtype or array.shape[1:] != shape:
            raise BackendError(f"{name} must be {text}, got {array.dtype}{list(array.shape)}")
        out[name] = np.ascontiguousarray(array)
    batches = {name: a.shape[0] for name, a in out.items()}
    if len(set(batches.values())) > 1:
        raise BackendError(f"inputs have different batch sizes: {batches}")
    return out


class Backend(Closing, ABC):
    """Abstract stateful-step backend. Subclasses set `name` and implement `_run`."""

    name: str = "abstract"

    def __init__(self, contract: ModelContract) -> None:
        self.contract = contract

    def init_state(self, n: int) -> np.ndarray:
        """Zero state for n new faces, float32[n, H]."""
        return np.zeros((n, self.contract.state_size), dtype=np.float32)

    def step(self, images: np.ndarray | None, state: np.ndarray,
             geometry: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One timestep for B faces; validates shapes/dtypes, then runs the model."""
        inputs = face_inputs(self.contract, images, geometry)
        batch = next(iter(inputs.values())).shape[0]
        h = self.contract.state_size
        if state.dtype != np.float32 or state.shape != (batch, h):
            raise BackendError(
                f"state must be float32[{batch}, {h}], got {state.dtype}{list(state.shape)}"
            )
        if batch == 0:
            return (np.zeros((0, self.contract.num_aus), np.float32), state.copy())
        return self._run(inputs, np.ascontiguousarray(state))

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray], state: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on validated, contiguous inputs ({contract input name: array})."""

    @abstractmethod
    def describe(self) -> str:
        """One line: backend, device, precision, model."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release device resources. Idempotent."""

