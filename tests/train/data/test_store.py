"""Clip store: round trip, atomic visibility, recovery, label-fraction sampling, clip sampling.

The stores here are written through the real writer (train/data/store_writer.py) from synthetic
arrays, so these tests need no face detection. Run:
`python -m pytest tests/train/data/test_store.py -q`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtau.contract import ALIGNMENT_DEFAULT, ALIGNMENT_FIVE_POINT, ALIGNMENT_RIGID
from train.data.store import (
    INDEX_NAME,
    VIDEOS_DIR,
    ClipSampler,
    ClipStore,
    StoreError,
    check_alignment,
    common_alignment,
    sample_label_fraction,
    sequential_clips,
)
from train.data.store_writer import PARTIAL_DIR, StoreHeader, StoreWriter, VideoEntryWriter

S = 16
AUS = ("AU06", "AU12")
HEADER = StoreHeader("disfa", S, AUS, "/data/DISFA")


def make_video(n: int, seed: int, label_every: int = 1):
    """Random crops/landmarks, a face missing every 7th frame, labels on every label_every-th."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
    landmarks = rng.random((n, 478, 3), dtype=np.float32) * 100
    found = np.arange(n) % 7 != 3
    labels = rng.integers(0, 6, size=(n, len(AUS))).astype(np.float32)
    mask = np.zeros((n, len(AUS)), bool)
    mask[::label_every] = True
    mask[::5, 1] = False  # one AU not coded on some frames (BP4D's 9)
    labels[~mask] = 0
    return crops, landmarks, found, labels, mask


def write_video(writer: StoreWriter, video_id: str, video) -> None:
    crops, landmarks, found, labels, mask = video
    with VideoEntryWriter(writer.root, video_id, S) as out:
        for crop, lm, f in zip(crops, landmarks, found, strict=True):
            out.append(crop if f else None, lm if f else None)
        entry = out.finish(video_id.split("/")[0], labels, mask, AUS, f"/data/{video_id}")
    writer.add(entry)


@pytest.fixture
def store_with(tmp_path):
    def build(videos: dict) -> ClipStore:
        with StoreWriter(tmp_path / "store", HEADER) as writer:
            for video_id, video in videos.items():
                write_video(writer, video_id, video)
        return ClipStore(tmp_path / "store")

    return build


def test_round_trip(store_with):
    videos = {"SN001": make_video(30, 0), "odd id/with spaces.mp4": make_video(12, 1)}
    store = store_with(videos)
    assert store.au_names == AUS and store.crop_size == S and store.dataset == "disfa"
    assert store.video_ids == sorted(videos)
    for video_id, (crops, landmarks, found, labels, mask) in videos.items():
        entry = store.entry(video_id)
        assert entry.num_frames == len(crops) and entry.faces_found == found.sum()
        stored = store.crops(video_id)
        assert isinstance(stored, np.memmap) and not stored.flags.writeable
        np.testing.assert_array_equal(stored[found], crops[found])
        assert (stored[~found] == 0).all()
        np.testing.assert_array_equal(store.landmarks(video_id)[found], landmarks[found])
        assert (store.landmarks(video_id)[~found] == 0).all()
        np.testing.assert_array_equal(store.face_found(video_id), found)
        np.testing.assert_array_equal(store.labels(video_id), labels)
        np.testing.assert_array_equal(store.label_mask(video_id), mask & found[:, None])
        assert entry.labeled_frames == {
            a: int((mask & found[:, None])[:, k].sum()) for k, a in enumerate(AUS)
        }


def test_unknown_video_and_missing_store(store_with, tmp_path):
    store = store_with({"SN001": make_video(5, 0)})
    with pytest.raises(StoreError, match=r"no video 'SN404'"):
        store.crops("SN404")
    with pytest.raises(StoreError, match=r"not a clip store"):
        ClipStore(tmp_path / "nothing")


