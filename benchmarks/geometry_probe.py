"""Does face geometry alone reach identities no stage saw? A ridge probe on MediaPipe landmarks.

Run: `PYTHONPATH=. python benchmarks/geometry_probe.py --train-store STORE --test-store STORE
[--out benchmarks/results] [--name NAME]` (seconds on 2 cores; both stores from
`python -m train prepare`, e.g. a recipe run's OUT/stores/train and OUT/stores/test).

METHOD.md names geometry beside the crop as the option to measure when crop-only training does
not reach unseen identities: the FaceLandmarker pass that places the crop already gives 478
landmarks from a network trained on real faces. This measures that option before any contract
change, with the simplest learner: ridge regression (closed form) from the landmarks of each
frame, aligned into the 112 px crop frame with the store's own alignment (`rtau.align`), x and y
of every point (956 features, standardised on the training frames), to the AU intensities,
fitted on every labeled frame of the training store and scored (ICC(3,1), PCC, MAE per AU;
`train.metrics`) on the test store. Three feature variants:

- `raw`: the aligned landmarks;
- `first_3s`: minus the median of the face's first BASELINE_SECONDS (what `rtau --calibrate`
  does to AU outputs, causal: a live face can have it);
- `video_median`: minus the median of the whole video (offline only: it sees the future).

The test store's identities must be unseen by the training store (a recipe's split is); the
probe has no temporal model and no crop pixels, so it is a floor for geometry, not a model.
Writes `geometry_probe-NAME.json` and `.md` under --out and prints the table.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from benchmarks.results_io import markdown_table, write_results
from rtau.align import CROP_SIZE, get_alignment, transform_points
from train.data.store import ClipStore
from train.metrics import au_metrics

VARIANTS = ("raw", "first_3s", "video_median")
BASELINE_SECONDS = 3.0
STORE_FPS = 20.0  # the synthetic generator's frame rate (`python -m train synth --fps`)
RIDGE_LAMBDAS = (10.0, 100.0, 1000.0)
DEFAULT_LAMBDA = 100.0  # reported in the table; every lambda is in the JSON
STD_FLOOR = 1e-6


def aligned_landmarks(store: ClipStore, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(float64[N, 956] x, y of the 478 landmarks in crop pixels, bool[N] face found) of a video,
    aligned per frame with the store's alignment (unfiltered fit: the probe is per frame)."""
    alignment = get_alignment(store.alignment)
    landmarks = np.asarray(store.landmarks(video_id), np.float64)
    found = np.asarray(store.face_found(video_id), bool)
    features = np.zeros((len(landmarks), landmarks.shape[1] * 2))
    for i in np.flatnonzero(found):
        matrix = alignment.matrix(landmarks[i], CROP_SIZE)
        features[i] = transform_points(landmarks[i][:, :2], matrix).reshape(-1)
    return features, found


def baseline(features: np.ndarray, found: np.ndarray, variant: str, fps: float) -> np.ndarray:
    """What the variant subtracts from a video's features: zeros, the first seconds' median, or
    the whole video's median (over frames with a face)."""
    if variant == "raw" or not found.any():
        return np.zeros(features.shape[1])
    frames = np.flatnonzero(found)
    if variant == "first_3s":
        early = frames[frames < round(BASELINE_SECONDS * fps)]
        frames = early if len(early) else frames[:1]
    return np.median(features[frames], axis=0)


def store_videos(store: ClipStore) -> list[tuple[np.ndarray, ...]]:
    """Per video (aligned features, face found, labels, label mask): aligned once, shared by
    every variant."""
    videos = []
    for video_id in store.video_ids:
        features, found = aligned_landmarks(store, video_id)
        videos.append((features, found, np.asarray(store.labels(video_id)),
                       np.asarray(store.label_mask(video_id))))
    return videos


