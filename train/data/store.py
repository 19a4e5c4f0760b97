"""The clip store: prepared face videos on disk, and the samplers that training reads them with.

`python -m train prepare` writes a store (see train/data/store_writer.py for how); training and
evaluation read it:

    store = ClipStore("stores/disfa")
    frames = sample_label_fraction(store, 0.02, seed=0)       # the 2% of METHOD.md
    sampler = ClipSampler(store, clip_len=64, frame_mask=frames, seed=0)
    clip = sampler.sample()   # images uint8[T, S, S, 3], labels float32[T, K], mask bool[T, K]

Layout of STORE:
    index.json                    format, crop size S, AU names, alignment of the crops
                                  (rtau.align; `five-point/1` if absent), one record per video
    videos/<folder>/crops.u8      raw uint8[N, S, S, 3] aligned BGR crops (zeros where no face)
    videos/<folder>/landmarks.npy float32[N, 478, 3] MediaPipe landmarks, frame pixels (0: none)
    videos/<folder>/face_found.npy bool[N]
    videos/<folder>/labels.npy    float32[N, K] intensities 0..5 (0 where not coded)
    videos/<folder>/mask.npy      bool[N, K] True where a label exists and the face was found
    videos/<folder>/entry.json    the video's record (written last, inside the folder)
A video appears in index.json only after its folder is complete, so readers never see half a
video. Frame i of the store is frame i of the source (frame number i + 1 in DISFA): gaps where
no face was found stay in place, masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtau.contract import ALIGNMENT_FIVE_POINT

STORE_FORMAT = "rtau-clip-store"
STORE_VERSION = 1
INDEX_NAME = "index.json"
VIDEOS_DIR = "videos"
ENTRY_NAME = "entry.json"
CROPS_NAME = "crops.u8"
LANDMARKS_NAME = "landmarks.npy"
FACE_FOUND_NAME = "face_found.npy"
LABELS_NAME = "labels.npy"
MASK_NAME = "mask.npy"
NUM_LANDMARKS = 478
CROP_CHANNELS = 3
LEGACY_ALIGNMENT = ALIGNMENT_FIVE_POINT
"""The alignment of a store whose index names none (stores prepared before it was recorded)."""


class StoreError(ValueError):
    """A clip store is missing, corrupt, or asked for something it does not hold."""


@dataclass(frozen=True)
class VideoEntry:
    """One complete video of a store.

    id: the reader's id (DISFA `SN001`, BP4D `F001_T1`, videos: path relative to the root).
    folder: its folder under STORE/videos. faces_found: frames with a face.
    labeled_frames: AU name -> number of frames with a label (face found, label present).
    source: the video file or frame folder it came from.
    """

    id: str
    subject: str
    num_frames: int
    folder: str
    faces_found: int = 0
    labeled_frames: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict, where: str) -> VideoEntry:
        try:
            return cls(
                id=str(record["id"]),
                subject=str(record["subject"]),
                num_frames=int(record["num_frames"]),
                folder=str(record["folder"]),
                faces_found=int(record.get("faces_found", 0)),
                labeled_frames={
                    str(k): int(v) for k, v in record.get("labeled_frames", {}).items()
                },
                source=str(record.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{where}: malformed video record ({exc!r})") from None


def read_index(root: Path) -> dict:
    """The parsed index.json of a store; StoreError if missing or not a store index."""
    path = root / INDEX_NAME
    if not path.is_file():
        raise StoreError(
            f"{root}: not a clip store (no {INDEX_NAME}; create one with `python -m train prepare`)"
        )
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable store index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != STORE_FORMAT:
        raise StoreError(f"{path}: not an rtau clip store index")
    if index.get("version") != STORE_VERSION:
        raise StoreError(
            f"{path}: store version {index.get('version')}, this code reads {STORE_VERSION}"
        )
    return index


class ClipStore:
    """Read access to a store; arrays are memory-mapped, opened on first use and kept open."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = read_index(self.root)
        where = str(self.root / INDEX_NAME)
        self.crop_size: int = int(index["crop_size"])
        self.au_names: tuple[str, ...] = tuple(index["au_names"])
        self.dataset: str = str(index.get("dataset", ""))
        self.source_root: str = str(index.get("source_root", ""))  # as given to prepare
        self.alignment: str = str(index.get("alignment", LEGACY_ALIGNMENT))
        self.videos: list[VideoEntry] = sorted(
            (VideoEntry.from_json(r, where) for r in index.get("videos", [])), key=lambda v: v.id
        )
        self._by_id = {v.id: v for v in self.videos}
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def num_aus(self) -> int:
        return len(self.au_names)

    @property
    def video_ids(self) -> list[str]:
        return [v.id for v in self.videos]

    def entry(self, video_id: str) -> VideoEntry:
        try:
            return self._by_id[video_id]
        except KeyError:
            raise StoreError(f"{self.root}: no video {video_id!r} in this store") from None

    def _folder(self, video_id: str) -> Path:
        return self.root / VIDEOS_DIR / self.entry(video_id).folder

    def _npy(self, video_id: str, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (video_id, name)
        if key not in self._arrays:
            path = self._folder(video_id) / name
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise StoreError(f"{path}: unreadable store array ({exc})") from None
            if array.shape != shape or array.dtype != np.dtype(dtype):
                raise StoreError(
                    f"{path}: holds {array.dtype}{list(array.shape)}, expected "
                    f"{np.dtype(dtype)}{list(shape)} (corrupt store)"
                )
            self._arrays[key] = array
        return self._arrays[key]

    def crops(self, video_id: str) -> np.ndarray:
        """uint8[N, S, S, 3] aligned BGR crops, memory-mapped read-only (zeros where no face)."""
        key = (video_id, CROPS_NAME)
        if key not in self._arrays:
            n, s = self.entry(video_id).num_frames, self.crop_size
            path = self._folder(video_id) / CROPS_NAME
            expected = n * s * s * CROP_CHANNELS
            size = path.stat().st_size if path.is_file() else -1
            if size != expected:
                raise StoreError(
                    f"{path}: {size} bytes, expected {expected} for {n} crops of {s}x{s} "
                    "(corrupt store)"
                )
            self._arrays[key] = np.memmap(
                path, dtype=np.uint8, mode="r", shape=(n, s, s, CROP_CHANNELS)
            )
        return self._arrays[key]

    def landmarks(self, video_id: str) -> np.ndarray:
        """float32[N, 478, 3] landmarks in frame pixels (z in MediaPipe's scale); 0 where none."""
        n = self.entry(video_id).num_frames
        return self._npy(video_id, LANDMARKS_NAME, (n, NUM_LANDMARKS, 3), np.float32)

    def face_found(self, video_id: str) -> np.ndarray:
        """bool[N]: a face was found in the frame."""
        n = self.entry(video_id).num_frames
        return self._npy(video_id, FACE_FOUND_NAME, (n,), np.bool_)

    def labels(self, video_id: str) -> np.ndarray:
        """float32[N, K] intensities in the order of `au_names`, as the dataset gives them.

        0 where the dataset has no label (BP4D's 9); frames without a face keep their label
        value but are masked: always use `label_mask` with it.
        """
        n = self.entry(video_id).num_frames
        return self._npy(video_id, LABELS_NAME, (n, self.num_aus), np.float32)

    def label_mask(self, video_id: str) -> np.ndarray:
        """bool[N, K]: True where a label exists and the face was found."""
        n = self.entry(video_id).num_frames
        return self._npy(video_id, MASK_NAME, (n, self.num_aus), np.bool_)


def common_alignment(stores: Sequence[ClipStore]) -> str:
    """The one alignment of all `stores`; StoreError if their crops were aligned differently."""
    found = {s.alignment: s for s in stores}
    if len(found) != 1:
        listed = ", ".join(f"{s.root} {a}" for a, s in sorted(found.items()))
        raise StoreError(f"the stores were aligned differently ({listed}): prepare them all with "
                         "the same --alignment")
    return next(iter(found))


def check_alignment(checkpoint: str | Path, extra: dict, store: ClipStore) -> None:
    """StoreError if a checkpoint (its `extra`) was trained on crops aligned unlike `store`'s.

    Checkpoints that record no alignment were trained before it was recorded: five-point.
    """
    trained = str(extra.get("alignment", LEGACY_ALIGNMENT))
    if trained != store.alignment:
        raise StoreError(f"{checkpoint} was trained on {trained} crops, the store {store.root} "
                         f"holds {store.alignment} crops")


def _selected_ids(store: ClipStore, video_ids: Sequence[str] | None) -> list[str]:
    ids = store.video_ids if video_ids is None else list(video_ids)
    for video_id in ids:
        store.entry(video_id)  # a clear error for an unknown id
    if not ids:
        raise StoreError(f"{store.root}: no videos selected")
    return ids


def sample_label_fraction(
    store: ClipStore, fraction: float, seed: int, video_ids: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """A fixed random subset of the labeled frames: video id -> bool[N] (True: use its labels).

    A frame counts as labeled when any AU has a label there. round(fraction * L) of the L labeled
    frames of all selected videos (at least 1) are drawn uniformly, without replacement, over the
    pooled frames (not per video), from `seed` alone: the same seed and videos give the same
    frames whatever order the ids come in. For one seed the subsets are nested: the 1% frames are
    among the 2% frames.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    ids = sorted(_selected_ids(store, video_ids))
    labeled = [store.label_mask(v).any(axis=1) for v in ids]
    offsets = np.cumsum([0] + [len(m) for m in labeled])
    positions = np.concatenate(
        [np.flatnonzero(m) + o for m, o in zip(labeled, offsets, strict=False)]
    )
    if len(positions) == 0:
        raise StoreError(f"{store.root}: the selected videos have no labeled frames")
    count = max(1, round(fraction * len(positions)))
    chosen = positions[np.random.default_rng(seed).permutation(len(positions))[:count]]
    flat = np.zeros(offsets[-1], bool)
    flat[chosen] = True
    return {v: flat[offsets[i] : offsets[i + 1]].copy() for i, v in enumerate(ids)}


@dataclass(frozen=True)
class Clip:
    """T consecutive frames of one video, from frame index `start` (0-based).

    images uint8[T, S, S, 3] BGR crops; labels float32[T, K]; mask bool[T, K] (label exists,
    face found, and the frame is in the sampler's frame mask); face_found bool[T].
    """

    images: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    video_id: str
    start: int
    face_found: np.ndarray | None = None


def read_clip(
    store: ClipStore, video_id: str, start: int, length: int, frame_mask: np.ndarray | None = None
) -> Clip:
    """Frames [start, start + length) of a video as a Clip (arrays copied out of the memmaps)."""
    stop = start + length
    n = store.entry(video_id).num_frames
    if not (0 <= start < stop <= n):
        raise StoreError(f"frames {start}..{stop - 1} are outside video {video_id!r} (N={n})")
    mask = np.array(store.label_mask(video_id)[start:stop])
    if frame_mask is not None:
        mask &= frame_mask[start:stop, None]
    return Clip(
        images=np.array(store.crops(video_id)[start:stop]),
        labels=np.array(store.labels(video_id)[start:stop]),
        mask=mask,
        video_id=video_id,
        start=start,
        face_found=np.array(store.face_found(video_id)[start:stop]),
    )


def sequential_clips(
    store: ClipStore, video_id: str, clip_len: int, frame_mask: np.ndarray | None = None
) -> Iterator[Clip]:
    """A whole video in order as consecutive clips of clip_len frames (the last may be shorter)."""
    if clip_len < 1:
        raise ValueError(f"clip length must be at least 1, got {clip_len}")
    n = store.entry(video_id).num_frames
    for start in range(0, n, clip_len):
        yield read_clip(store, video_id, start, min(clip_len, n - start), frame_mask)


class ClipSampler:
    """Random clips of clip_len consecutive frames, uniform over all clip positions of all videos.

    frame_mask: video id -> bool[N] (e.g. from sample_label_fraction); labels outside it are
    masked. labeled_only: draw only clips holding at least one usable label (stage 2 with sparse
    labels wastes no steps on clips without any). Videos shorter than clip_len are not sampled.
    Deterministic for a seed.
    """

    def __init__(
        self,
        store: ClipStore,
        clip_len: int,
        video_ids: Sequence[str] | None = None,
        frame_mask: dict[str, np.ndarray] | None = None,
        seed: int = 0,
        labeled_only: bool = False,
    ):
        if clip_len < 1:
            raise ValueError(f"clip length must be at least 1, got {clip_len}")
        self.store, self.clip_len, self.frame_mask = store, clip_len, frame_mask
        self.video_ids = _selected_ids(store, video_ids)
        self._rng = np.random.default_rng(seed)
        self._ids: list[str] = []
        self._starts: list[np.ndarray | None] = []  # None: every start 0..N-T is valid
        counts = []
        for video_id in self.video_ids:
            n = store.entry(video_id).num_frames
            if frame_mask is not None and np.shape(frame_mask.get(video_id)) != (n,):
                raise StoreError(f"frame mask of {video_id!r} must be bool[{n}]")
            if n < clip_len:
                continue
            starts = None
            num = n - clip_len + 1
            if labeled_only:
                usable = self._usable(video_id)
                windows = np.convolve(usable, np.ones(clip_len, int), mode="valid")
                starts = np.flatnonzero(windows > 0)
                num = len(starts)
            if num:
                self._ids.append(video_id)
                self._starts.append(starts)
                counts.append(num)
        if not counts:
            what = "a labeled clip of" if labeled_only else "at least"
            raise StoreError(f"{store.root}: no selected video has {what} {clip_len} frames")
        self._cumulative = np.cumsum(counts)

    def _usable(self, video_id: str) -> np.ndarray:
        usable = self.store.label_mask(video_id).any(axis=1)
        if self.frame_mask is not None:
            usable = usable & self.frame_mask[video_id]
        return usable.astype(int)

    @property
    def num_clips(self) -> int:
        """How many distinct clips the sampler draws from."""
        return int(self._cumulative[-1])

    def sample(self, rng: np.random.Generator | None = None) -> Clip:
        """One clip, drawn with `rng` if given (a trainer's per-step generator), else the
        sampler's own."""
        position = int((rng or self._rng).integers(self.num_clips))
        which = int(np.searchsorted(self._cumulative, position, side="right"))
        offset = position - (int(self._cumulative[which - 1]) if which else 0)
        starts = self._starts[which]
        start = offset if starts is None else int(starts[offset])
        video_id = self._ids[which]
        mask = None if self.frame_mask is None else self.frame_mask[video_id]
        return read_clip(self.store, video_id, start, self.clip_len, mask)

    def __iter__(self) -> Iterator[Clip]:
        while True:
            yield self.sample()

    def sequential_clips(self, video_id: str, clip_len: int | None = None) -> Iterator[Clip]:
        """The whole video in order (see module-level sequential_clips), with this frame mask."""
        mask = None if self.frame_mask is None else self.frame_mask.get(video_id)
        return sequential_clips(self.store, video_id, clip_len or self.clip_len, mask)
