"""MediaPipe's and TFLite's start-up log lines, hidden unless asked for (`--verbose`).

Run: `with quiet_native_logs(): landmarker = FaceLandmarker.create_from_options(...)`;
`show_native_logs(True)` (what the commands' `--verbose` does) lets everything through.

MediaPipe's C++ core writes absl log lines (`W0000 00:00:... face_landmarker_graph.cc:181]
...`, `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`) straight to file descriptor 2
while a graph is built, from its own threads; no Python logger or environment variable turns
them off. So while a graph is built, descriptor 2 goes to a temporary file; afterwards every
line that is not such a log line (anything else any thread wrote meanwhile, errors included)
is written back to the real stderr, in order.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] |INFO: |"
    rb"WARNING: (?:Logging before InitGoogle\(\)|All log messages before absl::InitializeLog\(\)))"
)
"""Info and warning lines of absl / TFLite; errors (E..., F...) always pass."""
STDERR_FD = 2

_lock = threading.RLock()
_show = False
_depth = 0


def show_native_logs(show: bool) -> None:
    """Let MediaPipe / TFLite log lines through (True) or hide them (False, the default)."""
    global _show
    _show = bool(show)


def filter_native_lines(data: bytes) -> bytes:
    """`data` without its native info/warning log lines (other lines kept, in order)."""
    return b"".join(line for line in data.splitlines(keepends=True)
                    if not NATIVE_LOG_LINE.match(line))


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Hide native log lines written to descriptor 2 inside the block (nothing else is lost).
    Re-entrant; does nothing when `show_native_logs(True)` was called or stderr is closed."""
    global _depth
    with _lock:
        if _show or _depth > 0:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            saved = os.dup(STDERR_FD)
        except OSError:  # no descriptor 2 (a detached process): nothing to hide
            yield
            return
        _depth += 1
        with tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            os.dup2(sink.fileno(), STDERR_FD)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, STDERR_FD)
                os.close(saved)
                _depth -= 1
                sink.seek(0)
                kept = filter_native_lines(sink.read())
                if kept:
                    os.write(STDERR_FD, kept)
