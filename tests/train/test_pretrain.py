"""Stage 1: loss falls on a learnable toy store, exact resume, non-finite stop, torchrun.

The store is a real clip store written by the real writer (tests/train/toy_store.py).
Run: `python -m pytest tests/train/test_pretrain.py -q`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.train.resume import interrupted_then_resumed
from tests.train.toy_store import make_toy_store
from train.__main__ import app
from train.data.store import StoreError
from train.loop import NonFiniteLoss, config_dict, lr_at
from train.model import load_checkpoint
from train.pretrain import PretrainConfig, pretrain

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre") / "store"
    make_toy_store(root, videos=6, frames=48)
    return root


def config(store: Path, out: Path, **changes) -> PretrainConfig:
    base = PretrainConfig(store=(store,), out=out, steps=6, batch_size=4, clip_len=6,
                          max_offset=3, tiny=True, warmup_steps=2, lr=3e-3, quiet=True,
                          checkpoint_every=100, device="cpu")
    return dataclasses.replace(base, **changes)


def test_lr_schedule_is_a_pure_function_of_the_step():
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 1.0, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_at(55, 1.0, 10, 100, 0.1) == lr_at(55, 1.0, 10, 100, 0.1)


def test_clip_loss_decreases_on_a_learnable_store(store, tmp_path):
    losses: list[float] = []
    pretrain(config(store, tmp_path / "p.pt", steps=40, batch_size=6, method="simclr"),
             on_step=lambda s, v: losses.append(v))
    assert len(losses) == 40
    chance = math.log(2 * 6 - 1)  # 2B - 1 candidates, all alike at the start
    early, late = sum(losses[:3]) / 3, sum(losses[-10:]) / 10
    assert early > 0.5 * chance and late < 0.6 * chance and late < early, (early, late)
    ckpt = load_checkpoint(tmp_path / "p.pt")
    assert ckpt.step == 40 and ckpt.extra["stage"] == "pretrain"
    assert len(ckpt.extra["history"]) == 40 and "projector.net.0.weight" in ckpt.extra["objective"]


def test_dynamics_loss_decreases_and_the_probe_runs_at_checkpoints(tmp_path):
    fit = make_toy_store(tmp_path / "fit", videos=4, frames=48, seed=1)
    unseen = make_toy_store(tmp_path / "unseen", videos=2, frames=48, seed=2)
    stage1 = make_toy_store(tmp_path / "stage1", videos=3, frames=48, seed=3)
    # toy stores name subjects TOY001...: give the unseen ones other names, as other people
    for root in (unseen.root,):
        index = json.loads((root / "index.json").read_text())
        for v in index["videos"]:
            v["subject"] = "NEW" + v["subject"]
        (root / "index.json").write_text(json.dumps(index))
    losses: list[float] = []
    cfg = config(stage1.root, tmp_path / "d.pt", method="dynamics", steps=30, batch_size=8,
                 clip_len=6, clips_per_video=4, checkpoint_every=15, probe_store=fit.root,
                 probe_test_store=unseen.root)
    pretrain(cfg, on_step=lambda s, v: losses.append(v))
    early, late = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert late < 0.8 * early, (early, late)
    ckpt = load_checkpoint(cfg.out)
    assert [p["step"] for p in ckpt.extra["probe"]] == [15, 30]
    assert set(ckpt.extra["probe"][0]) >= {"frame_icc", "gru_icc", "frame_mae", "gru_pcc"}
    assert ckpt.extra["train_identities"] == ["disfa:TOY001", "disfa:TOY002", "disfa:TOY003"]
    assert "frame_projector.net.0.weight" in ckpt.extra["objective"]
    # a probe scored on people stage 1 trained on is refused
    with pytest.raises(ValueError, match="probe's test identities are in the stage 1 stores"):
        pretrain(dataclasses.replace(cfg, out=tmp_path / "e.pt", probe_test_store=fit.root))


def test_a_geometry_model_pretrains_on_landmarks_and_initialises_stage_2(tmp_path):
    fit = make_toy_store(tmp_path / "fit", videos=4, frames=48, seed=1)
    unseen = make_toy_store(tmp_path / "unseen", videos=2, frames=48, seed=2)
    index = json.loads((unseen.root / "index.json").read_text())
    for v in index["videos"]:
        v["subject"] = "NEW" + v["subject"]
    (unseen.root / "index.json").write_text(json.dumps(index))
    losses: list[float] = []
    # --method auto: geometry models run the dynamics objective
    assert config(fit.root, tmp_path / "i.pt").objective == "simclr"
    cfg = config(fit.root, tmp_path / "g.pt", inputs="geometry", steps=30,
                 batch_size=8, clip_len=8, clips_per_video=4, margin=2, checkpoint_every=30,
                 probe_store=fit.root, probe_test_store=unseen.root)
    pretrain(cfg, on_step=lambda s, v: losses.append(v))
    early, late = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert late < 0.8 * early, (early, late)
    ckpt = load_checkpoint(cfg.out)
    assert cfg.objective == "dynamics" and "frame_projector.net.0.weight" in ckpt.extra["objective"]
    assert ckpt.model.cfg.inputs == "geometry" and ckpt.model.backbone is None
    probe = ckpt.extra["probe"][0]
    assert probe["step"] == 30 and math.isfinite(probe["frame_icc"])
    from train.finetune import FinetuneConfig, finetune

    out = finetune(FinetuneConfig(store=fit.root, out=tmp_path / "ft.pt", init=str(cfg.out),
                                  steps=2, batch_size=2, seq_len=4, tiny=True, quiet=True,
                                  device="cpu"))
    tuned = load_checkpoint(out)
    assert tuned.model.cfg.inputs == "geometry"
    report = tuned.extra["init_report"]
    assert "geometry_encoder.net.0.weight" in report["loaded"] and "gru.input_proj.weight" in \
        report["loaded"]
    assert not report["mismatched"] and all(k.startswith("head.") for k in report["missing"])


def test_clip_methods_refuse_a_geometry_model_in_one_line(store, tmp_path):
    result = CliRunner().invoke(app, [
        "pretrain", "--store", str(store), "--out", str(tmp_path / "p.pt"), "--tiny",
        "--steps", "1", "--method", "simclr", "--inputs", "geometry", "--device", "cpu",
    ])
    assert result.exit_code != 0 and "geometry models take a dynamics method" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("method", ["dynamics", "simclr", "moco"])
def test_resume_after_interruption_equals_an_uninterrupted_run(store, tmp_path, method):
    whole = config(store, tmp_path / "whole.pt", method=method, queue_size=16)
    a, b, saved = interrupted_then_resumed(pretrain, whole, tmp_path / "parts.pt", stop_at=2)
    assert saved == 3 and a.step == b.step == 6  # saved on the interrupt, atomically
    for key, value in a.extra["objective"].items():
        assert torch.equal(value, b.extra["objective"][key]), key
    assert a.extra["optimizer"]["state"][0]["exp_avg"].equal(
        b.extra["optimizer"]["state"][0]["exp_avg"]
    )


def test_resume_with_other_settings_is_refused(store, tmp_path):
    pretrain(config(store, tmp_path / "p.pt", steps=1))
    with pytest.raises(ValueError, match="other settings \\(lr\\)"):
        pretrain(config(store, tmp_path / "p.pt", steps=2, lr=1e-2))
    other = make_toy_store(tmp_path / "other", videos=3, frames=48, seed=5)
    with pytest.raises(ValueError, match="other settings \\(store\\)"):
        pretrain(config(other.root, tmp_path / "p.pt", steps=2))


def test_records_the_alignment_and_refuses_to_mix_alignments(store, tmp_path):
    out = pretrain(config(store, tmp_path / "p.pt", steps=1))
    assert load_checkpoint(out).extra["alignment"] == "rigid/1"
    legacy = make_toy_store(tmp_path / "legacy", videos=2, frames=12, alignment="five-point/1")
    with pytest.raises(StoreError, match="aligned differently"):
        pretrain(dataclasses.replace(config(store, tmp_path / "mixed.pt"),
                                     store=(store, legacy.root)))
    assert not (tmp_path / "mixed.pt").exists()


def test_non_finite_loss_stops_without_writing(store, tmp_path):
    # a vanishing temperature makes the logits infinite: a real NaN through the real loop
    bad = config(store, tmp_path / "nan.pt", temperature=1e-45)
    with pytest.raises(NonFiniteLoss, match="non-finite loss .* at step 0"):
        pretrain(bad)
    assert not bad.out.exists()
    result = CliRunner().invoke(app, [
        "pretrain", "--store", str(store), "--out", str(bad.out), "--tiny", "--steps", "2",
        "--batch-size", "2", "--clip-len", "4", "--temperature", "1e-45", "--quiet",
        "--device", "cpu",
    ])
    assert result.exit_code == 1 and "error: non-finite loss" in result.output
    assert "Traceback" not in result.output


def test_the_command_writes_its_flags_and_the_config_defaults_into_the_run(store, tmp_path):
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(app, [
        "pretrain", "--store", str(store), "--out", str(out), "--tiny", "--steps", "2",
        "--batch-size", "2", "--clip-len", "4", "--max-offset", "2", "--quiet", "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    expected = PretrainConfig(store=(store,), out=out, tiny=True, steps=2, batch_size=2,
                              clip_len=4, max_offset=2, quiet=True, device="cpu")
    assert load_checkpoint(out).extra["train_config"] == config_dict(expected)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent
                    / "torchrun").exists(), reason="torchrun not installed")
def test_torchrun_two_processes_gloo(store, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "train", "pretrain",
         "--store", str(store), "--out", str(out), "--tiny", "--steps", "3",
         "--batch-size", "3", "--clip-len", "4", "--max-offset", "2", "--quiet",
         "--device", "cpu"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = load_checkpoint(out)
    assert ckpt.step == 3 and len(ckpt.extra["history"]) == 3
