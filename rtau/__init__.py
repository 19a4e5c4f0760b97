"""rtau: real-time facial action unit intensity estimation.

Run: `from rtau import AUEstimator` (the Python API, see `rtau.estimator`) or the `rtau` command
(`rtau --help`). `AUEstimator` and `FaceEstimate` are imported lazily on first access, so
`import rtau` stays light (no MediaPipe, no ONNX Runtime until an estimator is made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtau.estimator import AUEstimator, FaceEstimate

_LAZY = {"AUEstimator": "rtau.estimator", "FaceEstimate": "rtau.estimator"}

__all__ = ["AUEstimator", "FaceEstimate"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rtau' has no attribute {name!r}")
