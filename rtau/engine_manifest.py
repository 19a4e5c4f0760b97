"""Engine files and their manifests: names, paths, reading, the contract they embed.

Run: `manifest = read_engine_manifest("engines/model-rtx-1.2.engine")`, then
`contract_from_manifest(manifest)`. Shared by the engine builder (`rtau.engine_build`, which
writes them) and the TensorRT backend (`rtau.backends.tensorrt`, which runs them), so the
runtime never imports the builder. An engine `NAME.engine` has its manifest `NAME.json` and
TensorRT-RTX's runtime cache `NAME.runtime.cache` beside it; the manifest is JSON with
`format` == ENGINE_FORMAT. Pure Python: no TensorRT import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rtau.contract import (
    ALIGNMENT_FIVE_POINT,
    INPUT_IMAGE,
    PRECISION_FP16_CNN,
    ContractError,
    ModelContract,
)
from rtau.errors import RtauError

ENGINE_FORMAT = "rtau.engine/1"
ENGINE_SUFFIX = ".engine"
ENGINE_MANIFEST_SUFFIX = ".json"
RUNTIME_CACHE_SUFFIX = ".runtime.cache"
ENGINES_DIR = Path("engines")
"""Default folder for engines, relative to the working directory (a checkout's `engines/`)."""

FLAVOUR_MODULES = {"tensorrt": "tensorrt", "rtx": "tensorrt_rtx"}
FLAVOUR_PACKAGES = {"tensorrt": "tensorrt", "rtx": "tensorrt-rtx"}
FLAVOUR_EXTRAS = {"tensorrt": "rtau[trt]", "rtx": "rtau[rtx]"}


class EngineManifestError(RtauError):
    """An engine's manifest is missing, unreadable, foreign or has no valid contract."""


@dataclass(frozen=True)
class Flavour:
    """An importable TensorRT: 'tensorrt' (10/11, datacenter GPUs) or 'rtx' (TensorRT-RTX)."""

    name: str
    version: str

    @property
    def module_name(self) -> str:
        return FLAVOUR_MODULES[self.name]

    @property
    def package(self) -> str:
        return FLAVOUR_PACKAGES[self.name]

    def to_json(self) -> dict:
        return {"flavour": self.name, "package": self.package, "module": self.module_name,
                "version": self.version}


def default_engine_path(model_path: Path, flavour: Flavour) -> Path:
    """engines/<model stem>-<flavour>-<version>.engine (engines are version specific)."""
    return ENGINES_DIR / f"{model_path.stem}-{flavour.name}-{flavour.version}{ENGINE_SUFFIX}"


def engine_manifest_path(engine_path: str | os.PathLike) -> Path:
    """The manifest of an engine: same folder and stem, `.json`."""
    return Path(engine_path).with_suffix(ENGINE_MANIFEST_SUFFIX)


def runtime_cache_path(engine_path: str | os.PathLike) -> Path:
    return Path(engine_path).with_suffix(RUNTIME_CACHE_SUFFIX)


def read_engine_manifest(engine_path: str | os.PathLike) -> dict:
    """The JSON manifest beside an engine; EngineManifestError if missing, corrupt or foreign."""
    path = engine_manifest_path(engine_path)
    if not path.is_file():
        raise EngineManifestError(f"{engine_path} has no manifest ({path} is missing): "
                                  "rebuild it with `rtau build-engine`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineManifestError(f"{path} is not a readable engine manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ENGINE_FORMAT:
        raise EngineManifestError(f"{path} is not an rtau engine manifest ('{ENGINE_FORMAT}'): "
                                  "rebuild the engine with `rtau build-engine`")
    return manifest


def contract_from_manifest(manifest: dict, source: str = "engine") -> ModelContract:
    """The step contract an engine manifest embeds (from the source ONNX's metadata), with the
    engine's precision (fp16-cnn, or fp32 for a geometry-only model). Manifests written before
    contract version 3 have no `inputs`: the image alone."""
    model = manifest.get("model", {})
    try:
        return ModelContract(
            crop_size=int(model["crop_size"]), state_size=int(model["state_size"]),
            au_names=tuple(model["au_names"]), model_version=str(model.get("model_version", "")),
            training_data=str(model.get("training_data", "")),
            precision=str(manifest.get("precision", PRECISION_FP16_CNN)),
            alignment=str(model.get("alignment", ALIGNMENT_FIVE_POINT)),
            inputs=tuple(model.get("inputs", (INPUT_IMAGE,))),
            geometry=str(model.get("geometry", "")),
        )
    except (KeyError, TypeError, ValueError, ContractError) as exc:
        raise EngineManifestError(
            f"the manifest of {source} has no valid contract ({exc})") from None
