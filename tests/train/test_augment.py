"""Augmentations: per-clip parameters (no fake motion), shared flip, bounded jitter, determinism.

Run: `python -m pytest tests/train/test_augment.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.augment import AugmentConfig, ClipAugment, TwoViews

S = 32
GEOMETRY_ONLY = AugmentConfig(brightness=0, contrast=0, saturation=0, blur_probability=0,
                              gray_probability=0, flip_probability=0)


def clips(b: int = 3, t: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, S, S, 3), dtype=torch.uint8, generator=g)


def test_shapes_range_and_every_frame_of_a_clip_alike():
    static = clips(t=1).repeat(1, 5, 1, 1, 1)  # a still clip: 5 identical frames
    a, b = TwoViews()(static, static, torch.Generator().manual_seed(1))
    assert a.shape == static.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 255
    # parameters are drawn per clip: a still clip stays still (no fake motion)
    assert torch.equal(a, a[:, :1].expand_as(a))
    assert not torch.allclose(a, b)  # the two views differ


def test_flip_is_shared_by_both_views():
    config = AugmentConfig(max_shift=0, max_scale=0, brightness=0, contrast=0, saturation=0,
                           blur_probability=0, gray_probability=0, flip_probability=1.0)
    x = clips()
    a, b = TwoViews(config)(x, x, torch.Generator().manual_seed(0))
    flipped = x.flip(3).float()
    assert torch.allclose(a, flipped, atol=1e-3) and torch.allclose(b, flipped, atol=1e-3)


def test_geometric_jitter_stays_below_au_displacements():
    x = torch.zeros(64, 1, S, S, 3, dtype=torch.uint8)
    x[:, :, 8, 24] = 255  # a bright dot far from the centre
    out = ClipAugment(GEOMETRY_ONLY)(x, torch.zeros(64, dtype=torch.bool),
                                     torch.Generator().manual_seed(2))
    weights = out[:, 0, :, :, 0]
    ys, xs = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    cy = (weights * ys).sum((1, 2)) / weights.sum((1, 2))
    cx = (weights * xs).sum((1, 2)) / weights.sum((1, 2))
    moved = torch.sqrt((cy - 8) ** 2 + (cx - 24) ** 2)
    radius = ((8 - S / 2 + 0.5) ** 2 + (24 - S / 2 + 0.5) ** 2) ** 0.5
    bound = (2 ** 0.5) * GEOMETRY_ONLY.max_shift * S + GEOMETRY_ONLY.max_scale * radius + 0.05
    assert float(moved.max()) <= bound
    assert float(moved.max()) > 0.05  # it does jitter


def test_deterministic_for_a_generator_seed():
    x = clips()
    first = TwoViews()(x, x, torch.Generator().manual_seed(5))
    again = TwoViews()(x, x, torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))


def test_a_head_turn_keeps_the_face_and_moves_the_geometry_views_apart():
    from rtau.geometry import geometry_batch
    from train.augment import GeometryViews, rotate_landmarks

    rng = np.random.default_rng(0)
    face = np.concatenate([rng.uniform(200, 300, (478, 2)), rng.uniform(-30, 30, (478, 1))], 1)
    clip = np.stack([face, face + rng.normal(0, 0.3, face.shape)]).astype(np.float32)
    assert np.allclose(rotate_landmarks(clip, 0.0, 0.0), clip, atol=1e-4)
    turned = rotate_landmarks(clip, 20.0, 0.0)
    # a yaw leaves heights and the distances to the centroid along the vertical alone
    assert np.allclose(turned[..., 1], clip[..., 1], atol=1e-3)
    assert np.allclose(np.linalg.norm(turned - turned.mean(1, keepdims=True), axis=2),
                       np.linalg.norm(clip - clip.mean(1, keepdims=True), axis=2), atol=1e-3)
    geometry = torch.from_numpy(geometry_batch(clip))[None]
    found = [np.array([True, True])]
    g = torch.Generator().manual_seed(0)
    still_a, still_b = GeometryViews(0.0)(geometry, g)
    assert torch.equal(still_a, geometry) and torch.equal(still_b, geometry)
    a, b = GeometryViews(0.0, pose_jitter_deg=6.0)(geometry, g, [clip], found)
    assert a.shape == geometry.shape and not torch.allclose(a, b)
    assert (a - geometry).abs().max() < 0.05  # a small turn, not another face
    with pytest.raises(ValueError, match="needs the clips' landmarks"):
        GeometryViews(0.0, pose_jitter_deg=6.0)(geometry, g)
