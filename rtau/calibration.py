"""Neutral-face calibration: subtract each person's resting AU baseline, clamp at 0.

Run: `cal = Calibrator(seconds=3.0)`; per frame and face `shown = cal.apply(face_id, t_ms, aus)`.
For the first `seconds` of a face id's life (measured on the frames' timestamps, so video time
for files and wall time for cameras) its raw AU intensities are collected and shown raw; the
baseline is then their median (robust to a blink or a word) and every later value is
`max(raw - baseline, 0)`. A dropped face id forgets its baseline (`forget`): a new face is
calibrated afresh. `seconds = 0` turns calibration off (values pass through).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CAL_OFF = "off"
CAL_RUNNING = "calibrating"
CAL_DONE = "calibrated"


@dataclass
class _Baseline:
    start_ms: float
    samples: list[np.ndarray] = field(default_factory=list)
    value: np.ndarray | None = None


class Calibrator:
    """Per face id resting baselines; see the module docstring. Not thread-safe by design
    (called from the one thread that runs the step)."""

    def __init__(self, seconds: float = 0.0) -> None:
        if seconds < 0:
            raise ValueError(f"calibration seconds must be >= 0, got {seconds}")
        self.seconds = float(seconds)
        self._faces: dict[int, _Baseline] = {}

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def apply(self, face_id: int, timestamp_ms: float,
              aus: np.ndarray) -> tuple[np.ndarray, str]:
        """(values to show float32[K], calibration status) for raw `aus` float32[K]."""
        if not self.enabled:
            return aus, CAL_OFF
        base = self._faces.setdefault(face_id, _Baseline(start_ms=timestamp_ms))
        if base.value is None:
            if timestamp_ms - base.start_ms < self.seconds * 1000.0 or not base.samples:
                base.samples.append(np.asarray(aus, np.float32).copy())
                return aus, CAL_RUNNING
            base.value = np.median(np.stack(base.samples), axis=0).astype(np.float32)
            base.samples.clear()
        return np.maximum(aus - base.value, 0.0).astype(np.float32), CAL_DONE

    def baseline(self, face_id: int) -> np.ndarray | None:
        entry = self._faces.get(face_id)
        return None if entry is None else entry.value

    def forget(self, face_id: int) -> None:
        self._faces.pop(face_id, None)

    def reset(self) -> None:
        self._faces.clear()
