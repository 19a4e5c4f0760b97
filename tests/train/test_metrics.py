"""ICC(3,1), PCC, MAE against pingouin / scipy on fixed arrays and a hand-worked example.

Run: `python -m pytest tests/train/test_metrics.py -q`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from train.metrics import au_metrics, icc3_1, mae, markdown_table, pcc

pingouin = pytest.importorskip("pingouin")


def pingouin_icc3(pred: np.ndarray, truth: np.ndarray) -> float:
    n = len(pred)
    data = pd.DataFrame(
        {
            "frame": np.concatenate([np.arange(n), np.arange(n)]),
            "rater": ["model"] * n + ["truth"] * n,
            "score": np.concatenate([pred, truth]),
        }
    )
    table = pingouin.intraclass_corr(data, targets="frame", raters="rater", ratings="score")
    table = table.set_index("Type")
    # pingouin >= 0.6 names Shrout & Fleiss' ICC3 "ICC(C,1)" (McGraw & Wong's consistency)
    row = "ICC(C,1)" if "ICC(C,1)" in table.index else "ICC3"
    return float(table.loc[row, "ICC"])


def test_hand_worked_example():
    # Y = [[0,0],[1,2],[2,1]]: grand 1, SSR 3, SSC 0, SST 4, SSE 1; MSR 1.5, MSE 0.5
    # ICC(3,1) = (1.5 - 0.5) / (1.5 + 0.5) = 0.5
    assert icc3_1(np.array([0.0, 1, 2]), np.array([0.0, 2, 1])) == pytest.approx(0.5)
    # consistency: a constant offset is not penalised, a scale change is
    assert icc3_1(np.arange(5.0), np.arange(5.0) + 2) == pytest.approx(1.0)
    assert icc3_1(np.arange(5.0), 2 * np.arange(5.0)) < 1.0
    assert mae(np.array([0.0, 1, 2]), np.array([0.0, 2, 1])) == pytest.approx(2 / 3)
    assert pcc(np.array([0.0, 1, 2]), np.array([0.0, 2, 1])) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_icc_matches_pingouin_on_fixed_arrays(seed):
    rng = np.random.default_rng(seed)
    truth = np.clip(rng.gamma(1.0, 1.2, size=200), 0, 5)
    pred = np.clip(0.7 * truth + rng.normal(0.3, 0.6, size=200), 0, 5)
    ours = icc3_1(pred, truth)
    assert ours == pytest.approx(pingouin_icc3(pred, truth), abs=1e-10)
    assert pcc(pred, truth) == pytest.approx(stats.pearsonr(pred, truth)[0], abs=1e-10)
    assert 0.2 < ours < 0.95  # a non-trivial value, not a degenerate 0 or 1


def test_au_metrics_per_au_mask_and_undefined():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 5, size=(50, 3))
    pred = truth + rng.normal(0, 0.5, size=(50, 3))
    truth[:, 2] = 0.0  # an AU that never occurs: PCC undefined, ICC exactly 0 (MSR == MSE)
    mask = np.ones((50, 3), bool)
    mask[:10, 0] = False
    pred[:10, 0] = 100.0  # masked frames must not count
    report = au_metrics(pred, truth, mask, ("AU01", "AU02", "AU04"))
    assert report.per_au["AU01"]["frames"] == 40
    assert report.per_au["AU01"]["mae"] < 1.0
    assert report.per_au["AU01"]["icc"] == pytest.approx(pingouin_icc3(pred[10:, 0], truth[10:, 0]))
    assert report.per_au["AU04"]["icc"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(report.per_au["AU04"]["pcc"])
    assert report.mean["aus"] == 3
    pccs = [report.per_au[a]["pcc"] for a in ("AU01", "AU02")]
    assert report.mean["pcc"] == pytest.approx(np.mean(pccs))  # NaN left out of the mean
    text = markdown_table(report, "test")
    assert "| AU04 | 0.000 | n/a |" in text and "**mean** (3 AUs)" in text


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="must both be"):
        au_metrics(np.zeros((4, 2)), np.zeros((4, 3)), None, ("AU01", "AU02"))
