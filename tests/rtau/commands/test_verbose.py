"""`--verbose` on the commands: MediaPipe / TFLite start-up lines only when asked for."""

from __future__ import annotations

import subprocess
import sys

from rtau.media import test_media

NATIVE_MARKER = "face_landmarker_graph.cc"


def _process(tiny_onnx, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rtau.cli", "process", str(test_media("single_face.mp4")),
           "--csv", str(tmp_path / "out.csv"), "--model", str(tiny_onnx), "--max-frames", "2",
           "--backend", "onnxruntime", "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_process_is_quiet_by_default_and_verbose_shows_the_start_up_lines(tiny_onnx, tmp_path):
    quiet = _process(tiny_onnx, tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert NATIVE_MARKER not in quiet.stderr and "W0000" not in quiet.stderr, quiet.stderr
    assert "backend" in quiet.stderr  # rtau's own lines still come through
    loud = _process(tiny_onnx, tmp_path, "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert NATIVE_MARKER in loud.stderr
    assert (tmp_path / "out.csv").read_text().count("\n") >= 3  # header + a row per frame
