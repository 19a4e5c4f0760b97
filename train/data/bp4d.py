"""Reader for BP4D / FERA 2015 intensity data as distributed.

Layout under ROOT:
    Sequences/F001/T1/0001.jpg ...      frames as images, numbered (any zero padding),
                                        consecutive; subject F/M + digits, task T1..T8
    AU06/F001_T1_AU06.csv ...           one file per subject-task-AU, one line per frame
                                        `frame,intensity`; frame numbers are the image numbers;
                                        intensity 0..5, or 9 = not coded (masked, never a label)

Used by `python -m train prepare --dataset bp4d --root ROOT --out STORE`; in Python:
`read_bp4d(root)` -> list[SourceVideo], one per subject-task (id `F001_T1`), labels float32[N, K]
(0 where not coded), mask bool[N, K]. Every problem raises DatasetError naming the file (and line).
"""

from __future__ import annotations

import re
from pathlib import Path

from rtau.aus import au_name, parse_au
from train.data.source import (
    IMAGE_EXTENSIONS,
    DatasetError,
    SourceVideo,
    read_label_file,
    stack_tracks,
)

SEQUENCE_DIR = "Sequences"
AU_DIR_NAME = re.compile(r"^AU(?P<number>\d+)$")
LABEL_NAME = re.compile(r"^(?P<subject>[A-Za-z]+\d+)_(?P<task>T\d+)_AU(?P<number>\d+)\.csv$")
SUBJECT_NAME = re.compile(r"^[A-Za-z]+\d+$")
TASK_NAME = re.compile(r"^T\d+$")
NOT_CODED = 9.0
FPS = 25.0  # BP4D's frame rate; only used for MediaPipe's video-mode timestamps


def _frame_images(folder: Path) -> tuple[list[Path], int]:
    """The frame images of one sequence in frame order, and the first frame number."""
    numbered: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # Thumbs.db and the like
        if not path.stem.isdigit():
            raise DatasetError(f"{path}: frame image name is not a frame number (e.g. 0001.jpg)")
        number = int(path.stem)
        if number in numbered:
            raise DatasetError(f"{path}: frame {number} also exists as {numbered[number].name}")
        numbered[number] = path
    if not numbered:
        raise DatasetError(f"{folder}: no frame images (0001.jpg ...)")
    numbers = sorted(numbered)
    for previous, number in zip(numbers, numbers[1:], strict=False):
        if number != previous + 1:
            raise DatasetError(
                f"{folder}: frame image {previous + 1} is missing (after "
                f"{numbered[previous].name}, next is {numbered[number].name})"
            )
    return [numbered[n] for n in numbers], numbers[0]


def _sequences(root: Path) -> dict[tuple[str, str], Path]:
    sequence_dir = root / SEQUENCE_DIR
    if not sequence_dir.is_dir():
        raise DatasetError(f"{sequence_dir}: folder not found (expected the BP4D layout)")
    sequences = {}
    for subject in sorted(p for p in sequence_dir.iterdir() if p.is_dir()):
        if not SUBJECT_NAME.match(subject.name):
            raise DatasetError(f"{subject}: not a subject folder (expected e.g. F001 or M012)")
        for task in sorted(p for p in subject.iterdir() if p.is_dir()):
            if not TASK_NAME.match(task.name):
                raise DatasetError(f"{task}: not a task folder (expected T1 ... T8)")
            sequences[(subject.name, task.name)] = task
    if not sequences:
        raise DatasetError(f"{sequence_dir}: no sequences (expected F001/T1/0001.jpg ...)")
    return sequences


def _au_dirs(root: Path, aus: tuple[str, ...] | None) -> dict[str, Path]:
    found = {}
    for path in sorted(root.iterdir()):
        match = AU_DIR_NAME.match(path.name)
        if match and path.is_dir():
            found[au_name(int(match["number"]))] = path
    if aus is None:
        if not found:
            raise DatasetError(f"{root}: no AU label folders (AU06, AU10, AU12, AU14, AU17)")
        return dict(sorted(found.items(), key=lambda item: int(item[0][2:])))
    chosen = {}
    for name in (parse_au(a) for a in aus):
        if name not in found:
            raise DatasetError(f"{root / name}: label folder not found")
        chosen[name] = found[name]
    return chosen


def read_bp4d(root: str | Path, aus: tuple[str, ...] | None = None) -> list[SourceVideo]:
    """All subject-task sequences of a BP4D-layout folder, checked, sorted by id.

    aus: the AUs to read (e.g. rtau.aus.BP4D_AUS); None: every AU folder under ROOT.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    sequences = _sequences(root)
    au_dirs = _au_dirs(root, aus)
    for name, folder in au_dirs.items():
        for path in sorted(folder.glob("*.csv")):
            match = LABEL_NAME.match(path.name)
            if match is None or au_name(int(match["number"])) != name:
                raise DatasetError(
                    f"{path}: label file name does not follow <SUBJECT>_<TASK>_{name}.csv"
                )
            if (match["subject"], match["task"]) not in sequences:
                raise DatasetError(
                    f"{path}: no frames for these labels (expected "
                    f"{root / SEQUENCE_DIR / match['subject'] / match['task']})"
                )

    entries = []
    for (subject, task), folder in sorted(sequences.items()):
        images, first = _frame_images(folder)
        paths = [d / f"{subject}_{task}_{name}.csv" for name, d in au_dirs.items()]
        tracks = [read_label_file(p, first_frame=None, not_coded=NOT_CODED) for p in paths]
        for track in tracks:
            if track.frames[0] != first:
                raise DatasetError(
                    f"{track.path}, line 1: frame {track.frames[0]} but the first image of "
                    f"{folder} is {images[0].name} (frame {first})"
                )
        labels, mask = stack_tracks(tracks, len(images), str(folder))
        entries.append(
            SourceVideo(
                id=f"{subject}_{task}",
                subject=subject,
                path=folder,
                num_frames=len(images),
                fps=FPS,
                au_names=tuple(au_dirs),
                labels=labels,
                mask=mask,
                label_files=tuple(paths),
                frame_files=tuple(images),
            )
        )
    return entries
