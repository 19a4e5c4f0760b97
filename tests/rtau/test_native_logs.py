"""MediaPipe / TFLite start-up log lines: hidden by default, shown on request, nothing else
lost. Runs in subprocesses, since the lines go to file descriptor 2, not through Python."""

from __future__ import annotations

import subprocess
import sys

from rtau.native_logs import filter_native_lines

NATIVE_MARKERS = ("face_landmarker_graph.cc", "INFO: Created TensorFlow Lite")


def _stderr_of(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_landmarker_start_up_is_quiet_unless_asked():
    make = ("from rtau.faces import FaceDetector\n"
            "d = FaceDetector()\nd.close()\n")
    quiet = _stderr_of(make)
    assert not any(m in quiet for m in NATIVE_MARKERS), quiet
    loud = _stderr_of("from rtau.native_logs import show_native_logs\n"
                      "show_native_logs(True)\n" + make)
    assert any(m in loud for m in NATIVE_MARKERS), loud


def test_other_output_inside_the_quiet_block_is_kept_in_order():
    code = r"""
import os, sys
from rtau.native_logs import quiet_native_logs
with quiet_native_logs():
    os.write(2, b"first\n")
    os.write(2, b"W0000 00:00:1796117000.123456   42 graph.cc:181] hidden\n")
    print("second", file=sys.stderr)
    os.write(2, b"E0000 00:00:1796117000.2   42 graph.cc:9] an error stays\n")
print("after", file=sys.stderr)
"""
    assert _stderr_of(code).splitlines() == [
        "first", "second", "E0000 00:00:1796117000.2   42 graph.cc:9] an error stays", "after"]


def test_filter_keeps_everything_but_info_and_warning_lines():
    data = (b"WARNING: Logging before InitGoogle() is written to STDERR\n"
            b"I0000 00:00:17.5 7 a.cc:1] info\n"
            b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
            b"error: something real\n"
            b"W0000 is not a log line without its time\n")
    assert filter_native_lines(data) == (b"error: something real\n"
                                         b"W0000 is not a log line without its time\n")
