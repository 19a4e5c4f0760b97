"""Shared pytest set-up.

- The `gpu` marker skips cleanly on machines without an NVIDIA GPU.
- `tiny_model` / `tiny_onnx`: a small randomised model and its contract ONNX exported with
  `train.export` (torch is imported lazily, so runtime-only test runs do not need it).
- `tiny_onnx_of(kind)`: the same for each input kind of `TINY_KINDS` (image, geometry,
  image+geometry), each exported once per session; "image" is `tiny_onnx`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest


def _has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


HAS_GPU = _has_nvidia_gpu()


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none found by nvidia-smi)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def default_sigint() -> None:
    """preexec_fn of a subprocess a test interrupts with SIGINT: Ctrl-C's default handling.

    A shell that starts the suite as a background job ignores SIGINT in it, children inherit
    that, and Python then never raises KeyboardInterrupt: the interrupted command would run to
    its end. A user's Ctrl-C reaches a foreground process, which is what these tests mean.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def randomised_model(cfg, seed: int = 0):
    """An AUModel with non-trivial BN statistics, so parity tests exercise the folded BN."""
    import torch

    from train.model import AUModel

    torch.manual_seed(seed)
    model = AUModel(cfg)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    pytest.importorskip("torch")
    from train.model import ModelConfig

    return randomised_model(ModelConfig.tiny())


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory):
    from train.export import ExportConfig, export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path, _ = export_onnx(tiny_model, out, ExportConfig(parity_steps=20))
    return path


TINY_KINDS = ("image", "geometry", "image+geometry")
"""`train.model.ModelConfig.inputs` values: the three kinds of step model."""


@pytest.fixture(scope="session")
def tiny_onnx_of(request, tmp_path_factory):
    """kind -> Path of the tiny model's contract ONNX for that input kind (exported on first
    use, once per session)."""
    pytest.importorskip("torch")
    exported = {}

    def get(kind: str):
        if kind == "image":
            return request.getfixturevalue("tiny_onnx")
        if kind not in exported:
            from train.export import ExportConfig, export_onnx
            from train.model import ModelConfig

            model = randomised_model(ModelConfig.tiny(inputs=kind))
            out = tmp_path_factory.mktemp("onnx") / f"tiny-{kind.replace('+', '-')}.onnx"
            exported[kind], _ = export_onnx(model, out, ExportConfig(parity_steps=20))
        return exported[kind]

    return get
