"""Does MediaPipe, a network trained on real faces, read the synthetic AUs? And how fast is synth?

Run: `python -m benchmarks.synth_realism [--subjects 8] [--frames 200] [--seed 5]
[--out benchmarks/results]`. Renders `--subjects` subjects of *test* identities (people never
used for training subjects) exactly as `python -m train synth` does (same tracks, warp,
shading, mouth, lids, light and noise; no video encoding), runs MediaPipe's FaceLandmarker
(video mode) on every frame, and reports the Pearson r between its blendshapes and the labels
rendered: mouthSmile (mean of left / right) vs AU12, jawOpen vs AU26, browInnerUp vs AU1,
browDown vs AU4, eyeBlink vs AU45; AU1 and AU4 also on the frames without the other (they
pull the inner brow opposite ways and often come together). Also the render time per frame
(p50 / p99, one process), and the identity pool's size. Writes `synth_realism-<host>.json`
and `.md` under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import write_results
from train.data.au_templates import TEMPLATE_AUS
from train.data.synth import SubjectRenderer, SynthConfig, prepare_subjects, subject_tracks

# AU label -> MediaPipe blendshapes averaged into its judge
PAIRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AU12", ("mouthSmileLeft", "mouthSmileRight")),
    ("AU26", ("jawOpen",)),
    ("AU01", ("browInnerUp",)),
    ("AU04", ("browDownLeft", "browDownRight")),
    ("AU45", ("eyeBlinkLeft", "eyeBlinkRight")),
)
TARGET_R = 0.6
# AU1 and AU4 move the inner brow in opposite ways and often come together (sadness, fear),
# so each brow judge is also reported on the frames without the other AU
OPPOSED = {"AU01": "AU04", "AU04": "AU01"}
MS = 1000.0


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two float[N] series (nan when either is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def measure(subjects: int, frames: int, seed: int, size=(640, 480), fps: float = 20.0) -> dict:
    """Render test-identity subjects, judge them with MediaPipe; returns the JSON-able result."""
    from rtau.faces import FaceDetector
    from train.data.appearance import Photometric

    config = SynthConfig(out=Path(tempfile.gettempdir()), subjects=subjects, frames=frames,
                         seed=seed, size=size, fps=fps, test_subjects=subjects)
    started = time.perf_counter()
    subs, report, identities = prepare_subjects(config)
    setup_s = time.perf_counter() - started
    labels_all, judged, found, render_ms = [], {au: [] for au, _ in PAIRS}, 0, []
    owner: list[int] = []  # subject index of each judged frame
    with FaceDetector(video=True) as detector:
        t_ms = 0
        for subject in subs:
            labels, pose, light = subject_tracks(config, subject.index)
            rng = np.random.default_rng([config.seed, subject.index, 3])
            renderer = SubjectRenderer(subject)
            photo = Photometric(rng, config.size, light["noise_sigma"])
            for t in range(frames):
                t0 = time.perf_counter()
                frame, _ = renderer.render(labels[t], tuple(pose[t]))
                frame = photo.apply(frame, rng, float(light["gain"][t]),
                                    float(light["gradient"][t]), light["cast"])
                render_ms.append((time.perf_counter() - t0) * MS)
                t_ms += int(MS / fps)
                faces = detector.detect(frame, t_ms)
                if not faces:
                    continue
                found += 1
                bs = faces[0].blendshapes or {}
                labels_all.append(labels[t])
                owner.append(subject.index)
                for au, names in PAIRS:
                    judged[au].append(float(np.mean([bs.get(n, 0.0) for n in names])))
            t_ms += 1000  # a new subject: a gap, as between videos
    labels_arr, owner_arr = np.asarray(labels_all), np.asarray(owner)
    rows = []
    for au, names in PAIRS:
        k = TEMPLATE_AUS.index(au)
        judge = np.asarray(judged[au])
        r = pearson(labels_arr[:, k], judge)
        # within each subject (removes each face's own blendshape baseline), then averaged
        per = [pearson(labels_arr[owner_arr == i, k], judge[owner_arr == i])
               for i in np.unique(owner_arr)]
        per = [v for v in per if np.isfinite(v)]
        alone = None
        if au in OPPOSED:
            off = labels_arr[:, TEMPLATE_AUS.index(OPPOSED[au])] == 0
            alone = round(pearson(labels_arr[off, k], judge[off]), 3)
        rows.append({"au": au, "blendshapes": list(names), "pearson_r": round(r, 3),
                     "per_subject_mean_r": round(float(np.mean(per)), 3) if per else None,
                     "pearson_r_other_brow_au_off": alone,
                     "active_share": round(float((labels_arr[:, k] > 0).mean()), 3),
                     "met": bool(r >= TARGET_R)})
    ms = np.asarray(render_ms)
    return {
        "what": "MediaPipe blendshapes vs synthetic AU labels on test identities",
        "subjects": [{"id": s.id, "identity": s.identity, "split": s.split} for s in subs],
        "frames_per_subject": frames,
        "frame_size": list(size),
        "frames_judged": found,
        "frames_rendered": int(ms.size),
        "pairs": rows,
        "render_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                      "p99": round(float(np.percentile(ms, 99)), 2)},
        "render_frames_per_second_one_process": round(MS / float(ms.mean()), 1),
        "setup_seconds": round(setup_s, 2),
        "identities": {s: sum(i["split"] == s for i in identities) for s in ("train", "test")},
        "real_faces_used": sum(bool(r.get("used")) for r in report),
        "machine": {"host": socket.gethostname(), "cores": os.cpu_count(),
                    "machine": platform.machine(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
    }


def markdown(result: dict) -> str:
    """The result as a markdown table."""
    m = result["machine"]
    lines = [
        f"MediaPipe blendshapes vs labels on {len(result['subjects'])} test-identity subjects x "
        f"{result['frames_per_subject']} frames ({result['frames_judged']} frames with a face),"
        f" {result['frame_size'][0]}x{result['frame_size'][1]}; {m['cores']}-core "
        f"{m['machine']}, load average {m['load_average_1min']}",
        "",
        "| AU | blendshape(s) | Pearson r (pooled) | mean r within a subject | pooled r, AU1 / "
        "AU4 off | frames with the AU on | pooled r >= 0.6 |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["pairs"]:
        per, alone = row["per_subject_mean_r"], row.get("pearson_r_other_brow_au_off")
        lines.append(f"| {row['au']} | {' + '.join(row['blendshapes'])} | {row['pearson_r']:.2f}"
                     f" | {'-' if per is None else f'{per:.2f}'}"
                     f" | {'-' if alone is None else f'{alone:.2f}'}"
                     f" | {100 * row['active_share']:.0f}% | {'yes' if row['met'] else 'no'} |")
    r = result["render_ms"]
    lines += ["", f"Render: {r['p50']:.1f} ms p50, {r['p99']:.1f} ms p99 per frame in one "
              f"process ({result['render_frames_per_second_one_process']:.0f} frames/s), "
              f"without video encoding. Identity pool: {result['identities']['train']} train, "
              f"{result['identities']['test']} test identities from "
              f"{result['real_faces_used']} real people.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    result = measure(args.subjects, args.frames, args.seed)
    tag = "cpu2" if os.cpu_count() == 2 else socket.gethostname()
    text = markdown(result)
    write_results(args.out, f"synth_realism-{tag}", result, text)
    print(text)
    print(json.dumps({p["au"]: p["pearson_r"] for p in result["pairs"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
