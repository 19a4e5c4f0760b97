"""Tests of the train / test split of synthetic data: synth.json's identities and subjects,
`--test-subjects`, and split selection in `python -m train prepare` and the store.

Real components: the default identity pool (real portraits from registry packages), the real
MediaPipe FaceLandmarker, real MJPG videos, the real DISFA reader and prepare.

Run: /work/venv/bin/python -m pytest tests/train/data/test_splits.py -q
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from train.data.identities import identity_pool, split_people
from train.data.source import DatasetError
from train.data.splits import split_video_ids, subject_splits
from train.data.store import ClipStore
from train.data.synth import SynthConfig, count_test_subjects, run_synth
from train.prepare import PrepareConfig, prepare

SMALL = (320, 240)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    run_synth(SynthConfig(out=out, subjects=4, frames=3, seed=5, size=SMALL, workers=1,
                          test_subjects=2))
    return out


def test_synth_json_identities_and_subjects(synth_dir):
    meta = json.loads((synth_dir / "synth.json").read_text())
    identities = {i["id"]: i for i in meta["identities"]}
    assert len(identities) == len(meta["identities"])
    for ident in meta["identities"]:
        assert set(ident) >= {"id", "kind", "sources", "split"}
        assert ident["split"] in ("train", "test") and ident["sources"]
    counts = {s: sum(i["split"] == s for i in meta["identities"]) for s in ("train", "test")}
    assert counts["train"] >= 40 and counts["test"] >= 8, counts
    train_people = {p for i in meta["identities"] if i["split"] == "train" for p in i["sources"]}
    test_people = {p for i in meta["identities"] if i["split"] == "test" for p in i["sources"]}
    assert not train_people & test_people
    assert [s["split"] for s in meta["subjects"]] == ["train", "train", "test", "test"]
    for subject in meta["subjects"]:
        assert identities[subject["identity"]]["split"] == subject["split"]
    assert meta["splits"]["test"]["subjects"] == ["SYN003", "SYN004"]
    assert "nasolabial" in meta["limits"]
    # the same people as the pool, one real-face record each (licence, sha256, used)
    assert {r["person"] for r in meta["base_faces"]} == split_people(identity_pool())[
        "train"] | split_people(identity_pool())["test"]
    assert all(len(r["sha256"]) == 64 and r["licence"] for r in meta["base_faces"])


def test_count_test_subjects_default_and_bounds(tmp_path):
    def count(n, m=-1):
        return count_test_subjects(SynthConfig(out=tmp_path, subjects=n, test_subjects=m))

    assert [count(1), count(6), count(11), count(12), count(24)] == [1, 1, 1, 2, 4]
    assert count(24, 0) == 0 and count(24, 5) == 5
    folder = SynthConfig(out=tmp_path, subjects=12, faces=str(tmp_path))
    assert count_test_subjects(folder) == 0  # a folder of faces has no split unless asked
    with pytest.raises(ValueError, match="more than --subjects"):
        count(3, 4)


def test_prepare_selects_a_split(synth_dir, tmp_path):
    assert subject_splits(synth_dir) == {"SYN001": "train", "SYN002": "train",
                                         "SYN003": "test", "SYN004": "test"}
    quiet = Console(quiet=True)
    test_store = prepare(PrepareConfig("disfa", synth_dir, tmp_path / "test", workers=1,
                                       split="test"), quiet)
    assert test_store.video_ids == ["SYN003", "SYN004"]
    assert split_video_ids(test_store, "test") == {"SYN003", "SYN004"}
    assert split_video_ids(test_store, "train") == set()
    assert split_video_ids(test_store, "all") is None
    all_store = prepare(PrepareConfig("disfa", synth_dir, tmp_path / "all", workers=1), quiet)
    assert all_store.video_ids == ["SYN001", "SYN002", "SYN003", "SYN004"]
    assert split_video_ids(ClipStore(tmp_path / "all"), "train") == {"SYN001", "SYN002"}
    with pytest.raises(ValueError, match="--split must be one of"):
        prepare(PrepareConfig("disfa", synth_dir, tmp_path / "bad", workers=1, split="dev"))


def test_split_needs_synthetic_data(tmp_path, synth_dir):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(synth_dir, plain)
    (plain / "synth.json").unlink()
    with pytest.raises(DatasetError, match="needs synthetic data"):
        prepare(PrepareConfig("disfa", plain, tmp_path / "s", workers=1, split="train"),
                Console(quiet=True))
    store = prepare(PrepareConfig("disfa", plain, tmp_path / "s2", workers=1),
                    Console(quiet=True))
    assert split_video_ids(store, "train", strict=False) is None
    with pytest.raises(DatasetError, match="needs synthetic data"):
        split_video_ids(store, "test")
