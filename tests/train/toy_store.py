"""A tiny learnable clip store for the training tests, written through the real store writer.

Each video is one subject; AU intensities follow smooth random tracks in 0..5 and are painted
into the crops (AU06: brightness of the upper half, AU12: brightness of a lower patch) over a
per-subject noise texture, so a small CNN can learn them in a few dozen steps and clips of
different videos look different (contrastive learning has something to find). The same
intensities move landmarks (`toy_landmarks`: AU06 lifts the cheek points, AU12 pulls the mouth
corners up and out, on a per-subject face shape), so a geometry model can learn them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtau import mesh
from rtau.align import RIGID_TEMPLATE
from rtau.contract import ALIGNMENT_RIGID
from train.data.store import ClipStore
from train.data.store_writer import StoreHeader, StoreWriter, VideoEntryWriter

TOY_SIZE = 32
TOY_AUS = ("AU06", "AU12")
INTENSITY_GAIN = 30.0  # grey levels per intensity unit
FACE_SCALE = 3.0  # toy frame pixels per template pixel: a face about 340 px wide
CHEEK_POINTS = (50, 280, 117, 346)
LANDMARK_GAIN = 1.5  # frame pixels per intensity unit


def toy_landmarks(labels: np.ndarray, seed: int) -> np.ndarray:
    """float32[n, 478, 3] frame-pixel landmarks of one subject: its own face shape (rigid points
    on the alignment template, the rest scattered over the face), AU06 / AU12 moving the cheek
    points and mouth corners by LANDMARK_GAIN px per unit, and 0.2 px noise."""
    rng = np.random.default_rng(seed + 7)
    base = np.zeros((mesh.NUM_LANDMARKS, 3), np.float64)
    base[:, :2] = rng.uniform(20, 92, (mesh.NUM_LANDMARKS, 2))
    base[list(mesh.RIGID_POINTS), :2] = RIGID_TEMPLATE
    base[:, :2] = base[:, :2] * FACE_SCALE + rng.uniform(-20, 20, 2)
    n = len(labels)
    out = np.repeat(base[None], n, axis=0)
    out[:, list(CHEEK_POINTS), 1] -= LANDMARK_GAIN * labels[:, 0, None]
    for corner, side in ((mesh.MOUTH_RIGHT, -1.0), (mesh.MOUTH_LEFT, 1.0)):
        out[:, corner, 0] += side * LANDMARK_GAIN * labels[:, 1]
        out[:, corner, 1] -= LANDMARK_GAIN * labels[:, 1]
    out[:, :, :2] += rng.normal(0, 0.2, (n, mesh.NUM_LANDMARKS, 2))
    return out.astype(np.float32)


def toy_video(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """crops uint8[n, S, S, 3] and labels float32[n, 2] of one synthetic subject."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.6, size=(n, len(TOY_AUS)))
    labels = np.clip(np.cumsum(steps, axis=0) + rng.uniform(1, 4, len(TOY_AUS)), 0, 5)
    texture = rng.integers(40, 120, size=(TOY_SIZE, TOY_SIZE, 3)).astype(np.float32)
    crops = np.repeat(texture[None], n, axis=0)
    half = TOY_SIZE // 2
    crops[:, :half] += INTENSITY_GAIN * labels[:, 0, None, None, None]
    crops[:, half + 4 : TOY_SIZE - 4, 8:-8] += INTENSITY_GAIN * labels[:, 1, None, None, None]
    crops += rng.normal(0, 3, size=crops.shape)
    return np.clip(crops, 0, 255).astype(np.uint8), labels.astype(np.float32)


def make_toy_store(root: Path, videos: int = 4, frames: int = 48, seed: int = 0,
                   alignment: str = ALIGNMENT_RIGID) -> ClipStore:
    """A store of `videos` subjects (TOY001...) with every frame labeled and a face found.

    alignment: what its index says the crops were aligned with (the crops are painted).
    """
    header = StoreHeader("disfa", TOY_SIZE, TOY_AUS, "toy", alignment)
    with StoreWriter(root, header) as writer:
        for i in range(videos):
            video_id = f"TOY{i + 1:03d}"
            crops, labels = toy_video(frames, seed * 1000 + i)
            with VideoEntryWriter(root, video_id, TOY_SIZE) as out:
                for crop, landmarks in zip(crops, toy_landmarks(labels, seed * 1000 + i),
                                           strict=True):
                    out.append(crop, landmarks)
                entry = out.finish(
                    video_id, labels, np.ones_like(labels, bool), TOY_AUS, f"toy/{video_id}"
                )
            writer.add(entry)
    return ClipStore(root)
