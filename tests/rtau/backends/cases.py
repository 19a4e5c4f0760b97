"""Shared pieces of the backend tests: tolerances, per-face inputs of each model kind, the
unrolled comparison, and a helper that opens any backend on a tiny model of a kind (image,
geometry, image+geometry), skipping cleanly where it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends import BackendError, create_backend
from rtau.bench import shifted_batches, unrolled_parity
from rtau.contract import ModelContract

PARITY_STEPS = 1000
PARITY_TOLERANCE = 0.05
"""Max abs AU error over the unrolled run against ONNX Runtime FP32 (DESIGN section 6)."""


def random_frames(b: int, seed: int, crop: int = 112) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, crop, crop, 3), dtype=np.uint8)


def random_geometry(b: int, seed: int, size: int = 956) -> np.ndarray:
    """float32[b, size] in the range of real geometry features (about -0.5..0.5)."""
    return np.random.default_rng(seed).uniform(-0.4, 0.4, (b, size)).astype(np.float32)


def random_state(b: int, size: int, seed: int) -> np.ndarray:
    """A non-zero recurrent state float32[b, size], so rows differ before the first step."""
    return np.random.default_rng(seed).normal(size=(b, size)).astype(np.float32)


def random_inputs(contract: ModelContract, b: int, seed: int) -> dict:
    """{"images": uint8[b, S, S, 3] | None, "geometry": float32[b, G] | None}: the per-face
    inputs the contract lists (None for the others), as `step` takes them."""
    return {"images": random_frames(b, seed, contract.crop_size) if contract.uses_image else None,
            "geometry": (random_geometry(b, seed, contract.geometry_size)
                         if contract.uses_geometry else None)}


def rows(inputs: dict, index) -> dict:
    """The same rows (a slice or an index array) of every given input."""
    return {k: None if v is None else v[index] for k, v in inputs.items()}


def step(backend, inputs: dict, state: np.ndarray):
    """backend.step with `random_inputs`-style inputs."""
    return backend.step(inputs["images"], state, inputs["geometry"])


def unrolled_max_error(backend, reference, frames: np.ndarray | None, batch: int = 2,
                       geometry: np.ndarray | None = None) -> float:
    """Max abs AU difference of two backends unrolled over frames uint8[T, S, S, 3] and/or
    geometry float32[T, G] (None where the model takes no such input; batch rows: the clip
    shifted), through `rtau.bench.unrolled_parity`."""
    parity = unrolled_parity(
        backend.step, reference.step, None if frames is None else shifted_batches(frames, batch),
        reference.contract.state_size,
        None if geometry is None else shifted_batches(geometry, batch))
    return parity["max_abs_au_error"]


def open_backend(name: str, kwargs: dict, request, kind: str = "image") -> object:
    """create_backend on the tiny model of `kind`; skip with the backend's reason where it
    cannot run."""
    if name == "torch":
        pytest.importorskip("torch")
    onnx_of = request.getfixturevalue("tiny_onnx_of")
    model = request.getfixturevalue("tiny_engine_of")(kind) if name == "tensorrt" \
        else onnx_of(kind)
    try:
        return create_backend(name, model, **kwargs)
    except BackendError as exc:
        if name == "onnxruntime":
            raise
        pytest.skip(f"{name} cannot run here: {exc}")