def test_partial_video_is_never_visible_and_is_cleaned(tmp_path):
    root = tmp_path / "store"
    crops, landmarks, found, labels, mask = make_video(10, 0)
    with StoreWriter(root, HEADER) as writer:
        write_video(writer, "SN001", make_video(10, 0))
        half = VideoEntryWriter(root, "SN002", S)
        for i in range(5):
            half.append(crops[i], landmarks[i])
        # interrupted here: a reader sees only the complete video
        assert ClipStore(root).video_ids == ["SN001"]
        assert any((root / PARTIAL_DIR).iterdir())
    with StoreWriter(root, HEADER) as writer:  # a resumed prepare
        assert writer.done_ids() == {"SN001"}
        assert not any((root / PARTIAL_DIR).iterdir())


def test_video_renamed_but_not_indexed_is_adopted(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, HEADER) as writer:
        write_video(writer, "SN001", make_video(6, 0))
        with VideoEntryWriter(root, "SN002", S) as out:
            for _ in range(4):
                out.append(None, None)
            out.finish("SN002", np.zeros((4, 2), np.float32), np.ones((4, 2), bool), AUS, "x")
        # interrupted between the rename and the index update
        assert ClipStore(root).video_ids == ["SN001"]
    with StoreWriter(root, HEADER) as writer:
        assert writer.done_ids() == {"SN001", "SN002"}
    store = ClipStore(root)
    assert store.video_ids == ["SN001", "SN002"] and not store.label_mask("SN002").any()


def test_failed_video_leaves_nothing(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, HEADER) as writer:
        with pytest.raises(RuntimeError, match="decoder died"):
            with VideoEntryWriter(root, "SN001", S) as out:
                out.append(None, None)
                raise RuntimeError("decoder died")
        assert writer.done_ids() == set()
    assert not any((root / PARTIAL_DIR).iterdir()) and not any((root / VIDEOS_DIR).iterdir())


def test_lock_and_settings_mismatch(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, HEADER):
        with pytest.raises(StoreError, match=r"another prepare is writing this store"):
            StoreWriter(root, HEADER)
    other = StoreHeader("disfa", 2 * S, AUS, "/data/DISFA")
    with pytest.raises(StoreError, match=r"crop_size 16, not 32"):
        StoreWriter(root, other)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.pdf").write_text("keep me")
    with pytest.raises(StoreError, match=r"busy: folder is not empty and is not a clip store"):
        StoreWriter(tmp_path / "busy", HEADER)


def test_corrupt_crops_are_reported(store_with):
    store = store_with({"SN001": make_video(5, 0)})
    path = store.root / VIDEOS_DIR / store.entry("SN001").folder / "crops.u8"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(StoreError, match=r"crops\.u8: \d+ bytes, expected"):
        ClipStore(store.root).crops("SN001")


def labeled_frames(store, ids=None):
    return {v: store.label_mask(v).any(axis=1) for v in ids or store.video_ids}


def test_label_fraction_exact_deterministic_and_only_labeled(store_with):
    store = store_with(
        {"A": make_video(400, 0, label_every=1), "B": make_video(300, 1, label_every=3)}
    )
    labeled = labeled_frames(store)
    total = sum(m.sum() for m in labeled.values())
    for fraction in (0.01, 0.02, 0.05, 0.5, 1.0):
        chosen = sample_label_fraction(store, fraction, seed=3)
        assert set(chosen) == {"A", "B"}
        assert sum(c.sum() for c in chosen.values()) == max(1, round(fraction * total))
        for v, c in chosen.items():
            assert c.dtype == bool and c.shape == (store.entry(v).num_frames,)
            assert not (c & ~labeled[v]).any()  # only labeled frames
    again = sample_label_fraction(store, 0.05, seed=3, video_ids=["B", "A"])
    first = sample_label_fraction(store, 0.05, seed=3)
    other = sample_label_fraction(store, 0.05, seed=4)
    assert all(np.array_equal(again[v], first[v]) for v in first)
    assert not all(np.array_equal(other[v], first[v]) for v in first)
    small, large = (sample_label_fraction(store, f, seed=3) for f in (0.02, 0.05))
    assert all(not (small[v] & ~large[v]).any() for v in small)  # nested for one seed
    with pytest.raises(ValueError, match=r"label fraction must be in \(0, 1\]"):
        sample_label_fraction(store, 0.0, seed=0)


