"""Reader for a folder of unlabeled face videos (stage-1 pretraining data).

Every file under ROOT (recursively) ending in .mp4, .avi, .mov or .mkv (any case) is a video;
hidden files (names starting with '.', e.g. macOS `._clip.mp4` metadata) are not videos.
Video id: the path relative to ROOT (`people/anna.mp4`); subject: the relative folder, or the
file stem for videos directly in ROOT, so clips of one folder count as one person.

Used by `python -m train prepare --dataset videos --root ROOT --out STORE`; in Python:
`read_videos(root)` -> list[SourceVideo] with no AUs (labels float32[N, 0]). Each video is opened
once here, so an unreadable file fails before any decoding work starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.data.source import DEFAULT_FPS, VIDEO_EXTENSIONS, DatasetError, SourceVideo, video_info


def read_videos(root: str | Path) -> list[SourceVideo]:
    """All videos under `root`, sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    paths = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not paths:
        raise DatasetError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    entries = []
    for path in paths:
        relative = path.relative_to(root)
        count, fps = video_info(path)
        parent = relative.parent.as_posix()
        entries.append(
            SourceVideo(
                id=relative.as_posix(),
                subject=path.stem if parent == "." else parent,
                path=path,
                num_frames=count,
                fps=fps or DEFAULT_FPS,
                au_names=(),
                labels=np.zeros((count, 0), np.float32),
                mask=np.zeros((count, 0), bool),
            )
        )
    return entries
