"""`rtau build-engine` from the command line: a real TensorRT-RTX build, the up-to-date skip,
and one-line errors with a non-zero exit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rtau.cli import app

pytest.importorskip("tensorrt_rtx")


def _run(*args):
    return CliRunner().invoke(app, ["build-engine", *map(str, args)])


def test_builds_then_skips(tiny_onnx, tmp_path):
    out = tmp_path / "eng" / "tiny.engine"
    result = _run("--model", tiny_onnx, "--out", out, "--max-batch", 4, "--buckets", "1,2",
                  "--target", "rtx", "--compute-capability", "8.6,8.9")
    assert result.exit_code == 0, result.output
    assert "built in" in result.output and "uint8[B, 112, 112, 3]" in result.output
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["buckets"] == [1, 2, 4]
    assert manifest["targets"]["compute_capabilities"] == ["8.6", "8.9"]
    again = _run("--model", tiny_onnx, "--out", out, "--max-batch", 4, "--buckets", "1,2",
                 "--target", "rtx", "--compute-capability", "8.6,8.9", "--no-progress")
    assert again.exit_code == 0 and "up to date" in again.output


def test_a_geometry_only_model_builds_fp32_and_says_so(tiny_onnx_of, tmp_path):
    out = tmp_path / "geo.engine"
    result = _run("--model", tiny_onnx_of("geometry"), "--out", out, "--max-batch", 2,
                  "--target", "rtx", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "fp32 (no CNN" in result.output and "float32[B, 956]" in result.output
    assert "uint8" not in result.output
    assert json.loads(out.with_suffix(".json").read_text())["precision"] == "fp32"


@pytest.mark.parametrize(("args", "message"), [
    (("--buckets", "1,x"), "comma-separated integers"),
    (("--compute-capability", "sm86"), "like 8.6"),
    (("--target", "cuda"), "--target must be one of"),
    (("--max-batch", 2, "--buckets", "4"), "1..--max-batch"),
])
def test_bad_flags_are_one_line_errors(tiny_onnx, tmp_path, args, message):
    result = _run("--model", tiny_onnx, "--out", tmp_path / "x.engine", *args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_foreign_onnx_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    result = _run("--model", bad, "--out", tmp_path / "x.engine")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not a readable ONNX" in lines[0]