def test_label_fraction_is_uniform_over_pooled_frames(store_with):
    store = store_with({"A": make_video(300, 0), "B": make_video(100, 1)})
    labeled = labeled_frames(store)
    draws, fraction = 400, 0.1
    counts = {v: np.zeros(len(m)) for v, m in labeled.items()}
    for seed in range(draws):
        for v, c in sample_label_fraction(store, fraction, seed).items():
            counts[v] += c
    pooled = np.concatenate([counts[v][labeled[v]] for v in sorted(labeled)])
    expected = draws * fraction
    # every labeled frame is drawn about equally often (binomial: sd = 6 at 40 expected)
    assert abs(pooled.mean() - expected) < 1.0
    assert pooled.min() > expected - 5 * 6 and pooled.max() < expected + 5 * 6
    # pooled, not per video: A holds ~3/4 of the labeled frames and gets ~3/4 of the draws
    share_a = counts["A"].sum() / pooled.sum()
    assert abs(share_a - labeled["A"].sum() / sum(m.sum() for m in labeled.values())) < 0.01


def test_clip_sampler_shapes_masks_and_determinism(store_with):
    videos = {"A": make_video(40, 0), "B": make_video(25, 1), "short": make_video(5, 2)}
    store = store_with(videos)
    frame_mask = sample_label_fraction(store, 0.2, seed=0)
    sampler = ClipSampler(store, clip_len=8, frame_mask=frame_mask, seed=7)
    assert sampler.num_clips == (40 - 7) + (25 - 7)  # "short" cannot hold a clip
    clips = [sampler.sample() for _ in range(50)]
    repeat = ClipSampler(store, clip_len=8, frame_mask=frame_mask, seed=7)
    for clip in clips:
        again = repeat.sample()
        assert (again.video_id, again.start) == (clip.video_id, clip.start)
        crops, _, found, labels, mask = videos[clip.video_id]
        t = slice(clip.start, clip.start + 8)
        assert clip.images.shape == (8, S, S, 3) and clip.images.dtype == np.uint8
        assert clip.labels.shape == (8, 2) and clip.labels.dtype == np.float32
        assert clip.mask.shape == (8, 2) and clip.mask.dtype == bool
        np.testing.assert_array_equal(clip.images[found[t]], crops[t][found[t]])
        np.testing.assert_array_equal(clip.labels, labels[t])
        expected_mask = mask[t] & found[t, None] & frame_mask[clip.video_id][t, None]
        np.testing.assert_array_equal(clip.mask, expected_mask)
        np.testing.assert_array_equal(clip.face_found, found[t])
    assert {c.video_id for c in clips} == {"A", "B"}


def test_clip_sampler_is_uniform_over_positions(store_with):
    store = store_with({"A": make_video(60, 0), "B": make_video(20, 1)})
    sampler = ClipSampler(store, clip_len=10, seed=0)
    draws = [sampler.sample() for _ in range(3000)]
    share_a = np.mean([c.video_id == "A" for c in draws])
    assert abs(share_a - 51 / 62) < 0.03  # 51 of the 62 positions are in A
    starts = np.array([c.start for c in draws if c.video_id == "A"])
    assert starts.min() == 0 and starts.max() == 50


def test_clip_sampler_labeled_only(store_with):
    store = store_with({"A": make_video(200, 0)})
    frame_mask = sample_label_fraction(store, 0.02, seed=1)
    sampler = ClipSampler(store, clip_len=16, frame_mask=frame_mask, seed=0, labeled_only=True)
    assert all(sampler.sample().mask.any() for _ in range(200))
    plain = ClipSampler(store, clip_len=16, frame_mask=frame_mask, seed=0)
    assert not all(plain.sample().mask.any() for _ in range(200))
    with pytest.raises(StoreError, match=r"no selected video has at least 500 frames"):
        ClipSampler(store, clip_len=500)


