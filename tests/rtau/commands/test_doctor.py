"""`rtau doctor` reports true facts about this machine."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from typer.testing import CliRunner

from rtau.cli import app
from rtau.commands.doctor import collect


def test_collect_reports_installed_versions():
    checks = {(c.section, c.item): c for c in collect()}
    assert checks[("packages", "numpy")].value == importlib.metadata.version("numpy")
    assert checks[("packages", "onnxruntime")].ok is True
    assert "CPUExecutionProvider" in checks[("gpu", "onnxruntime providers")].value
    assert "onnxruntime" in checks[("backends", "importable")].value
    assert checks[("system", "python")].value.startswith(sys.version.split()[0])


def test_doctor_command_runs():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "rtau doctor" in result.output and "onnxruntime" in result.output


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "rtau.cli", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for command in ("live", "process", "build-engine", "bench", "doctor"):
        assert command in out.stdout


def test_a_geometry_model_in_rtau_model_is_described_with_its_inputs(tiny_onnx_of,
                                                                    monkeypatch):
    monkeypatch.setenv("RTAU_MODEL", str(tiny_onnx_of("image+geometry")))
    checks = {(c.section, c.item): c for c in collect()}
    check = checks[("models", "$RTAU_MODEL")]
    assert check.ok is True
    assert "12 AUs, inputs image+geometry, S=112, G=956, H=989, fp32" in check.value
    monkeypatch.setenv("RTAU_MODEL", "/no/such/model.onnx")
    check = {(c.section, c.item): c for c in collect()}[("models", "$RTAU_MODEL")]
    assert check.ok is False and "not found" in check.value
