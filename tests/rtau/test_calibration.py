"""Neutral-face calibration: per face id median baseline over the first seconds, subtracted
and clamped at 0 afterwards; a forgotten id calibrates afresh."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.calibration import CAL_DONE, CAL_OFF, CAL_RUNNING, Calibrator


def test_off_passes_values_through():
    cal = Calibrator(0.0)
    aus = np.array([1.0, 2.0], np.float32)
    out, status = cal.apply(1, 0.0, aus)
    assert status == CAL_OFF and out is aus


def test_baseline_is_per_face_median_then_subtracted_and_clamped():
    cal = Calibrator(1.0)
    rest = [np.array([1.0, 0.5, 2.0]), np.array([1.2, 0.5, 2.0]), np.array([5.0, 0.5, 2.0])]
    for i, aus in enumerate(rest):  # 0, 400, 800 ms: still calibrating
        out, status = cal.apply(7, i * 400.0, aus.astype(np.float32))
        assert status == CAL_RUNNING and np.array_equal(out, aus.astype(np.float32))
    out, status = cal.apply(7, 1200.0, np.array([3.2, 0.0, 2.5], np.float32))
    assert status == CAL_DONE
    np.testing.assert_allclose(cal.baseline(7), [1.2, 0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out, [2.0, 0.0, 0.5], rtol=1e-6)
    # Another face has its own clock and baseline.
    assert cal.apply(8, 1200.0, np.ones(3, np.float32))[1] == CAL_RUNNING
    cal.forget(7)
    assert cal.baseline(7) is None
    assert cal.apply(7, 5000.0, np.ones(3, np.float32))[1] == CAL_RUNNING


def test_negative_seconds_rejected():
    with pytest.raises(ValueError):
        Calibrator(-1.0)
