"""The experiment command end to end on a micro preset: real synth, prepare, both stages, metrics.

The `smoke` preset (< 10 minutes on 2 cores) is too long for the test suite; this runs the same
code path on a preset a few times smaller and checks what it writes, then the verdict rule.
Run: `python -m pytest tests/train/test_experiment.py -q`.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

import train.experiment as experiment  # noqa: E402
from train.__main__ import app  # noqa: E402

MICRO = experiment.Preset(
    train_subjects=2, test_subjects=1, frames=40, frame_size=(256, 192), crop_size=48,
    tiny=True, pretrain_steps=3, pretrain_batch=4, clip_len=4, max_offset=2, finetune_steps=2,
    finetune_batch=2, seq_len=8, lr=3e-3, fractions=(0.5, 1.0), seeds=(0,),
)


@pytest.mark.slow
def test_micro_experiment_writes_results_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(experiment.PRESETS, "micro", MICRO)
    out = tmp_path / "exp"
    result = CliRunner().invoke(app, ["experiment", "--preset", "micro", "--out", str(out),
                                      "--device", "cpu", "--workers", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "experiment.json").read_text())
    assert len(data["runs"]) == len(experiment.ARMS) * len(MICRO.fractions)
    for run in data["runs"]:
        assert run["arm"] in experiment.ARMS
        assert 0 < run["labeled_frames"]
        assert set(run["mean"]) >= {"icc", "pcc", "mae"}
    half = [r["labeled_frames"] for r in data["runs"] if r["fraction"] == 0.5]
    full = [r["labeled_frames"] for r in data["runs"] if r["fraction"] == 1.0]
    assert max(half) < min(full)
    assert set(data["summary"]) == set(experiment.ARMS)
    assert data["machine"]["cpu_cores"] >= 1
    assert data["verdict"].startswith("At 50% labels: pretrained ICC")
    assert (out / "experiment.md").read_text().startswith("# Experiment `micro`")
    assert (out / "icc_vs_labels.png").stat().st_size > 1000

    # every stage resumes: a second run finds the data, stores and checkpoints done
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.pt")}
    again = CliRunner().invoke(app, ["experiment", "--preset", "micro", "--out", str(out),
                                     "--device", "cpu", "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.pt")}


def test_unknown_preset_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["experiment", "--preset", "huge", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown preset" in result.output and "Traceback" not in result.output


def _summary(pre: tuple[float, float], scratch: tuple[float, float]) -> dict:
    return {"pretrained": {"0.02": {"icc": list(pre)}}, "scratch": {"0.02": {"icc": list(scratch)}}}


def test_verdict_weighs_the_difference_against_seed_noise():
    assert "pretraining helps" in experiment.verdict(_summary((0.60, 0.02), (0.40, 0.03)))
    assert "pretraining hurts" in experiment.verdict(_summary((0.30, 0.02), (0.50, 0.03)))
    assert "no clear difference" in experiment.verdict(_summary((0.52, 0.10), (0.45, 0.08)))
    assert "no clear difference" in experiment.verdict(_summary((0.501, 0.0), (0.50, 0.0)))
