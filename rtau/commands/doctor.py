"""`rtau doctor`: a true report of what this machine can run.

Prints Python, rtau's packages and their versions, the GPU (nvidia-smi and cuda-python), which
TensorRT flavours import, ONNX Runtime's execution providers, the backends usable here, and the
model files rtau would use (default model and `$RTAU_MODEL` with their contract: AUs, the inputs
each step takes (image uint8[B, S, S, 3] and/or geometry float32[B, G]), S, H; engines with
their precision and inputs; face landmarker). Nothing is downloaded: a model file that is not
cached yet is reported as such.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

import typer

PACKAGES = (
    "rtau", "numpy", "opencv-contrib-python", "mediapipe", "onnxruntime", "onnxruntime-gpu",
    "rich", "typer", "onnx", "tensorrt", "tensorrt-rtx", "cuda-python", "torch",
)
NVIDIA_SMI_QUERY = "name,driver_version,compute_cap,memory.total"


@dataclass(frozen=True)
class Check:
    """One line of the report: what, what was found, and whether that is fine."""

    section: str
    item: str
    value: str
    ok: bool | None = None  # None: informational


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _cuda_python() -> str:
    if importlib.util.find_spec("cuda") is None:
        return "not installed (pip install 'rtau[gpu]')"
    try:
        from cuda.bindings import driver

        (err,) = driver.cuInit(0)
        if int(err) != 0:
            return f"installed; cuInit failed ({err})"
        err, count = driver.cuDeviceGetCount()
        return f"installed; {count} CUDA device(s)"
    except Exception as exc:  # a driver-less machine raises from the binding loader
        return f"installed; CUDA driver not usable ({' '.join(str(exc).split())[:80]})"


def _tensorrt(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return "not installed"
    try:
        trt = importlib.import_module(module)
        return f"{trt.__version__} (imports)"
    except Exception as exc:
        return f"installed but does not import ({' '.join(str(exc).split())[:80]})"


def collect() -> list[Check]:
    """Everything the report shows, as data (tested without printing)."""
    checks = [
        Check("system", "python", f"{sys.version.split()[0]} ({sys.executable})",
              sys.version_info >= (3, 11)),
        Check("system", "platform", f"{platform.platform()} / {platform.machine()}"),
    ]
    for dist in PACKAGES:
        version = _version(dist)
        required = dist in ("rtau", "numpy", "opencv-contrib-python", "mediapipe",
                            "onnxruntime", "rich", "typer")
        checks.append(Check("packages", dist, version or "not installed",
                            True if version else (False if required else None)))
    if _version("opencv-python") and _version("opencv-contrib-python"):
        checks.append(Check("packages", "opencv-python", "installed beside opencv-contrib-python:"
                            " both write cv2; uninstall opencv-python", False))
    gpus = _gpus()
    checks.append(Check("gpu", "nvidia-smi", "; ".join(gpus) if gpus else "no NVIDIA GPU found"))
    checks.append(Check("gpu", "cuda-python", _cuda_python()))
    checks.append(Check("gpu", "tensorrt", _tensorrt("tensorrt")))
    checks.append(Check("gpu", "tensorrt_rtx", _tensorrt("tensorrt_rtx")))
    try:
        import onnxruntime as ort

        providers = ", ".join(ort.get_available_providers())
    except Exception as exc:
        providers = f"onnxruntime does not import ({exc})"
    checks.append(Check("gpu", "onnxruntime providers", providers))

    from rtau.backends import available_backends

    checks.append(Check("backends", "importable", ", ".join(available_backends()) or "none"))
    checks.extend(_model_checks())
    checks.append(_engine_check())
    return checks


def _engine_check() -> Check:
    """Engines in ./engines with the TensorRT each was built by (from their manifests)."""
    from rtau.engine_manifest import (
        ENGINE_SUFFIX,
        ENGINES_DIR,
        EngineManifestError,
        read_engine_manifest,
    )

    found = []
    for path in sorted(ENGINES_DIR.glob(f"*{ENGINE_SUFFIX}")):
        try:
            manifest = read_engine_manifest(path)
            trt = manifest["tensorrt"]
            inputs = "+".join(manifest.get("model", {}).get("inputs", ["image"]))
            found.append(f"{path.name} ({trt['package']} {trt['version']}, "
                         f"{manifest.get('precision', 'fp16-cnn')}, inputs {inputs})")
        except (EngineManifestError, KeyError, TypeError):
            found.append(f"{path.name} (no valid manifest)")
    return Check("models", "engines", "; ".join(found) or f"none in {ENGINES_DIR}/ "
                 "(rtau build-engine)")


def describe_contract(c) -> str:
    """A model's contract (rtau.contract.ModelContract) in words: version, AUs, inputs, sizes."""
    geometry = f", G={c.geometry_size}" if c.uses_geometry else ""
    return (f"v{c.model_version}, {c.num_aus} AUs, inputs {'+'.join(c.inputs)}, "
            f"S={c.crop_size}{geometry}, H={c.state_size}, {c.precision}")


def _model_check(item: str, path) -> Check:
    from rtau.contract import ContractError, read_onnx_contract

    try:
        c = read_onnx_contract(path)
    except ContractError as exc:
        return Check("models", item, str(exc), False)
    return Check("models", item, f"{path} ({describe_contract(c)})", True)


def _model_checks() -> list[Check]:
    from rtau.model_files import DEFAULT_MODEL as default
    from rtau.model_files import MODEL_ENV

    checks: list[Check] = []
    if default.is_file():
        checks.append(_model_check("default model", default))
    else:
        checks.append(Check("models", "default model", f"not shipped in this install ({default})",
                            None))
    chosen = os.environ.get(MODEL_ENV, "")
    if chosen:
        checks.append(_model_check(f"${MODEL_ENV}", chosen))
    from rtau.model_files import describe_face_models

    for what, where in describe_face_models().items():
        checks.append(Check("models", what, where))
    return checks


def doctor() -> None:
    """Report Python, packages, GPU / CUDA / TensorRT, backends and model files."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="rtau doctor", show_lines=False)
    for col in ("", "item", "found"):
        table.add_column(col)
    marks = {True: "[green]ok[/]", False: "[red]!![/]", None: "[dim]--[/]"}
    for check in collect():
        table.add_row(marks[check.ok], escape(f"{check.section}: {check.item}"),
                      escape(check.value))
    Console(width=160).print(table)
    raise typer.Exit(0)
