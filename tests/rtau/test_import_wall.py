"""The import wall: the runtime package never imports torch or the training package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

RTAU_DIR = Path(__file__).resolve().parents[2] / "rtau"
LAZY_TORCH_MODULES = {"backends/torch.py", "backends/onnx_torch.py"}
"""The optional torch backend (and its ONNX interpreter) may import torch, only inside functions."""


def test_running_the_onnxruntime_backend_imports_no_torch(tiny_onnx):
    code = f"""
import sys
import numpy as np
import rtau, rtau.cli, rtau.aus, rtau.contract
from rtau.backends import create_backend
backend = create_backend("onnxruntime", {str(tiny_onnx)!r})
aus, state = backend.step(np.zeros((1, 112, 112, 3), np.uint8), backend.init_state(1))
assert aus.shape[0] == 1
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "train"))
print("BAD", bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout


@pytest.mark.parametrize("path", sorted(RTAU_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_level_torch_or_train_import(path):
    tree = ast.parse(path.read_text())
    rel = path.relative_to(RTAU_DIR).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        roots = {n.split(".")[0] for n in names}
        assert "train" not in roots, f"{rel} imports the training package"
        if "torch" in roots:
            assert rel in LAZY_TORCH_MODULES, f"{rel} imports torch"
            assert node.col_offset > 0, f"{rel} imports torch at module level"
