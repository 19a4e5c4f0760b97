"""rtau.stabilise: the One-Euro filter of rigid/2 removes landmark jitter on real frames, follows
a large head movement within a few frames, and keeps one state per face id (fresh when a face is
new, dropped or missed)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.alignment import crop_motion
from rtau.align import RIGID, RIGID_STABILISED, get_alignment
from rtau.capture import decode_frames
from rtau.faces import FaceDetector
from rtau.media import test_media
from rtau.stabilise import ONE_EURO, AlignmentStabiliser, smoothing_factor

FPS = 30.0
NEUTRAL_FRAMES = 16  # single_face.mp4 frames 0-15: neutral (the head moves on frames 1-5)
STILL_FROM = 6  # from here to frame 15 the head is still


def frame_ms(index: int) -> float:
    return index * 1000.0 / FPS


@pytest.fixture(scope="module")
def clip_landmarks() -> list[np.ndarray]:
    """MediaPipe's landmarks (video mode) on the neutral frames of single_face.mp4."""
    frames = decode_frames(test_media("single_face.mp4"), NEUTRAL_FRAMES)
    with FaceDetector(video=True) as detector:
        found = [detector.detect(f, int(round(frame_ms(i)))) for i, f in enumerate(frames)]
    assert all(len(faces) == 1 for faces in found)
    return [faces[0].landmarks for faces in found]


def moved(landmarks: np.ndarray, angle_deg: float, shift: tuple[float, float]) -> np.ndarray:
    """The landmarks rotated about their centroid and shifted (frame px): a head movement."""
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = landmarks[:, :2].astype(np.float64)
    centre = xy.mean(axis=0)
    out = landmarks.astype(np.float64).copy()
    out[:, :2] = (xy - centre) @ rotation.T + centre + np.asarray(shift)
    return out


def frame_to_frame(matrices: list[np.ndarray]) -> np.ndarray:
    return np.array([crop_motion(a, b) for a, b in zip(matrices[:-1], matrices[1:], strict=True)])


def test_removes_jitter_on_real_frames(clip_landmarks):
    plain = get_alignment(RIGID)
    stabiliser = AlignmentStabiliser(RIGID_STABILISED)
    raw = [plain.matrix(lm) for lm in clip_landmarks]
    filtered = [stabiliser.matrix("face", lm, frame_ms(i)) for i, lm in enumerate(clip_landmarks)]
    raw_jitter, filtered_jitter = frame_to_frame(raw), frame_to_frame(filtered)
    # On the still head (frames 6-15) what moves the crop is MediaPipe's noise: measured
    # 0.139 px raw, 0.118 px filtered; over frames 0-15 0.330 and 0.297 px.
    still = slice(STILL_FROM, None)
    assert filtered_jitter[still].mean() < 0.92 * raw_jitter[still].mean()
    assert filtered_jitter.mean() < 0.95 * raw_jitter.mean()
    assert raw_jitter[still].mean() > 0.05  # there is noise to remove
    # the first frame of a face is the plain fit
    np.testing.assert_allclose(filtered[0], raw[0], atol=1e-12)


def step_response(before: np.ndarray, after: np.ndarray) -> tuple[float, list[float]]:
    """The plain crop's jump, and per frame how far the filtered crop sits from the plain one
    (crop px), for 10 frames of `before` then 10 of `after`."""
    plain = get_alignment(RIGID_STABILISED)
    stabiliser = AlignmentStabiliser(RIGID_STABILISED)
    apart = [crop_motion(plain.matrix(lm), stabiliser.matrix(0, lm, frame_ms(i)))
             for i, lm in enumerate([before] * 10 + [after] * 10)]
    return crop_motion(plain.matrix(before), plain.matrix(after)), apart


