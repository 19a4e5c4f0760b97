"""Per-stage timing of the frame pipeline: last values for display, p50/p99 for `--stats`.

Run: `stats = StageStats(); stats.add("step", 3.1); stats.summary()` -> {stage: (p50, p99, n)}.
Durations are milliseconds (float). Stage names used by rtau: capture, landmarks, align, step,
render, output, total, latency (capture-to-estimate, live sources).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

STATS_WINDOW = 100_000
"""Samples kept per stage (a ring): about an hour at 30 fps, a few MB at most."""


class StageStats:
    """Thread-safe collector of per-stage durations in milliseconds."""

    def __init__(self, window: int = STATS_WINDOW) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._last: dict[str, float] = {}
        self._window = window
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._window)).append(ms)
            self._last[stage] = ms

    def add_all(self, timings: dict[str, float]) -> None:
        for stage, ms in timings.items():
            self.add(stage, ms)

    @property
    def last(self) -> dict[str, float]:
        with self._lock:
            return dict(self._last)

    def summary(self) -> dict[str, tuple[float, float, int]]:
        """{stage: (p50 ms, p99 ms, samples)} in insertion order of the stages."""
        with self._lock:
            items = [(k, np.asarray(v, dtype=np.float64)) for k, v in self._samples.items()]
        return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 99)), len(v))
                for k, v in items if len(v)}


class RateMeter:
    """Frames per second over a sliding window of recent frame times."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self) -> float:
        self._times.append(time.perf_counter())
        return self.rate

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
