"""AU intensity metrics: ICC(3,1), Pearson correlation and mean absolute error, per AU and mean.

    from train.metrics import au_metrics
    report = au_metrics(pred, truth, mask, au_names)   # pred/truth float[N, K], mask bool[N, K]
    report.mean["icc"], report.per_au["AU12"]["pcc"]

ICC(3,1) is Shrout & Fleiss (1979) case 3, single rater: a two-way mixed model, consistency
(a constant offset between prediction and ground truth is not penalised), with the N frames as
targets and k = 2 "raters" (the model and the ground truth):

    MSR = k * sum_i (mean_i - grand)^2 / (N - 1)            between-frames mean square
    MSE = (SST - SSR - SSC) / ((N - 1)(k - 1))              residual mean square
    ICC(3,1) = (MSR - MSE) / (MSR + (k - 1) MSE)

It equals pingouin's "ICC3" row (named "ICC(C,1)" since pingouin 0.6), as checked in
tests/train/test_metrics.py. A metric that is undefined (an AU that never varies in the test
frames, a constant prediction) is NaN for that AU and left out of the mean; `mean["aus"]` says
how many AUs the mean covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("icc", "pcc", "mae")
NUM_RATERS = 2  # prediction and ground truth


def icc3_1(pred: np.ndarray, truth: np.ndarray) -> float:
    """ICC(3,1) of two float[N] series (N >= 2); NaN when undefined (no variance)."""
    y = np.stack([np.asarray(pred, np.float64), np.asarray(truth, np.float64)], axis=1)
    n, k = y.shape
    if n < 2:
        return float("nan")
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((y - grand) ** 2).sum()
    ms_rows = ss_rows / (n - 1)
    ms_err = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_err
    if denominator <= 0:
        return float("nan")
    return float((ms_rows - ms_err) / denominator)


def pcc(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation of two float[N] series; NaN if either is constant."""
    a = np.asarray(pred, np.float64) - np.mean(pred)
    b = np.asarray(truth, np.float64) - np.mean(truth)
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if len(a) < 2 or denominator == 0:
        return float("nan")
    return float((a * b).sum() / denominator)


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error in intensity units; NaN for empty input."""
    if len(pred) == 0:
        return float("nan")
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(truth, np.float64))))


@dataclass(frozen=True)
class MetricsReport:
    """per_au: AU -> {icc, pcc, mae, frames}; mean: {icc, pcc, mae} over AUs where defined."""

    per_au: dict[str, dict[str, float]]
    mean: dict[str, float]

    def to_json(self) -> dict:
        return {"per_au": self.per_au, "mean": self.mean}


def au_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray | None,
    au_names: Sequence[str],
) -> MetricsReport:
    """Metrics per AU over the frames where `mask` is True (all frames if None).

    pred, truth: float[N, K] intensities; mask: bool[N, K] or None; au_names: K names.
    """
    pred = np.asarray(pred, np.float64)
    truth = np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.ndim != 2 or pred.shape[1] != len(au_names):
        raise ValueError(
            f"predictions {pred.shape} and ground truth {truth.shape} must both be "
            f"[N, {len(au_names)}]"
        )
    mask = np.ones(pred.shape, bool) if mask is None else np.asarray(mask, bool)
    per_au: dict[str, dict[str, float]] = {}
    for k, name in enumerate(au_names):
        p, t = pred[mask[:, k], k], truth[mask[:, k], k]
        per_au[name] = {
            "icc": icc3_1(p, t),
            "pcc": pcc(p, t),
            "mae": mae(p, t),
            "frames": int(len(p)),
        }
    mean: dict[str, float] = {}
    for metric in METRICS:
        values = [v[metric] for v in per_au.values() if np.isfinite(v[metric])]
        mean[metric] = float(np.mean(values)) if values else float("nan")
    mean["aus"] = float(sum(np.isfinite(v["icc"]) for v in per_au.values()))
    return MetricsReport(per_au, mean)


def markdown_table(report: MetricsReport, title: str = "") -> str:
    """The report as a markdown table: one row per AU, then the mean (pure)."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| AU | ICC(3,1) | PCC | MAE | frames |", "|---|---:|---:|---:|---:|"]

    def fmt(x: float) -> str:
        return "n/a" if not np.isfinite(x) else f"{x:.3f}"

    for name, v in report.per_au.items():
        lines.append(
            f"| {name} | {fmt(v['icc'])} | {fmt(v['pcc'])} | {fmt(v['mae'])} | {v['frames']} |"
        )
    m = report.mean
    lines.append(
        f"| **mean** ({int(m['aus'])} AUs) | **{fmt(m['icc'])}** | **{fmt(m['pcc'])}** | "
        f"**{fmt(m['mae'])}** | |"
    )
    return "\n".join(lines) + "\n"
