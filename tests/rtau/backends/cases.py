"""Shared pieces of the backend tests: tolerances, frames, the unrolled comparison, and a
helper that opens any backend on the tiny model, skipping cleanly where it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import BackendError, create_backend
from rtau.bench import shifted_batches, unrolled_parity

PARITY_STEPS = 1000
PARITY_TOLERANCE = 0.05
"""Max abs AU error over the unrolled run against ONNX Runtime FP32 (DESIGN section 6)."""


def random_frames(b: int, seed: int, crop: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, crop, crop, 3), dtype=np.uint8)


def random_state(b: int, size: int, seed: int) -> np.ndarray:
    """A non-zero recurrent state float32[b, size], so rows differ before the first step."""
    return np.random.default_rng(seed).normal(size=(b, size)).astype(np.float32)


def unrolled_max_error(backend, reference, frames: np.ndarray, batch: int = 2) -> float:
    """Max abs AU difference of two backends unrolled over `frames` uint8[T, S, S, 3] (batch rows:
    the clip shifted), through `rtau.bench.unrolled_parity`."""
    parity = unrolled_parity(backend.step, reference.step, shifted_batches(frames, batch),
                             reference.contract.state_size)
    return parity["max_abs_au_error"]


def open_backend(name: str, kwargs: dict, request) -> object:
    """create_backend on the tiny model; skip with the backend's reason where it cannot run."""
    if name == "torch":
        pytest.importorskip("torch")
    model = request.getfixturevalue("tiny_engine" if name == "tensorrt" else "tiny_onnx")
    try:
        return create_backend(name, model, **kwargs)
    except BackendError as exc:
        if name == "onnxruntime":
            raise
        pytest.skip(f"{name} cannot run here: {exc}")
