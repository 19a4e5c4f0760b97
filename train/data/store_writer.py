"""Writing a clip store safely: whole videos appear atomically, and an interrupted run resumes.

Used by `python -m train prepare` (train/prepare.py); the layout is described in
train/data/store.py. The protocol, so that no reader ever sees half a video:
1. a worker streams one video into STORE/.partial/<folder>.<pid>/ and writes entry.json last;
2. it renames that folder to STORE/videos/<folder> (atomic on one file system);
3. the parent process, the only writer of index.json, adds the entry (write temp + rename).
On open, `open_for_writing` takes an exclusive lock, deletes leftovers of step 1 and adopts
folders that finished step 2 but not step 3. Videos already in the index are not redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtau.closing import Closing
from rtau.contract import ALIGNMENT_DEFAULT, write_json_atomic
from train.data.store import (
    CROPS_NAME,
    ENTRY_NAME,
    FACE_FOUND_NAME,
    INDEX_NAME,
    LABELS_NAME,
    LANDMARKS_NAME,
    LEGACY_ALIGNMENT,
    MASK_NAME,
    NUM_LANDMARKS,
    STORE_FORMAT,
    STORE_VERSION,
    VIDEOS_DIR,
    StoreError,
    VideoEntry,
    read_index,
)

PARTIAL_DIR = ".partial"
LOCK_NAME = ".lock"
UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
FOLDER_HASH_CHARS = 8  # distinguishes ids that sanitise alike ("a/b.mp4" vs "a_b.mp4")


def folder_name(video_id: str) -> str:
    """A file-name-safe, stable, unique folder name for a video id."""
    digest = hashlib.sha1(video_id.encode()).hexdigest()[:FOLDER_HASH_CHARS]
    return f"{UNSAFE_CHARS.sub('_', video_id).strip('._')[:80]}-{digest}"


@dataclass(frozen=True)
class StoreHeader:
    """What every video of a store must share; a resumed prepare must match it."""

    dataset: str
    crop_size: int
    au_names: tuple[str, ...]
    source_root: str
    alignment: str = ALIGNMENT_DEFAULT  # rtau.align name of how the crops were made

    def to_json(self) -> dict:
        return {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "dataset": self.dataset,
            "crop_size": self.crop_size,
            "au_names": list(self.au_names),
            "alignment": self.alignment,
            "source_root": self.source_root,
            "num_landmarks": NUM_LANDMARKS,
            "videos": [],
        }


class StoreWriter(Closing):
    """Exclusive write access to a store (a context manager; the lock is released on exit)."""

    def __init__(self, root: str | Path, header: StoreHeader):
        self.root = Path(root)
        self.header = header
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / LOCK_NAME, "w")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"{self.root}: another prepare is writing this store") from None
        try:
            self._index = self._open_index()
            self._recover()
        except BaseException:
            self.close()
            raise

    @property
    def partial_dir(self) -> Path:
        return self.root / PARTIAL_DIR

    @property
    def videos_dir(self) -> Path:
        return self.root / VIDEOS_DIR

    def _open_index(self) -> dict:
        if not (self.root / INDEX_NAME).exists():
            if any(p.name not in (LOCK_NAME, PARTIAL_DIR) for p in self.root.iterdir()):
                raise StoreError(f"{self.root}: folder is not empty and is not a clip store")
            index = self.header.to_json()
            write_json_atomic(self.root / INDEX_NAME, index)
            return index
        index = read_index(self.root)
        ours = self.header.to_json()
        for key in ("dataset", "crop_size", "au_names", "alignment"):
            stored = index.get(key, LEGACY_ALIGNMENT if key == "alignment" else None)
            if stored != ours[key]:
                raise StoreError(
                    f"{self.root}: store was prepared with {key} {stored!r}, not "
                    f"{ours[key]!r}; resume with the same settings or choose another --out"
                )
        return index

    def _recover(self) -> None:
        shutil.rmtree(self.partial_dir, ignore_errors=True)  # videos cut off mid-way
        self.partial_dir.mkdir()
        self.videos_dir.mkdir(exist_ok=True)
        listed = {r["folder"] for r in self._index["videos"]}
        kept = [r for r in self._index["videos"] if (self.videos_dir / r["folder"]).is_dir()]
        changed = len(kept) != len(self._index["videos"])
        self._index["videos"] = kept
        for folder in sorted(self.videos_dir.iterdir()):
            if folder.name in listed:
                continue
            entry_file = folder / ENTRY_NAME
            if entry_file.is_file():  # renamed into place, then interrupted before the index
                record = json.loads(entry_file.read_text())
                kept.append(VideoEntry.from_json(record, str(entry_file)).to_json())
                changed = True
            else:  # cannot happen through this writer; never let a reader meet it
                shutil.rmtree(folder)
        if changed:
            write_json_atomic(self.root / INDEX_NAME, self._index)

    def done_ids(self) -> set[str]:
        """Ids of the videos already complete in the store."""
        return {r["id"] for r in self._index["videos"]}

    def add(self, entry: VideoEntry) -> None:
        """List a video whose folder is complete in videos/ (index written atomically)."""
        if not (self.videos_dir / entry.folder / ENTRY_NAME).is_file():
            raise StoreError(f"{self.videos_dir / entry.folder}: incomplete video folder")
        self._index["videos"] = [r for r in self._index["videos"] if r["id"] != entry.id]
        self._index["videos"].append(entry.to_json())
        self._index["videos"].sort(key=lambda r: r["id"])
        write_json_atomic(self.root / INDEX_NAME, self._index)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()



class VideoEntryWriter:
    """Streams one video's frames into a partial folder; `finish` moves it into the store.

    Used in the worker processes: `append` per frame, then `finish` (or `abort`, which the
    context manager calls on any exception, so a failed video leaves nothing behind).
    """

    def __init__(self, store_root: str | Path, video_id: str, crop_size: int):
        self.store_root = Path(store_root)
        self.video_id = video_id
        self.crop_size = crop_size
        self.folder = folder_name(video_id)
        self.path = self.store_root / PARTIAL_DIR / f"{self.folder}.{os.getpid()}"
        self.path.mkdir(parents=True)
        self._crops = open(self.path / CROPS_NAME, "wb")  # noqa: SIM115 - closed in finish/abort
        self._landmarks: list[np.ndarray] = []
        self._found: list[bool] = []

    @property
    def num_frames(self) -> int:
        return len(self._found)

    def append(self, crop: np.ndarray | None, landmarks: np.ndarray | None) -> None:
        """One frame: crop uint8[S, S, 3] and landmarks float32[478, 3], or None, None (no face)."""
        s = self.crop_size
        if crop is None:
            self._crops.write(bytes(s * s * 3))
            self._landmarks.append(np.zeros((NUM_LANDMARKS, 3), np.float32))
            self._found.append(False)
            return
        if crop.shape != (s, s, 3) or crop.dtype != np.uint8:
            raise ValueError(f"crop must be uint8[{s}, {s}, 3], got {crop.dtype}{crop.shape}")
        self._crops.write(np.ascontiguousarray(crop).tobytes())
        self._landmarks.append(np.asarray(landmarks, np.float32).reshape(NUM_LANDMARKS, 3))
        self._found.append(True)

    def finish(
        self,
        subject: str,
        labels: np.ndarray,
        mask: np.ndarray,
        au_names: tuple[str, ...],
        source: str,
    ) -> VideoEntry:
        """Write the arrays and entry.json, then rename the folder into STORE/videos.

        labels float32[N, K], mask bool[N, K] as read from the dataset; the stored mask is also
        False wherever no face was found.
        """
        self._crops.close()
        n = self.num_frames
        if labels.shape != (n, len(au_names)) or mask.shape != labels.shape:
            raise ValueError(
                f"labels of {self.video_id} are {labels.shape}, expected ({n}, {len(au_names)})"
            )
        found = np.asarray(self._found, bool)
        stored_mask = mask.astype(bool) & found[:, None]
        landmarks = np.stack(self._landmarks) if n else np.zeros((0, NUM_LANDMARKS, 3), np.float32)
        np.save(self.path / LANDMARKS_NAME, landmarks)
        np.save(self.path / FACE_FOUND_NAME, found)
        np.save(self.path / LABELS_NAME, labels.astype(np.float32))
        np.save(self.path / MASK_NAME, stored_mask)
        entry = VideoEntry(
            id=self.video_id,
            subject=subject,
            num_frames=n,
            folder=self.folder,
            faces_found=int(found.sum()),
            labeled_frames={a: int(c) for a, c in zip(au_names, stored_mask.sum(0), strict=True)},
            source=source,
        )
        write_json_atomic(self.path / ENTRY_NAME, entry.to_json())
        target = self.store_root / VIDEOS_DIR / self.folder
        if target.exists():  # a stale copy adopted earlier but since dropped: replace it
            shutil.rmtree(target)
        os.replace(self.path, target)
        return entry

    def abort(self) -> None:
        if not self._crops.closed:
            self._crops.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> VideoEntryWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()