def test_follows_a_large_step_within_a_few_frames(clip_landmarks):
    before = clip_landmarks[0]
    step, apart = step_response(before, moved(before, 8.0, (40.0, -15.0)))  # a fast turn
    assert step > 15.0
    assert max(apart[:10]) < 1e-9  # identical frames: nothing to filter
    # measured: 0.83 px behind on the step frame (4% of 19.6 px), 0.04 px one frame later
    assert 0.01 * step < apart[10] < 0.1 * step
    assert apart[11] < 0.2 and apart[12] < 0.02 and max(apart[13:]) < 0.01
    # a small step is smoothed more (the cutoff grows with speed; measured 0.46 px behind on the
    # step frame, 0.05 px two frames later) but still caught
    small, slow = step_response(before, moved(before, 0.0, (3.0, 0.0)))
    assert 0.5 < small < 3.0
    assert slow[10] / small > 2 * apart[10] / step
    assert slow[19] < 0.05 * small


def test_one_state_per_track_reset_when_dropped(clip_landmarks):
    still, far = clip_landmarks[8], moved(clip_landmarks[8], 0.0, (30.0, 0.0))
    shared = AlignmentStabiliser(RIGID_STABILISED)
    alone = AlignmentStabiliser(RIGID_STABILISED)
    plain = get_alignment(RIGID_STABILISED)
    for i in range(6):
        lm = clip_landmarks[i]
        a = shared.matrix("a", lm, frame_ms(i))
        shared.matrix("b", far if i % 2 else still, frame_ms(i))  # a face jumping about
        np.testing.assert_allclose(a, alone.matrix("a", lm, frame_ms(i)), atol=1e-12)
    assert sorted(shared.tracks) == ["a", "b"]
    shared.keep(["a"])  # b was not seen on this frame: it starts afresh when found again
    assert shared.tracks == ["a"]
    np.testing.assert_allclose(shared.matrix("b", still, frame_ms(6)), plain.matrix(still),
                               atol=1e-12)
    # a's state survived: its next matrix is filtered, not the plain fit of the new landmarks
    lm = clip_landmarks[6]
    a = shared.matrix("a", lm, frame_ms(6))
    np.testing.assert_allclose(a, alone.matrix("a", lm, frame_ms(6)), atol=1e-12)
    assert crop_motion(a, plain.matrix(lm)) > 1e-3
    shared.forget("a")
    shared.reset()
    assert shared.tracks == []
    np.testing.assert_allclose(shared.matrix("a", lm, frame_ms(7)), plain.matrix(lm), atol=1e-12)


def test_unstabilised_alignments_keep_no_state_and_bad_time_is_survived(clip_landmarks):
    stabiliser = AlignmentStabiliser(RIGID)
    assert not stabiliser.active
    for i, lm in enumerate(clip_landmarks[:4]):
        m = stabiliser.matrix(0, lm, frame_ms(i))
        np.testing.assert_allclose(m, get_alignment(RIGID).matrix(lm), atol=1e-12)
    assert stabiliser.tracks == []
    # a timestamp that does not advance counts as one frame at 30 fps: finite, filtered
    stabilised = AlignmentStabiliser(RIGID_STABILISED)
    first = stabilised.matrix(0, clip_landmarks[0], 100.0)
    again = stabilised.matrix(0, clip_landmarks[3], 100.0)
    assert np.isfinite(again).all() and crop_motion(first, again) > 0.0
    plain = get_alignment(RIGID_STABILISED).matrix(clip_landmarks[3])
    assert crop_motion(again, plain) > 1e-3
    with pytest.raises(ValueError, match="unknown alignment"):
        AlignmentStabiliser("rigid/9")


def test_smoothing_factor_is_a_first_order_low_pass():
    # at a cutoff of 1/(2 pi dt) the time constant equals the step: the new sample weighs 1/2
    dt = 1.0 / FPS
    assert smoothing_factor(1.0 / (2.0 * np.pi * dt), dt) == pytest.approx(0.5)
    assert 0.0 < smoothing_factor(ONE_EURO.min_cutoff_hz, dt) < smoothing_factor(30.0, dt) < 1.0
