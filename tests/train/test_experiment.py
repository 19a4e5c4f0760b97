"""The experiment command end to end on a micro preset: real synth, prepare, both stages, metrics.

The `smoke` preset (< 10 minutes on 2 cores) is too long for the test suite; this runs the same
code path on a preset a few times smaller and checks what it writes, then the verdict rule.
Run: `python -m pytest tests/train/test_experiment.py -q`.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import train.experiment as experiment
from train.__main__ import app

MICRO = experiment.Preset(
    train_subjects=2, test_subjects=1, frames=40, frame_size=(256, 192), crop_size=48,
    tiny=True, pretrain_steps=3, pretrain_batch=4, clip_len=4, clips_per_video=2,
    finetune_steps=2, finetune_batch=4, seq_len=2, lr=3e-3, fractions=(0.5, 1.0), seeds=(0,),
)


@pytest.mark.slow
def test_micro_experiment_writes_results_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(experiment.PRESETS, "micro", MICRO)
    out = tmp_path / "exp"
    result = CliRunner().invoke(app, ["experiment", "--preset", "micro", "--out", str(out),
                                      "--device", "cpu", "--workers", "1",
                                      "--results-dir", str(tmp_path / "published")])
    # a micro run learns nothing: the command says so, exits non-zero, publishes nothing
    assert result.exit_code == experiment.GATE_FAILED_EXIT, result.output
    assert '"gate_passed": false' in result.output
    assert not (tmp_path / "published").exists()
    data = json.loads((out / "experiment.json").read_text())
    assert not data["gate"]["passed"] and data["verdict"].startswith("No verdict")
    assert len(data["rows"]) == len(experiment.ARMS) * len(MICRO.fractions)
    for row in data["rows"]:
        assert set(row) == {"arm", "label_fraction", "seed", "icc", "pcc", "mae"}
        assert row["arm"] in experiment.ARMS
    half = [r["labeled_frames"] for r in data["runs"] if r["label_fraction"] == 0.5]
    full = [r["labeled_frames"] for r in data["runs"] if r["label_fraction"] == 1.0]
    assert 0 < max(half) < min(full)
    assert set(data["summary"]) == set(experiment.ARMS)
    assert data["machine"]["cpu_cores"] >= 1 and data["machine"]["tag"]
    assert [p["step"] for p in data["stage1_probe"]] == [1, 2, 3]  # probed at checkpoints
    text = (out / "experiment.md").read_text()
    assert text.startswith("# Experiment `micro`") and "FAILED the sanity gate" in text
    assert (out / "experiment.png").stat().st_size > 1000

    # every stage resumes: a second run finds the data, stores and checkpoints done
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.pt")}
    again = CliRunner().invoke(app, ["experiment", "--preset", "micro", "--out", str(out),
                                     "--device", "cpu", "--workers", "1"])
    assert again.exit_code == experiment.GATE_FAILED_EXIT, again.output
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.pt")}


def test_unknown_preset_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["experiment", "--preset", "huge", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown preset" in result.output and "Traceback" not in result.output


def _summary(pre: tuple[float, float], scratch: tuple[float, float]) -> dict:
    return {"pretrained": {"0.02": {"icc": list(pre)}}, "scratch": {"0.02": {"icc": list(scratch)}}}


PASSED = {"passed": True, "failures": []}


def test_verdict_weighs_the_difference_against_seed_noise():
    assert "pretraining helps" in experiment.verdict(_summary((0.60, 0.02), (0.40, 0.03)), PASSED)
    assert "pretraining hurts" in experiment.verdict(_summary((0.30, 0.02), (0.50, 0.03)), PASSED)
    assert "no clear difference" in experiment.verdict(_summary((0.52, 0.10), (0.45, 0.08)),
                                                       PASSED)
    assert "no clear difference" in experiment.verdict(_summary((0.501, 0.0), (0.50, 0.0)),
                                                       PASSED)
    failed = {"passed": False, "failures": ["scratch at 100% labels reaches ICC 0.1"]}
    assert experiment.verdict(_summary((0.6, 0.0), (0.1, 0.0)), failed).startswith("No verdict")


def _arm(values: dict[float, tuple[float, float]]) -> dict:
    return {f"{f:g}": {"icc": list(v)} for f, v in values.items()}


def test_sanity_gate_needs_a_learning_scratch_arm_and_no_fall_with_labels():
    fractions = (0.01, 0.02, 1.0)
    good = {"scratch": _arm({0.01: (0.3, 0.02), 0.02: (0.4, 0.02), 1.0: (0.7, 0.01)}),
            "pretrained": _arm({0.01: (0.4, 0.02), 0.02: (0.42, 0.02), 1.0: (0.7, 0.01)})}
    assert experiment.sanity_gate(good, fractions)["passed"]
    weak = {**good, "scratch": _arm({0.01: (0.3, 0.02), 0.02: (0.4, 0.02), 1.0: (0.45, 0.01)})}
    gate = experiment.sanity_gate(weak, fractions)
    assert not gate["passed"] and "0.450 < 0.5" in gate["failures"][0]
    falling = {**good, "pretrained": _arm({0.01: (0.6, 0.02), 0.02: (0.4, 0.02),
                                            1.0: (0.7, 0.01)})}
    gate = experiment.sanity_gate(falling, fractions)
    assert gate["failures"] == ["pretrained ICC falls from 0.600 at 1% to 0.400 at 2% labels"]
