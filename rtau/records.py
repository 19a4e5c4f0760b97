"""What every output writes per face: the estimate's fields and the decimals they are written with.

Shared by the file sinks (`rtau.sinks`) and the live streams (`rtau.streams`), so neither
imports the other's module for it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

DECIMALS = 4
"""AU intensities are written with 4 decimals."""
BOX_DECIMALS = 1
"""Face boxes (frame pixels) are written with 1 decimal."""


class EstimateLike(Protocol):
    """What a sink reads from an estimate (rtau.estimator.FaceEstimate has these)."""

    id: int
    box: tuple[float, float, float, float]
    aus: np.ndarray