def test_sequential_clips_cover_the_video_in_order(store_with):
    videos = {"A": make_video(23, 0)}
    store = store_with(videos)
    clips = list(sequential_clips(store, "A", 10))
    assert [c.start for c in clips] == [0, 10, 20]
    assert [len(c.images) for c in clips] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate([c.labels for c in clips]), videos["A"][3])
    sampler = ClipSampler(store, clip_len=4)
    assert [c.start for c in sampler.sequential_clips("A")][:3] == [0, 4, 8]


def test_index_is_valid_json_listing_only_complete_videos(store_with):
    store = store_with({"SN001": make_video(5, 0), "SN002": make_video(6, 1)})
    index = json.loads((store.root / INDEX_NAME).read_text())
    assert [v["id"] for v in index["videos"]] == ["SN001", "SN002"]
    for record in index["videos"]:
        assert (store.root / VIDEOS_DIR / record["folder"] / "entry.json").is_file()


def test_the_index_records_the_alignment_and_resuming_keeps_it(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, HEADER) as writer:
        write_video(writer, "SN001", make_video(4, 0))
    assert HEADER.alignment == ALIGNMENT_DEFAULT == "rigid/2"  # new stores: rigid/2
    assert json.loads((root / INDEX_NAME).read_text())["alignment"] == ALIGNMENT_DEFAULT
    assert ClipStore(root).alignment == ALIGNMENT_DEFAULT
    legacy = StoreHeader("disfa", S, AUS, "/data/DISFA", ALIGNMENT_FIVE_POINT)
    with pytest.raises(StoreError, match=r"alignment 'rigid/2', not 'five-point/1'"):
        StoreWriter(root, legacy)


def test_a_store_from_before_alignment_was_recorded_is_five_point(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, HEADER) as writer:
        write_video(writer, "SN001", make_video(4, 0))
    index = json.loads((root / INDEX_NAME).read_text())
    del index["alignment"]
    (root / INDEX_NAME).write_text(json.dumps(index))
    assert ClipStore(root).alignment == ALIGNMENT_FIVE_POINT
    with StoreWriter(root, StoreHeader("disfa", S, AUS, "/data/DISFA", ALIGNMENT_FIVE_POINT)):
        pass  # resumable with the alignment it was made with
    with pytest.raises(StoreError, match=r"alignment 'five-point/1', not 'rigid/2'"):
        StoreWriter(root, HEADER)
    unfiltered = StoreHeader("disfa", S, AUS, "/data/DISFA", ALIGNMENT_RIGID)
    with pytest.raises(StoreError, match=r"alignment 'five-point/1', not 'rigid/1'"):
        StoreWriter(root, unfiltered)


def test_stores_or_checkpoints_of_different_alignments_do_not_mix(tmp_path):
    stores = []
    for name, alignment in (("a", ALIGNMENT_RIGID), ("b", ALIGNMENT_RIGID),
                            ("c", ALIGNMENT_FIVE_POINT)):
        header = StoreHeader("disfa", S, AUS, "/data/DISFA", alignment)
        with StoreWriter(tmp_path / name, header) as writer:
            write_video(writer, "SN001", make_video(4, 0))
        stores.append(ClipStore(tmp_path / name))
    assert common_alignment(stores[:2]) == ALIGNMENT_RIGID
    with pytest.raises(StoreError, match=r"aligned differently .*c five-point/1.*rigid/1"):
        common_alignment(stores)
    check_alignment("run.pt", {"alignment": ALIGNMENT_RIGID}, stores[0])
    check_alignment("old.pt", {}, stores[2])  # no record: trained before it was recorded
    with pytest.raises(StoreError, match=r"old.pt was trained on five-point/1 crops, the store"):
        check_alignment("old.pt", {}, stores[0])
