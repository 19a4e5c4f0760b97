"""The linear probe: does a frozen model's representation carry AU intensity for unseen people?

    from train.probe import linear_probe
    scores = linear_probe(model, fit_store, test_store)   # {"frame": {...}, "gru": {...}}

The diagnostic that decides whether stage 1 learns anything useful (METHOD.md): run the frozen
model over whole videos (state carried from a zero state at frame 0, as at run time), take
two representations per frame, the frame features [N, F] (the GRU's inputs: CNN features
and/or the geometry encoder's, which sees the change from the face's running baseline) and the
GRU state [N, hidden], fit a ridge
regression from each to the AU labels on frames of the *fitting* videos (training identities),
and score it as ICC(3,1) / PCC / MAE on every labeled frame of the *test* videos (identities no
stage saw). Features are standardised with the fitting frames' mean and spread; the ridge
penalty is `alpha` times the number of fitting frames (scale-free). A probe near 0 ICC means the
representation does not carry AU intensity in a linearly readable way, whatever the loss says.
Used by `python -m train pretrain --probe-store` at checkpoints, by the experiment, and by
benchmarks/contrastive_methods.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from train.data.geometry import GeometrySource, batch_inputs
from train.data.store import ClipStore, sequential_clips
from train.metrics import au_metrics
from train.model import AUModel

DEFAULT_ALPHA = 1e-2
DEFAULT_FIT_FRAMES = 4000
PROBE_CHUNK = 128
REPRESENTATIONS = ("frame", "gru")
STD_FLOOR = 1e-6


@torch.no_grad()
def frozen_features(
    model: AUModel, store: ClipStore, video_ids: Sequence[str], device: str | torch.device = "cpu"
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """({"frame": float32[N, F], "gru": float32[N, hidden]}, labels float32[N, K], mask
    bool[N, K]).

    Whole videos in order, frames concatenated; the model is put in eval mode.
    """
    model.eval().to(device)
    source = GeometrySource.for_model(store, model) if model.cfg.uses_geometry \
        else None
    frame, gru, labels, masks = [], [], [], []
    for video_id in video_ids:
        state = None
        for clip in sequential_clips(store, video_id, PROBE_CHUNK):
            inputs = batch_inputs(model.cfg, [clip], source, device, warm_start=False)
            feats, tail = model.encode_sequence(inputs.images, state, inputs.geometry,
                                                inputs.present)
            states, h = model.run_gru(feats, state)
            state = h if tail is None else torch.cat([h, tail], -1)
            frame.append(feats[0].float().cpu().numpy())
            gru.append(states[0].float().cpu().numpy())
            labels.append(clip.labels)
            masks.append(clip.mask)
    return ({"frame": np.concatenate(frame), "gru": np.concatenate(gru)},
            np.concatenate(labels), np.concatenate(masks))


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    """Standardise x [N, D] and fit y [N, K]: returns (mean [D], std [D], w [D, K], b [K])."""
    mean, std = x.mean(0), np.maximum(x.std(0), STD_FLOOR)
    z = ((x - mean) / std).astype(np.float64)
    y_mean = y.mean(0)
    gram = z.T @ z + alpha * len(z) * np.eye(z.shape[1])
    w = np.linalg.solve(gram, z.T @ (y - y_mean))
    return mean, std, w, y_mean


def linear_probe(
    model: AUModel,
    fit_store: ClipStore,
    test_store: ClipStore,
    fit_ids: Sequence[str] | None = None,
    test_ids: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    max_fit_frames: int = DEFAULT_FIT_FRAMES,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict:
    """Ridge-probe scores of both representations: {"frame"|"gru": {"icc", "pcc", "mae"}}.

    Fits on at most max_fit_frames frames (drawn with `seed`) of fit_ids where every AU is
    labeled; scores on all labeled frames of test_ids (mean over the AUs that occur there).
    The AU sets of the two stores must match.
    """
    if tuple(fit_store.au_names) != tuple(test_store.au_names):
        raise ValueError(
            f"probe stores label different AUs: {list(fit_store.au_names)} vs "
            f"{list(test_store.au_names)}"
        )
    fit_ids = list(fit_ids or fit_store.video_ids)
    test_ids = list(test_ids or test_store.video_ids)
    fit_x, fit_y, fit_mask = frozen_features(model, fit_store, fit_ids, device)
    test_x, test_y, test_mask = frozen_features(model, test_store, test_ids, device)
    rows = np.flatnonzero(fit_mask.all(axis=1))
    if len(rows) == 0:
        raise ValueError(f"{fit_store.root}: no frame with every AU labeled to fit the probe on")
    if len(rows) > max_fit_frames:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_fit_frames, replace=False))
    scores = {}
    for name in REPRESENTATIONS:
        mean, std, w, b = ridge(fit_x[name][rows], fit_y[rows], alpha)
        pred = ((test_x[name] - mean) / std) @ w + b
        report = au_metrics(pred.astype(np.float32), test_y, test_mask, test_store.au_names)
        scores[name] = {k: float(report.mean[k]) for k in ("icc", "pcc", "mae")}
    return scores
