"""`python -m train recipe`: resolving a recipe file, and the smoke preset end to end.

The end-to-end test runs the real `default` recipe at its `smoke` preset (real synth, MediaPipe
prepare, both training stages, evaluation, ONNX export with parity) as a user would: in a
subprocess, interrupted with Ctrl-C (SIGINT) while stage 2 runs, then run again to the end, then
once more (nothing left to do). Run: `python -m pytest tests/train/test_recipe.py -q`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtau.contract import read_onnx_contract, sha256_file
from tests.conftest import default_sigint
from train.__main__ import app
from train.recipe import STAGES, RecipeConfig, RecipeError, resolve

ROOT = Path(__file__).resolve().parents[2]
SMOKE_FINETUNE_STEPS = 8  # long enough to interrupt it between its checkpoints
INTERRUPT_TIMEOUT_S = 600
RUN_TIMEOUT_S = 900


def _recipe(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "recipe", "default", "--preset", "smoke",
            "--out", str(out), "--device", "cpu", "--workers", "1", *extra]


def _state(out: Path) -> dict:
    try:
        return json.loads((out / "recipe.json").read_text())
    except (OSError, ValueError):
        return {}


def test_presets_and_overrides_resolve_to_stage_configs(tmp_path):
    cpu = resolve(RecipeConfig(preset="cpu", out=tmp_path))
    smoke = resolve(RecipeConfig(preset="smoke", out=tmp_path,
                                 set=("finetune.steps=7", "synth.seed=5")))
    # the default (cpu) model: geometry alone, stage 1 on the training videos, then BPTT from
    # it; no frames phase. Stage 1's probe fits on the training store, scores the unseen people
    assert cpu.frames is None and cpu.pretrain.inputs == "geometry"
    assert cpu.pretrain.method == "dynamics" and cpu.pretrain.store == (cpu.prepare_train.out,)
    assert cpu.pretrain.probe_store == cpu.prepare_train.out
    assert cpu.pretrain.probe_test_store == cpu.prepare_test.out
    assert cpu.finetune.init == str(cpu.pretrain.out) and cpu.finetune.inputs == "geometry"
    assert cpu.finetune.seq_len >= 16 and cpu.finetune.store == cpu.prepare_train.out
    # the image-geometry preset: stage 1 -> single frames -> BPTT, each from the one before
    both = resolve(RecipeConfig(preset="image-geometry", out=tmp_path))
    assert both.frames.seq_len == 1 and both.frames.init == str(both.pretrain.out)
    assert both.finetune.seq_len >= 16 and both.finetune.init == str(both.frames.out)
    assert both.frames.inputs == both.finetune.inputs == "image+geometry"
    assert both.pretrain.inputs == "image" and both.pretrain.method == "simclr"
    assert both.frames.store == both.finetune.store == both.prepare_train.out
    no_frames = resolve(RecipeConfig(preset="image-geometry", out=tmp_path,
                                     set=("frames.steps=0",)))
    assert no_frames.frames is None and no_frames.finetune.init == str(no_frames.pretrain.out)
    assert smoke.finetune.steps == 7 and smoke.synth[0].seed == 5
    assert smoke.pretrain.tiny and smoke.finetune.tiny and not both.pretrain.tiny
    assert smoke.synth[0].size == (320, 240)
    # stage 1 sees the training synth only (real clips on request), never the test subjects
    assert both.pretrain.store == (both.prepare_train.out,) and both.prepare_real is None
    assert cpu.evaluate.store == cpu.prepare_test.out
    assert both.prepare_test.out not in (both.finetune.store, *both.pretrain.store)
    clips = resolve(RecipeConfig(preset="image-geometry", out=tmp_path,
                                 set=("pretrain.real_clips=true",)))
    assert clips.pretrain.store == (clips.prepare_train.out, clips.prepare_real.out)
    config = cpu.to_json()
    json.dumps(config)  # the manifest's training.config is plain JSON
    assert set(config["stages"]) >= {"synth", "pretrain", "frames", "finetune", "export"}


@pytest.mark.parametrize("overrides, message", [
    (("finetune.stepz=3",), "cannot set stepz"),
    (("finetune.out=/tmp/x",), "cannot set out"),
    (("finetune.seq_len=8",), "at least 16"),
    (("nosuch.steps=1",), "SECTION.FIELD=VALUE"),
    (("pretrain.real_clips=1",), "true or false"),
    (("finetune.steps=abc",), r"must be int \(like 1000\), got 'abc'"),
    (("synth.size=640",), "must be tuple"),
])
def test_bad_recipe_values_are_refused_by_name(tmp_path, overrides, message):
    with pytest.raises(RecipeError, match=message):
        resolve(RecipeConfig(preset="smoke", out=tmp_path, set=overrides))


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    for args, message in ((["recipe", "nosuch"], "no recipe 'nosuch'"),
                          (["recipe", "default", "--preset", "huge", "--out", str(tmp_path)],
                           "no preset 'huge'")):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_smoke_recipe_runs_end_to_end_and_resumes_after_ctrl_c(tmp_path):
    out = tmp_path / "recipe"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    extra = (f"--set=finetune.steps={SMOKE_FINETUNE_STEPS}",)
    proc = subprocess.Popen(_recipe(out, *extra), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)
    # Ctrl-C once stage 2 has written its first checkpoint
    deadline = time.monotonic() + INTERRUPT_TIMEOUT_S
    while not (out / "runs" / "finetune.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "stage 2 never wrote a checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=RUN_TIMEOUT_S)[0]
    assert proc.returncode == 130, log
    stopped = _state(out)["stages"]
    assert all(stopped[s]["done"] for s in ("synth", "prepare", "pretrain")), stopped
    assert not stopped["finetune"]["done"] and stopped["finetune"]["seconds"] > 0

    again = subprocess.run(_recipe(out, *extra), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pretrain: done" in again.stderr and "synth: done" in again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    model = Path(summary["model"])
    state = _state(out)["stages"]
    assert [s for s in STAGES if state[s]["done"]] == list(STAGES)
    assert state["finetune"]["attempts"] == 2 and state["pretrain"]["attempts"] == 1
    assert state["finetune"]["steps"] == SMOKE_FINETUNE_STEPS

    # the checkpoint resumed: every step ran exactly once
    import torch

    history = torch.load(out / "runs" / "finetune.pt", weights_only=True)["extra"]["history"]
    assert [h[0] for h in history] == list(range(SMOKE_FINETUNE_STEPS))

    manifest = json.loads(model.with_suffix(".json").read_text())
    assert manifest["onnx_sha256"] == sha256_file(model)
    assert read_onnx_contract(model).au_names == tuple(manifest["au_names"])
    training = manifest["training"]
    assert training["recipe"] == "default" and training["preset"] == "smoke"
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", training["commit"])
    assert [s["stage"] for s in training["stages"]] == list(STAGES[:-1])
    for stage in training["stages"]:
        assert stage["seconds"] > 0 and stage["steps"] > 0, stage
    assert training["config"]["stages"]["finetune"]["steps"] == SMOKE_FINETUNE_STEPS
    evaluation = training["evaluation"]
    assert set(evaluation["mean"]) >= {"icc", "pcc", "mae"}
    assert set(evaluation["per_au"]) == set(manifest["au_names"])
    assert set(evaluation["unseen_identities"]) <= set(evaluation["test_identities"])
    assert not set(evaluation["unseen_identities"]) & set(evaluation["training_identities"])
    assert manifest["limits"].startswith("Trained on synthetic")

    # a third run finds everything done and rewrites nothing
    stamp = {p: p.stat().st_mtime_ns for p in (model, out / "runs" / "finetune.pt")}
    third = subprocess.run(_recipe(out, *extra), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT_S)
    assert third.returncode == 0, third.stderr[-3000:]
    assert stamp == {p: p.stat().st_mtime_ns for p in stamp}

    # other recipe values in the same folder are refused, in one line
    other = subprocess.run(_recipe(out, "--set", "finetune.steps=3"), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert other.returncode == 1 and "other recipe values" in other.stderr
    assert "Traceback" not in other.stderr
