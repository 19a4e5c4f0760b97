"""The protocol: subject-exclusive folds, identity leak check, whole videos, JSON + markdown.

Run: `python -m pytest tests/train/test_evaluate.py -q`.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.train.toy_store import TOY_AUS, TOY_SIZE, make_toy_store
from train.__main__ import app
from train.data.store import ClipStore, StoreError
from train.evaluate import (
    EvaluateConfig,
    check_no_leak,
    evaluate,
    fold_videos,
    predict_video,
    subject_folds,
    video_identities,
)
from train.finetune import FinetuneConfig, finetune
from train.model import AUModel, ModelConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("ev") / "store", videos=6, frames=40)


@pytest.fixture(scope="module")
def fold_checkpoints(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    base = FinetuneConfig(store=store.root, out=root / "f0.pt", num_folds=3, steps=40,
                          batch_size=4, seq_len=16, tiny=True, warmup_steps=2, lr=3e-3,
                          cnn_lr_scale=1.0, quiet=True, device="cpu")
    return [finetune(dataclasses.replace(base, fold=f, out=root / f"f{f}.pt")) for f in range(3)]


def test_folds_are_subject_exclusive_and_cover_every_subject(store):
    folds = subject_folds(store, 3)
    assert sorted(s for f in folds for s in f) == sorted({v.subject for v in store.videos})
    for fold in range(3):
        train, test = fold_videos(store, fold, 3)
        train_subjects = {store.entry(v).subject for v in train}
        test_subjects = {store.entry(v).subject for v in test}
        assert not train_subjects & test_subjects and test
    with pytest.raises(ValueError, match="cannot make 7 folds"):
        subject_folds(store, 7)


def test_chunks_carry_the_state(store):
    torch.manual_seed(0)
    model = AUModel(ModelConfig.tiny(au_names=TOY_AUS, crop_size=TOY_SIZE))
    whole = predict_video(model, store, "TOY001", chunk_len=1000)
    chunked = predict_video(model, store, "TOY001", chunk_len=7)
    assert whole.shape == (40, 2)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_evaluate_writes_tables_and_learns(store, fold_checkpoints, tmp_path):
    result = evaluate(EvaluateConfig(store.root, tuple(fold_checkpoints), tmp_path / "ev"))
    assert [f["fold"] for f in result["folds"]] == [0, 1, 2]
    pooled = result["pooled"]
    assert pooled["per_au"]["AU06"]["frames"] == 6 * 40  # every frame tested exactly once
    assert pooled["mean"]["icc"] > 0.3  # the toy AUs are learnable: well above chance
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved["pooled"]["mean"]["icc"] == pytest.approx(pooled["mean"]["icc"])
    text = (tmp_path / "ev" / "evaluation.md").read_text()
    assert "| AU06 |" in text and "Fold 2" in text


def test_evaluating_training_identities_is_refused(store, fold_checkpoints, tmp_path):
    with pytest.raises(StoreError, match="trained on test identities: disfa:TOY00"):
        evaluate(EvaluateConfig(store.root, (fold_checkpoints[0],), tmp_path, fold=1))
    # fold -1 (every video) holds the training identities too: refused, not skipped
    with pytest.raises(StoreError, match="trained on test identities"):
        evaluate(EvaluateConfig(store.root, (fold_checkpoints[0],), tmp_path, fold=-1))


def test_leak_check_compares_people_not_videos(tmp_path):
    extra = {"train_identities": ["synth:grace_hopper"], "init_identities": ["synth:obama"]}
    check_no_leak("a.pt", extra, {"SYN009": "synth:other"})  # another person: fine
    with pytest.raises(StoreError, match="synth:grace_hopper"):
        check_no_leak("a.pt", extra, {"SYN002": "synth:grace_hopper"})  # same person, new video
    with pytest.raises(StoreError, match="synth:obama"):
        check_no_leak("a.pt", extra, {"SYN001": "synth:obama"})  # seen by stage 1
    with pytest.raises(StoreError, match="does not record the identities"):
        check_no_leak("a.pt", {"train_videos": ["SYN001"]}, {"SYN009": "synth:other"})


def test_synthetic_identities_come_from_the_generator_manifest(tmp_path):
    make_toy_store(tmp_path / "store", videos=2, frames=4)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    index["source_root"] = str(tmp_path / "synth")
    (tmp_path / "store" / "index.json").write_text(json.dumps(index))
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "synth.json").write_text(json.dumps({"subjects": [
        {"id": "TOY001", "base_face": "grace_hopper"}, {"id": "TOY002", "base_face": "grace_hopper"}
    ]}))
    store = ClipStore(tmp_path / "store")
    assert video_identities(store, store.video_ids) == {"TOY001": "synth:grace_hopper",
                                                        "TOY002": "synth:grace_hopper"}


def test_a_store_of_another_alignment_is_refused(fold_checkpoints, tmp_path):
    legacy = make_toy_store(tmp_path / "legacy", videos=3, frames=12, alignment="five-point/1")
    with pytest.raises(StoreError, match="trained on rigid/1 crops"):
        evaluate(EvaluateConfig(legacy.root, (fold_checkpoints[0],), tmp_path / "ev"))


def test_cli(store, fold_checkpoints, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--store", str(store.root), "--checkpoint",
                                      str(fold_checkpoints[0]), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "ICC(3,1)" in result.output
    bad = CliRunner().invoke(app, ["evaluate", "--store", str(tmp_path / "nope"), "--checkpoint",
                                   str(fold_checkpoints[0]), "--out", str(tmp_path / "o")])
    assert bad.exit_code == 1 and bad.output.count("\n") <= 2 and "not a clip store" in bad.output


