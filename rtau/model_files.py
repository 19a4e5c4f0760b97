"""Which model file rtau runs: an explicit `--model PATH`, `$RTAU_MODEL`, or the shipped default.

Run: `resolve_model(None)` -> Path of `rtau/assets/default.onnx` (or RtauError saying how to
get a model). The default model ships inside the package as `assets/default.onnx` with its
manifest `assets/default.json`; until a release carries it, `--model PATH` to a contract ONNX
(`python -m train export`) is required and its absence is one clear error.
"""

from __future__ import annotations

import os
from pathlib import Path

from rtau.errors import RtauError

MODEL_ENV = "RTAU_MODEL"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = ASSETS_DIR / "default.onnx"
DEFAULT_MANIFEST = ASSETS_DIR / "default.json"


class ModelNotFound(RtauError):
    """No model file where one was asked for, or no default model installed."""


def resolve_model(path: str | os.PathLike | None = None) -> Path:
    """The model file to load: explicit path, then $RTAU_MODEL, then the shipped default."""
    if path is not None and str(path) != "":
        chosen = Path(path).expanduser()
        if not chosen.is_file():
            raise ModelNotFound(f"model file not found: {chosen}")
        return chosen
    env = os.environ.get(MODEL_ENV, "")
    if env:
        chosen = Path(env).expanduser()
        if not chosen.is_file():
            raise ModelNotFound(f"model file not found: {chosen} (from ${MODEL_ENV})")
        return chosen
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise ModelNotFound(
        f"no default model is installed ({DEFAULT_MODEL} is missing); pass --model PATH to a "
        "contract ONNX written by `python -m train export` (or set $RTAU_MODEL)"
    )
