"""Which ONNX should CPU users get: FP32, or the FP16-CNN layout engines are built from?

Run (from the repository root): `python -m benchmarks.onnx_precision [--steps 300]
[--out benchmarks/results]`.
Exports the default-size model (random weights: speed does not depend on them) both ways,
times ONNX Runtime CPU steps at batch 1 and 8 (p50/p99, after warm-up, on real-looking frames),
and checks parity against torch FP32 over the same unrolled run. Writes
`onnx_precision-<host>.json` and `.md` under --out and prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.results_io import write_results
from rtau.bench import face_crops
from train.export import ExportConfig, check_parity, export_onnx
from train.model import AUModel, ModelConfig

WARMUP = 20


def time_steps(path: Path, batch: int, steps: int) -> dict:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    frames = face_crops(112, steps + WARMUP, seed=batch)
    state = np.zeros((batch, 256), np.float32)
    times = []
    for t in range(steps + WARMUP):
        images = np.repeat(frames[t : t + 1], batch, axis=0)
        start = time.perf_counter()
        _, state = session.run(["aus", "state_out"], {"image": images, "state": state})
        if t >= WARMUP:
            times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return {"batch": batch, "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "faces_per_s": float(batch * 1e3 / np.median(ms))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    model = AUModel(ModelConfig()).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "fp16-cnn"):
            path, manifest = export_onnx(model, Path(tmp) / f"{precision}.onnx",
                                         ExportConfig(precision=precision, parity_steps=0))
            parity = check_parity(model, path, steps=200)
            for batch in (1, 8):
                rows.append({"precision": precision, "size_mb": path.stat().st_size / 1e6,
                             "max_abs_au_error_200_steps": parity["max_abs_au_error"],
                             **time_steps(path, batch, args.steps)})
    machine = {"host": socket.gethostname(), "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "onnxruntime": ort.__version__}
    lines = ["| precision | batch | p50 ms | p99 ms | faces/s | size MB "
             "| max abs AU err (200 steps) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['faces_per_s']:.0f} | {r['size_mb']:.1f} | "
                     f"{r['max_abs_au_error_200_steps']:.1e} |")
    table = "\n".join(lines)
    write_results(args.out, "onnx_precision-cpu2", {"machine": machine, "results": rows},
                  f"ONNX Runtime CPU, {machine}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
