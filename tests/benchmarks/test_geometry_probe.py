"""The geometry probe on a store whose AUs are known landmark movements of different faces:
it must find them, and a per-face baseline must remove what identity adds."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.geometry_probe import VARIANTS, probe
from rtau.align import RIGID_INDICES, RIGID_TEMPLATE, get_alignment
from rtau.contract import ALIGNMENT_RIGID
from train.data.store import ClipStore
from train.data.store_writer import StoreHeader, StoreWriter, VideoEntryWriter

AUS = ("AU12", "AU26")
CROP = 16
FRAMES = 120
MOVED = {"AU12": (300, 301, 302, 303), "AU26": (400, 401, 402, 403)}  # landmark indices
SHAPE_SPREAD_PX = 6.0  # how far one face's points sit from another's (identity)
MOVE_PX_PER_UNIT = 1.5


def _labels(rng: np.random.Generator) -> np.ndarray:
    """Mostly neutral, with a few bumps per AU (as in the generator's episodes)."""
    labels = np.zeros((FRAMES, len(AUS)), np.float32)
    t = np.arange(FRAMES)
    for k in range(len(AUS)):
        for centre in rng.choice(np.arange(80, FRAMES - 5), size=2, replace=False):
            labels[:, k] += rng.uniform(2, 5) * np.exp(-0.5 * ((t - centre) / 4.0) ** 2)
    return np.clip(labels, 0, 5)


def _store(root, faces: int, seed: int) -> ClipStore:
    rng = np.random.default_rng(seed)
    with StoreWriter(root, StoreHeader("disfa", CROP, AUS, "geo", ALIGNMENT_RIGID)) as writer:
        for f in range(faces):
            shape = rng.uniform(20, 92, size=(478, 2))
            shape[list(RIGID_INDICES)] = RIGID_TEMPLATE
            shape += rng.normal(0, SHAPE_SPREAD_PX, size=shape.shape) * np.isin(
                np.arange(478), RIGID_INDICES, invert=True)[:, None]
            labels = _labels(rng)
            video_id = f"GEO{seed}{f:02d}"
            with VideoEntryWriter(root, video_id, CROP) as out:
                for i in range(FRAMES):
                    points = shape.copy()
                    for k, au in enumerate(AUS):
                        points[list(MOVED[au]), 1] += MOVE_PX_PER_UNIT * labels[i, k]
                    scale, shift = rng.uniform(2, 3), rng.uniform(50, 300, 2)
                    landmarks = np.zeros((478, 3), np.float32)
                    landmarks[:, :2] = points * scale + shift  # frame pixels
                    landmarks[:, :2] += rng.normal(0, 0.05, size=(478, 2))
                    out.append(np.zeros((CROP, CROP, 3), np.uint8), landmarks)
                writer.add(out.finish(video_id, labels, np.ones_like(labels, bool), AUS,
                                      f"geo/{video_id}"))
    return ClipStore(root)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    train = _store(tmp_path_factory.mktemp("train"), faces=8, seed=1)
    test = _store(tmp_path_factory.mktemp("test"), faces=4, seed=2)
    assert get_alignment(train.alignment).name == ALIGNMENT_RIGID
    return probe(train, test)


def test_every_variant_and_lambda_is_scored(results):
    assert set(results) == set(VARIANTS)
    for variant in VARIANTS:
        for report in results[variant].values():
            assert set(report["per_au"]) == set(AUS)


def test_geometry_finds_the_movements_on_faces_it_never_saw(results):
    # a per-face baseline removes the identity offsets; the movements are then linear
    assert results["video_median"]["100"]["mean"]["icc"] > 0.9
    assert results["first_3s"]["100"]["mean"]["icc"] > 0.9
    # without one, each new face's shape reads as AU activity
    raw, baselined = (results[v]["100"]["mean"]["icc"] for v in ("raw", "video_median"))
    assert raw < baselined - 0.3
