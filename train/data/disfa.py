"""Reader for DISFA as distributed (and for the synthetic generator's output, same layout).

Layout under ROOT:
    Videos_LeftCamera/LeftVideoSN001_comp.avi        one video per subject
    ActionUnit_Labels/SN001/SN001_au1.txt ... _au26.txt   one file per AU,
        one line per frame `frame,intensity`, frames numbered from 1, intensity 0..5
Subject ids are letters + digits (SN001..SN032 in DISFA, SYN001... from `python -m train synth`).

Used by `python -m train prepare --dataset disfa --root ROOT --out STORE`; in Python:
`read_disfa(root)` -> list[SourceVideo] (labels float32[N, K], mask bool[N, K], K AUs in
AU-number order). Every problem raises DatasetError naming the file (and line).
"""

from __future__ import annotations

import re
from pathlib import Path

from rtau.aus import au_name, parse_au
from train.data.source import (
    DEFAULT_FPS,
    VIDEO_EXTENSIONS,
    DatasetError,
    SourceVideo,
    read_label_file,
    stack_tracks,
    video_info,
)

VIDEO_DIR = "Videos_LeftCamera"
LABEL_DIR = "ActionUnit_Labels"
VIDEO_NAME = re.compile(r"^LeftVideo(?P<subject>[A-Za-z]+\d+)_comp(?P<ext>\.[A-Za-z0-9]+)$")
LABEL_NAME = re.compile(r"^(?P<subject>[A-Za-z]+\d+)_au(?P<number>\d+)\.txt$", re.IGNORECASE)
SUBJECT_NAME = re.compile(r"^[A-Za-z]+\d+$")
FIRST_FRAME = 1


def _videos(video_dir: Path) -> dict[str, Path]:
    videos: dict[str, Path] = {}
    for path in sorted(video_dir.iterdir()):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue  # notes, checksums, thumbnails: not data
        match = VIDEO_NAME.match(path.name)
        if match is None:
            raise DatasetError(
                f"{path}: video name does not follow DISFA's LeftVideo<SUBJECT>_comp.avi "
                "(e.g. LeftVideoSN001_comp.avi)"
            )
        subject = match["subject"]
        if subject in videos:
            raise DatasetError(f"{path}: a second video of subject {subject} ({videos[subject]})")
        videos[subject] = path
    return videos


def _label_files(subject_dir: Path) -> dict[str, Path]:
    """AU name -> label file of one subject folder."""
    files: dict[str, Path] = {}
    for path in sorted(subject_dir.iterdir()):
        match = LABEL_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        if match["subject"] != subject_dir.name:
            raise DatasetError(
                f"{path}: label file of subject {match['subject']} in the folder of "
                f"{subject_dir.name}"
            )
        name = au_name(int(match["number"]))
        if name in files:
            raise DatasetError(f"{path}: a second label file for {name} ({files[name]})")
        files[name] = path
    return files


def read_disfa(root: str | Path, aus: tuple[str, ...] | None = None) -> list[SourceVideo]:
    """All subjects of a DISFA-layout folder, labels parsed and checked, sorted by subject.

    aus: the AUs to read (e.g. rtau.aus.DISFA_AUS); None: the AUs whose label files exist,
    which must then be the same for every subject.
    """
    root = Path(root)
    video_dir, label_dir = root / VIDEO_DIR, root / LABEL_DIR
    for folder in (video_dir, label_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: folder not found (expected the DISFA layout)")
    videos = _videos(video_dir)
    subject_dirs = {
        p.name: p for p in sorted(label_dir.iterdir()) if p.is_dir() and SUBJECT_NAME.match(p.name)
    }
    for subject, path in videos.items():
        if subject not in subject_dirs:
            raise DatasetError(f"{label_dir / subject}: label folder not found (for {path})")
    for subject in subject_dirs:
        if subject not in videos:
            raise DatasetError(
                f"{video_dir / f'LeftVideo{subject}_comp.avi'}: video not found "
                f"(labels exist in {subject_dirs[subject]})"
            )
    if not videos:
        raise DatasetError(f"{video_dir}: no videos named LeftVideo<SUBJECT>_comp.avi")

    files = {subject: _label_files(subject_dirs[subject]) for subject in sorted(videos)}
    if aus is None:
        found = sorted({name for per in files.values() for name in per}, key=lambda n: int(n[2:]))
        if not found:
            raise DatasetError(f"{label_dir}: no label files named <SUBJECT>_au<N>.txt")
        aus = tuple(found)
    aus = tuple(parse_au(a) for a in aus)

    entries = []
    for subject in sorted(videos):
        video = videos[subject]
        paths = []
        for name in aus:
            path = files[subject].get(name)
            if path is None:
                path = subject_dirs[subject] / f"{subject}_au{int(name[2:])}.txt"
                raise DatasetError(f"{path}: label file not found")
            paths.append(path)
        tracks = [read_label_file(p, first_frame=FIRST_FRAME) for p in paths]
        count, fps = video_info(video)
        # the container's count is checked here, before hours of decoding; decoding checks again
        num_frames = count if count > 0 else len(tracks[0])
        labels, mask = stack_tracks(tracks, num_frames, str(video))
        entries.append(
            SourceVideo(
                id=subject,
                subject=subject,
                path=video,
                num_frames=num_frames,
                fps=fps or DEFAULT_FPS,
                au_names=aus,
                labels=labels,
                mask=mask,
                label_files=tuple(paths),
            )
        )
    return entries
