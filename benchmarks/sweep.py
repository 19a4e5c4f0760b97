"""The standard benchmark sweep: every variant this machine can run, in one run, written to
`benchmarks/results/<machine>.json` + `.md` + `.png`.

Run (from the repository root): `python -m benchmarks.sweep [--out benchmarks/results]
[--model PATH] [--threads N] [--quick]`. On a GPU machine it is the single call that checks
and times every GPU variant:

    python3 -m benchmarks.sweep --out "$OUT" --stages-variant torch-cuda-graphs

Variants (`VARIANTS`): ONNX Runtime CPU, torch eager on the CPU, ONNX Runtime CUDA, torch eager
on CUDA, torch with CUDA graphs (FP16 CNN + FP32 cell, and all-FP32), TensorRT. Each one that
cannot load here (no GPU, no TensorRT runtime, no engine) is listed with its reason, not fatal.
For each variant: step p50/p99 per batch size, the stateful step vs a sliding window of W
frames, parity with ONNX Runtime CPU FP32 over `--parity` unrolled steps; with MediaPipe and
the test clip available, the whole pipeline's stage breakdown and live capture-to-estimate
latency on `single_face.mp4`. Everything is measured by `rtau.bench.run_suite`, the code behind
`rtau bench`. Without the shipped model (`rtau/assets/default.onnx`) a default-architecture
model with random weights is exported (needs torch + onnx; speed does not depend on weights)
and the results say so. Without matplotlib the plot is skipped: run
`python -m benchmarks.report RESULT.json` where matplotlib is installed.

A GPU machine without MediaPipe skips the stage breakdown with that reason; to get it there
too, install the mediapipe wheel and provide the face landmarker (`$RTAU_FACE_LANDMARKER`) and
the test clip (`$RTAU_CACHE/media/single_face.mp4`), since nothing is downloaded offline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.report import targets, write_results
from rtau.bench import SuiteConfig, Variant, run_suite
from rtau.errors import RtauError, one_line

CPU_BATCHES = (1, 2, 4, 8, 16, 32)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
GPU_BUCKETS = GPU_BATCHES
"""One CUDA graph per timed batch size, so no timed batch is padded up."""
WINDOWS = (8, 16, 32)
PARITY_STEPS = 1000
LOOPS = 3
MAX_SECONDS = 8.0
"""Slow CPU variants at large batches stop after this many seconds of timed steps."""
THREADED_BACKENDS = ("onnxruntime", "torch")
QUICK = {"steps": 30, "warmup": 5, "max_seconds": 0.0, "window_frames": 5, "parity": 50,
         "loops": 1}

VARIANTS = (
    Variant("onnxruntime-cpu", "onnxruntime", {"device": "cpu"}, batches=CPU_BATCHES),
    # The torch backend is for GPUs; on the CPU it is timed for reference only.
    Variant("torch-cpu-eager", "torch", {"device": "cpu"}, batches=(1, 8, 32), compare=False),
    Variant("onnxruntime-cuda", "onnxruntime", {"device": "cuda"}, batches=GPU_BATCHES),
    Variant("torch-cuda-eager", "torch", {"device": "cuda", "cuda_graphs": False},
            batches=GPU_BATCHES),
    Variant("torch-cuda-graphs", "torch", {"device": "cuda", "buckets": GPU_BUCKETS},
            batches=GPU_BATCHES),
    Variant("torch-cuda-graphs-fp32", "torch",
            {"device": "cuda", "precision": "fp32", "buckets": GPU_BUCKETS},
            batches=GPU_BATCHES),
    Variant("tensorrt", "tensorrt", {}, batches=GPU_BATCHES),
)


def resolve_or_export(model: Path | None, workdir: Path) -> tuple[Path, str | None]:
    """The model to time and, when it is not the shipped one, a note saying what it is."""
    from rtau.model_files import ModelNotFound, resolve_model

    try:
        return resolve_model(model), None
    except ModelNotFound:
        if model is not None:
            raise
    import torch  # only without a shipped model

    from train.export import ExportConfig, export_onnx
    from train.model import AUModel, ModelConfig

    torch.manual_seed(0)  # the same random model on every machine
    path, _ = export_onnx(AUModel(ModelConfig()).eval(), workdir / "default_random.onnx",
                          ExportConfig(parity_steps=0))
    return path, "default architecture with random weights (no shipped model was present)"


def test_clip() -> tuple[Path | None, str | None]:
    """single_face.mp4 if MediaPipe and the clip are available, else (None, why not)."""
    import importlib.util

    if importlib.util.find_spec("mediapipe") is None:
        return None, "MediaPipe is not installed here: no pipeline stage breakdown"
    from rtau.media import test_media

    try:
        return test_media("single_face.mp4"), None
    except RtauError as exc:
        return None, f"test clip unavailable ({one_line(exc)}): no pipeline stage breakdown"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default=None, help="result file stem (default: the machine)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of ONNX Runtime and torch (0: their defaults)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                        help="time budget per variant and batch size (at least 50 steps)")
    parser.add_argument("--window-frames", type=int, default=20)
    parser.add_argument("--parity", type=int, default=PARITY_STEPS)
    parser.add_argument("--loops", type=int, default=LOOPS)
    parser.add_argument("--variants", default="", help="comma-separated subset of the names")
    parser.add_argument("--no-source", action="store_true", help="skip the pipeline stages")
    parser.add_argument("--stages-variant", default=None,
                        help="variant that runs the pipeline stages (default: the first that "
                             "loads; on a GPU e.g. torch-cuda-graphs)")
    parser.add_argument("--quick", action="store_true", help="few steps: checks, not numbers")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    wanted = {n.strip() for n in args.variants.split(",") if n.strip()}
    variants = [v for v in VARIANTS if not wanted or v.name in wanted]
    if args.threads:  # ONNX Runtime's intra-op threads; torch's on the CPU (ignored on CUDA)
        variants = [replace(v, kwargs={**v.kwargs, "threads": args.threads})
                    if v.backend in THREADED_BACKENDS else v for v in variants]
    notes = []
    source = None
    if not args.no_source:
        source, why_not = test_clip()
        notes += [why_not] if why_not else []
    with tempfile.TemporaryDirectory(prefix="rtau-sweep-") as tmp:
        model, model_note = resolve_or_export(args.model, Path(tmp))
        cfg = SuiteConfig(steps=args.steps, warmup=args.warmup, max_seconds=args.max_seconds,
                          windows=WINDOWS,
                          window_frames=args.window_frames, parity_steps=args.parity,
                          source=source, loops=args.loops, threads=args.threads,
                          stages_variant=args.stages_variant)
        payload = run_suite(
            variants, model, cfg,
            on_result=lambda r: err.print(f"{r.variant} batch {r.batch}: p50 {r.p50_ms:.3f} ms"
                                          f", {r.faces_per_s:,.0f} faces/s"),
            on_skip=lambda s: err.print(f"skipped {s.variant}"
                                        + (f" at batch {s.batch}" if s.batch else "")
                                        + f": {s.reason}"),
            on_note=err.print)
    if model_note:
        payload["model"]["note"] = model_note
    payload["notes"] = notes
    argv_text = " ".join(argv) if argv is not None else " ".join(sys.argv[1:])
    payload["command"] = f"python -m benchmarks.sweep {argv_text}".strip()
    for path in write_results(payload, args.out, args.name):
        err.print(f"wrote {path}")
    from rtau.commands.bench import report_tables

    console = Console(width=140)
    for table in report_tables(payload):
        console.print(table)
    console.print(targets_table(payload))
    return payload


def targets_table(payload: dict) -> Table:
    """The design targets against this run: the short table printed last."""
    table = Table(title=f"design targets on {payload['machine']['name']}")
    for col in ("what", "target", "measured", "met"):
        table.add_column(col)
    for t in targets(payload):
        table.add_row(t["what"], t["target"], t["measured"],
                      {True: "yes", False: "NO", None: "-"}[t["met"]])
    return table


if __name__ == "__main__":
    main()
