"""Builders of small dataset trees in the real layouts (DISFA, BP4D, video folders) for the tests.

Videos are real encoded files (cv2.VideoWriter); frame i is filled with grey level
`frame_level(i)` so that tests can check decoding order after lossy compression.
Imported by the tests of this folder (`from trees import ...`); run them with
`python -m pytest tests/train/data -q`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (96, 64)  # width, height: small videos keep the tests fast
LEVEL_STEP = 18
CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}


def frame_level(i: int) -> int:
    return (i * LEVEL_STEP) % 240 + 8


def synthetic_frames(n: int) -> list[np.ndarray]:
    w, h = FRAME_SIZE
    return [np.full((h, w, 3), frame_level(i), np.uint8) for i in range(n)]


def write_video(path: Path, frames: list[np.ndarray] | int, fps: float = 20.0) -> Path:
    """Encode frames (BGR uint8, all one size) or n synthetic frames into a real video file."""
    if isinstance(frames, int):
        frames = synthetic_frames(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*CODECS[path.suffix.lower()]), fps, (w, h)
    )
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_labels(path: Path, values, first_frame: int = 1) -> Path:
    """A `frame,intensity` file, one line per value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{first_frame + i},{v:g}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def make_disfa(
    root: Path,
    subjects=("SN001", "SN002"),
    aus=(1, 2, 12),
    num_frames: int = 12,
    seed: int = 0,
    frames: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """A DISFA tree; returns subject -> labels float32[N, K] as written."""
    rng = np.random.default_rng(seed)
    written = {}
    for subject in subjects:
        video = root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi"
        write_video(video, frames if frames is not None else num_frames)
        n = len(frames) if frames is not None else num_frames
        labels = rng.integers(0, 6, size=(n, len(aus))).astype(np.float32)
        for k, au in enumerate(aus):
            write_labels(
                root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt", labels[:, k]
            )
        written[subject] = labels
    return written


def make_bp4d(
    root: Path,
    sequences=(("F001", "T1"), ("M002", "T3")),
    aus=(6, 12),
    num_frames: int = 8,
    first_frame: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A BP4D tree with some 9 (not coded) values; returns id -> raw values float32[N, K]."""
    rng = np.random.default_rng(seed)
    written = {}
    for subject, task in sequences:
        folder = root / "Sequences" / subject / task
        folder.mkdir(parents=True)
        for i, frame in enumerate(synthetic_frames(num_frames)):
            cv2.imwrite(str(folder / f"{first_frame + i:04d}.jpg"), frame)
        values = rng.integers(0, 6, size=(num_frames, len(aus))).astype(np.float32)
        values[1, 0] = 9.0  # not coded
        values[num_frames - 1, :] = 9.0
        for k, au in enumerate(aus):
            name = f"AU{au:02d}"
            write_labels(root / name / f"{subject}_{task}_{name}.csv", values[:, k], first_frame)
        written[f"{subject}_{task}"] = values
    return written
