"""benchmarks/alignment.py: its crop-motion measure, the rigid template it derives, and the
properties it reports (on one synthetic AU12 episode and the neutral frames of a real clip)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import alignment as bench
from rtau.align import FIVE_POINT, RIGID, RIGID_STABILISED, RIGID_TEMPLATE


@pytest.fixture(scope="module")
def neutral():
    return bench.neutral_faces()


def test_crop_motion_measures_what_the_content_does():
    m = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 7.0]])
    assert bench.crop_motion(m, m) == 0.0
    shifted = m.copy()
    shifted[0, 2] += 1.0  # the content moves one pixel right
    assert bench.crop_motion(m, shifted) == pytest.approx(1.0)
    # a 10% zoom about the crop centre moves each grid point by a tenth of its distance from it
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    centre = (bench.CROP_SIZE - 1) / 2
    zoom = np.array([[1.1, 0.0, -0.1 * centre], [0.0, 1.1, -0.1 * centre]])
    expected = 0.1 * np.linalg.norm(bench._grid() - centre, axis=1).mean()
    assert bench.crop_motion(identity, zoom) == pytest.approx(expected)
    assert expected > 3.0


def test_the_rigid_template_is_the_one_the_benchmark_derives(neutral):
    assert len(neutral) == 5 and len(next(iter(neutral.values()))) == bench.NEUTRAL_CLIP_FRAMES
    # The template is fixed (models declare it), the derivation follows the landmarks: the face
    # stage that crops around each face before FaceLandmarker moved the derived eye corners by
    # 0.056 px. 0.1 px (1/300 of the inter-ocular distance) is landmark noise, not a new framing.
    np.testing.assert_allclose(bench.derive_rigid_template(neutral), RIGID_TEMPLATE, atol=0.1)


def test_rigid_crops_jitter_about_as_little_as_five_point_ones(neutral):
    clip = neutral[f"{bench.NEUTRAL_CLIP}@0-{bench.NEUTRAL_CLIP_FRAMES - 1}"]
    jitter = {name: bench.jitter(clip, name)["mean_px"] for name in (FIVE_POINT, RIGID)}
    eyes_only = bench.jitter(clip, bench.EYE_CORNERS)["mean_px"]
    # Measured 0.301 (five-point/1), 0.330 (rigid/1) and 0.373 px (the eye corners alone): the
    # goal, rigid <= five-point, is not met (README "Alignment"); the philtrum point must keep
    # closing most of the gap the eye corners alone leave.
    assert 0.05 < jitter[RIGID] < 1.15 * jitter[FIVE_POINT]
    assert jitter[RIGID] < 0.95 * eyes_only


def test_stabilised_crops_jitter_no_more_than_five_point_ones(neutral):
    clip = neutral[f"{bench.NEUTRAL_CLIP}@0-{bench.NEUTRAL_CLIP_FRAMES - 1}"]
    jitter = {name: bench.jitter(clip, name) for name in (FIVE_POINT, RIGID, RIGID_STABILISED)}
    mean = {name: j["mean_px"] for name, j in jitter.items()}
    # Measured 0.297 px (rigid/2) against 0.301 (five-point/1) and 0.330 (rigid/1): the goal is
    # met by a thin margin, so the bound allows 2% of MediaPipe's variation between CPUs.
    assert mean[RIGID_STABILISED] < 0.95 * mean[RIGID]
    assert mean[RIGID_STABILISED] <= 1.02 * mean[FIVE_POINT]
    # on the still head (frames 6-15) the filter removes noise, it does not just lag motion:
    # measured 0.118 px against 0.139 (rigid/1) and 0.130 (five-point/1)
    still = {name: np.mean(j["pairs"][5:]) for name, j in jitter.items()}
    assert still[RIGID_STABILISED] < 0.92 * still[RIGID]


def test_framing_keeps_brows_and_chin_inside(neutral):
    for name in (FIVE_POINT, RIGID):
        f = bench.framing(neutral, name)
        assert f["forehead_min_y"] > 4 and f["brow_top_min_y"] > 15 and f["chin_max_y"] < 108


def test_au12_episode_brows_still_mouth_kept_with_rigid_only():
    from train.data.synth import SubjectRenderer

    subject = bench.base_subjects()[0]
    renderer = SubjectRenderer(subject)
    _, truth, detected = bench.render_episode(renderer, "AU12")
    rigid = bench.episode_effect(detected, truth, RIGID)
    five = bench.episode_effect(detected, truth, FIVE_POINT)
    assert rigid["brow_max_px"] < bench.GOALS["brow_px"] < five["brow_max_px"]
    assert rigid["mouth_survival"] >= bench.GOALS["mouth_survival"] > five["mouth_survival"]
    assert rigid["mouth_true_motion_px"] > 3  # a real smile to keep: ~5 crop px per corner
    # the stabiliser does not damp the smile: the episode is a video, rigid/2 filters it
    stabilised = bench.episode_effect(detected, truth, RIGID_STABILISED)
    assert stabilised["brow_max_px"] < bench.GOALS["brow_px"]
    assert stabilised["mouth_survival"] >= bench.GOALS["mouth_survival"]
    assert abs(stabilised["mouth_survival"] - rigid["mouth_survival"]) < 0.02
    exact = bench.episode_effect(truth, truth, RIGID)
    # on exact landmarks only the AU12 template's own pull on the philtrum top (0.0016 IOD at
    # AU12 = 5) moves the fit: 0.016 px at the brows
    assert exact["brow_max_px"] < 0.05 and exact["mouth_survival"] > 0.99


def test_head_movement_the_stabiliser_follows_with_a_measured_lag():
    from train.data.synth import SubjectRenderer

    truth, detected = bench.render_head_move(SubjectRenderer(bench.base_subjects()[0]))
    plain = bench.head_move_effect(truth, detected, RIGID)
    stabilised = bench.head_move_effect(truth, detected, RIGID_STABILISED)
    # measured on this face: still-frame jitter 0.166 -> 0.080 px, error while moving 0.139 ->
    # 0.244 px mean, 0.288 -> 0.506 px max: the filter removes noise on the still face and pays
    # for it with lag while the head moves
    assert stabilised["still_jitter_px"] < 0.7 * plain["still_jitter_px"]
    assert plain["moving_mean_px"] < stabilised["moving_mean_px"] < 0.5
    assert stabilised["moving_max_px"] < 1.0
    # on the generator's exact landmarks nothing is noise: the first still frames do not move,
    # the filter has caught up SETTLE_FRAMES after a movement, and what is left while moving is
    # the filter's own lag
    lag = bench.head_move_effect(truth, truth, RIGID_STABILISED)
    assert lag["still_jitter_px"] < 1e-9 and lag["still_mean_px"] < 0.01
    assert 0.01 < lag["moving_mean_px"] < stabilised["moving_mean_px"]
