"""Train / test splits of synthetic data: which subjects (videos) belong to which split.

`python -m train synth` writes each subject's split (train or test identities, disjoint by
real person) into `synth.json`. `prepare --split` keeps the videos of one split; a clip store
finds the split of its videos through its index (`source_root`, the dataset folder it was
prepared from, which holds synth.json), so the trainers' `--split` reads the same file.

    subject_splits(Path("data/synth"))        # {"SYN001": "train", ...} or None (not synthetic)
    split_video_ids(store, "test")            # set of video ids, or None for "all"
"""

from __future__ import annotations

import json
from pathlib import Path

from train.data.source import DatasetError

SYNTH_META = "synth.json"
ALL = "all"
SPLIT_CHOICES = ("train", "test", ALL)


def check_split(split: str) -> None:
    if split not in SPLIT_CHOICES:
        raise ValueError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")


def subject_splits(root: Path) -> dict[str, str] | None:
    """subject id -> split from ROOT/synth.json; None when the folder has no synth.json."""
    path = Path(root) / SYNTH_META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        return {str(s["id"]): str(s["split"]) for s in meta["subjects"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{path}: no subject splits in it ({exc!r}); regenerate it with `python -m train "
            "synth`"
        ) from None


def select_subjects(root: Path, subjects: list[str], split: str) -> set[str] | None:
    """The subjects of `split` among `subjects` (None: all, for split "all")."""
    check_split(split)
    if split == ALL:
        return None
    splits = subject_splits(root)
    if splits is None:
        raise DatasetError(
            f"{root}: --split {split} needs synthetic data with a {SYNTH_META} (this folder "
            "has none); use --split all"
        )
    missing = sorted(set(subjects) - set(splits))
    if missing:
        raise DatasetError(f"{Path(root) / SYNTH_META}: no split for subjects {missing[:5]}")
    return {s for s in subjects if splits[s] == split}


def split_video_ids(store, split: str, strict: bool = True) -> set[str] | None:
    """Video ids of a `ClipStore` in `split` (None for "all"), via its source root's synth.json.

    strict=False: a store that is not synthetic data (no synth.json) is taken whole (None).
    """
    from train.data.store import read_index

    check_split(split)
    if split == ALL:
        return None
    root = Path(str(read_index(store.root).get("source_root", "")))
    if not strict and subject_splits(root) is None:
        return None
    chosen = select_subjects(root, sorted({v.subject for v in store.videos}), split)
    return {v.id for v in store.videos if v.subject in chosen}