def variant_matrix(videos: list[tuple[np.ndarray, ...]], variant: str, fps: float
                   ) -> tuple[np.ndarray, ...]:
    """(features [M, 956], labels [M, K], label mask [M, K]) over the frames with a face, each
    video's features minus the variant's baseline."""
    xs, ys, ms = [], [], []
    for features, found, labels, mask in videos:
        xs.append((features - baseline(features, found, variant, fps))[found])
        ys.append(labels[found])
        ms.append(mask[found])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ms)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, ...]:
    """Closed-form ridge on standardised features: (mean, std, weights [F, K], label mean)."""
    mean, std = x.mean(0), x.std(0) + STD_FLOOR
    a = (x - mean) / std
    y_mean = y.mean(0)
    weights = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (y - y_mean))
    return mean, std, weights, y_mean


def probe(train: ClipStore, test: ClipStore, fps: float = STORE_FPS) -> dict:
    """variant -> lambda -> {"mean": {icc, pcc, mae}, "per_au": {...}} on the test store."""
    results: dict = {}
    train_videos, test_videos = store_videos(train), store_videos(test)
    for variant in VARIANTS:
        x, y, mask = variant_matrix(train_videos, variant, fps)
        labeled = mask.all(axis=1)
        xt, yt, mt = variant_matrix(test_videos, variant, fps)
        results[variant] = {}
        for lam in RIDGE_LAMBDAS:
            mean, std, weights, y_mean = ridge(x[labeled], y[labeled], lam)
            pred = ((xt - mean) / std) @ weights + y_mean
            report = au_metrics(pred, yt, mt, test.au_names).to_json()
            results[variant][f"{lam:g}"] = report
    return results


def markdown(result: dict) -> str:
    names = result["au_names"]
    rows = []
    for variant in VARIANTS:
        r = result["results"][variant][f"{DEFAULT_LAMBDA:g}"]
        rows.append([variant, *(f"{r['mean'][k]:.3f}" for k in ("icc", "pcc", "mae")),
                     *(f"{r['per_au'][n]['icc']:.2f}" for n in names)])
    header = ["features", "mean ICC", "PCC", "MAE", *(n.replace("AU", "") for n in names)]
    return "\n".join([
        f"# Geometry probe: ridge on aligned MediaPipe landmarks ({result['name']})", "",
        f"Train store `{result['train_store']}` ({result['train_frames']} frames), test store "
        f"`{result['test_store']}` ({result['test_frames']} frames, identities the training "
        f"store does not hold). Ridge lambda {DEFAULT_LAMBDA:g}; {result['machine']}. ICC(3,1) "
        "on the test store:", "",
        *markdown_table(header, rows, numeric_from=1),
        "", "raw: aligned landmarks; first_3s: minus the median of the face's first "
        f"{BASELINE_SECONDS:g} s (causal); video_median: minus the whole video's median "
        "(offline). A linear probe per frame: a floor for geometry, not a model.", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-store", type=Path, required=True)
    parser.add_argument("--test-store", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="recipe-cpu")
    parser.add_argument("--fps", type=float, default=STORE_FPS)
    args = parser.parse_args()
    train, test = ClipStore(args.train_store), ClipStore(args.test_store)
    if tuple(train.au_names) != tuple(test.au_names):
        raise SystemExit(f"error: the stores hold other AUs ({train.au_names} vs "
                         f"{test.au_names})")
    result = {
        "name": args.name, "machine": f"{platform.machine()}, {platform.python_version()}",
        "train_store": str(args.train_store), "test_store": str(args.test_store),
        "train_frames": sum(train.entry(v).num_frames for v in train.video_ids),
        "test_frames": sum(test.entry(v).num_frames for v in test.video_ids),
        "au_names": list(test.au_names), "lambdas": list(RIDGE_LAMBDAS),
        "default_lambda": DEFAULT_LAMBDA, "results": probe(train, test, args.fps),
    }
    text = markdown(result)
    write_results(args.out, f"geometry_probe-{args.name}", result, text)
    print(text)


if __name__ == "__main__":
    main()
