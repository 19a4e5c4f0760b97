"""`rtau bench`: how fast the step and the whole pipeline run on this machine, as tables + JSON.

Run: `rtau bench` (every backend importable here, batches 1,8,32),
`rtau bench --backend onnxruntime --batch 1,8 --json out.json`,
`rtau bench --source clip.mp4 --loops 3` (adds the per-stage breakdown of the pipeline and
live capture-to-estimate latency), `rtau bench --backend torch,onnxruntime --parity 1000`.

Per backend and batch size: warm-up steps, then `--steps` timed calls of the backend's `step`
on real-looking crops with the state fed back; p50/p99 per call and per face, faces/s. Then
the stateful step versus re-running the model over a sliding window of the last W frames,
and batch N versus N calls at batch 1. A backend that cannot load here is one line and is
skipped; if none loads, the command fails. `--json` writes
`{"machine": {...}, "results": [{"backend", "batch", "p50_ms", "p99_ms", "faces_per_s", ...}],
"stages": {...}, ...}` (see `rtau.bench.run_suite`). The measuring code is `rtau.bench` and
`rtau.bench_pipeline`; this module only parses flags and prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from rtau.commands.options import ModelOption

DEFAULT_BATCH = "1,8,32"
DEFAULT_WINDOWS = "8,16,32"
NO_WINDOWS = ("", "0", "none")
THREADED_BACKENDS = ("onnxruntime", "torch")
"""Backends with a `threads` option (CPU intra-op threads; torch ignores it on CUDA)."""


@dataclass(frozen=True)
class BenchConfig:
    """Options of `rtau bench`; each field is the flag of the same name."""

    backend: tuple[str, ...] = ()
    """Backend names; empty: every backend importable here."""
    batch: str = DEFAULT_BATCH
    """Comma-separated batch sizes."""
    steps: int = 200
    """Timed steps per backend and batch size, after `warmup` untimed ones."""
    warmup: int = 20
    """Untimed steps first."""
    max_seconds: float = 0.0
    """Time budget of one batch size's timed steps (0: none)."""
    windows: str = DEFAULT_WINDOWS
    """Sliding-window lengths, comma-separated, or 'none'."""
    window_frames: int = 20
    """Output frames timed per window length."""
    parity: int = 0
    """Unrolled steps compared with ONNX Runtime CPU (0: skip)."""
    source: Path | None = None
    """Video for the pipeline stage breakdown (None: skip), played `loops` times."""
    loops: int = 1
    """Times the source clip is played per pass."""
    max_faces: int = 1
    """Faces tracked per frame with `source`."""
    model: Path | None = None
    """Contract ONNX or engine (None: the shipped model)."""
    threads: int = 0
    """CPU threads of ONNX Runtime and torch (0: their default)."""
    json: Path | None = None
    """Where to write the JSON payload (None: only print tables)."""
    verbose: bool = False


def command_line(cfg: BenchConfig) -> str:
    """The `rtau bench` command that reproduces `cfg` (recorded beside the numbers)."""
    parts = ["rtau bench"]
    defaults = BenchConfig()
    if cfg.backend:
        parts.append(f"--backend {','.join(cfg.backend)}")
    for name in ("batch", "steps", "warmup", "max_seconds", "windows", "window_frames", "parity",
                 "source", "loops", "max_faces", "model", "threads", "json", "verbose"):
        value = getattr(cfg, name)
        if value is True:
            parts.append(f"--{name.replace('_', '-')}")
        elif value != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def variants_for(cfg: BenchConfig):
    """One `rtau.bench.Variant` per requested backend name (validated)."""
    from rtau.backends import BACKEND_NAMES, available_backends
    from rtau.bench import BenchError, Variant

    names = [n.strip() for item in cfg.backend for n in item.split(",") if n.strip()]
    if not names:
        names = available_backends()
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown:
        raise BenchError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKEND_NAMES)}")
    variants = []
    for name in dict.fromkeys(names):
        kwargs = {"threads": cfg.threads} if name in THREADED_BACKENDS and cfg.threads else {}
        variants.append(Variant(name, name, kwargs))
    return variants


def suite_config(cfg: BenchConfig):
    """BenchConfig -> rtau.bench.SuiteConfig; BenchError for a malformed list."""
    from rtau.bench import SuiteConfig, parse_int_list

    windows = () if cfg.windows.strip().lower() in NO_WINDOWS else \
        parse_int_list(cfg.windows, "--windows", minimum=2)
    return SuiteConfig(batches=parse_int_list(cfg.batch, "--batch"), steps=cfg.steps,
                       warmup=cfg.warmup, max_seconds=cfg.max_seconds, windows=windows,
                       window_frames=cfg.window_frames, parity_steps=cfg.parity,
                       source=cfg.source, loops=cfg.loops, max_faces=cfg.max_faces,
                       threads=cfg.threads)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def window_cells(row: Mapping) -> list[str]:
    """A sliding-window row's numbers as text: both ways of re-running the window ('-' where
    the batched way was not measured: W = 1, or a backend other than ONNX Runtime)."""
    cells = [_ms(row["p50_ms"]), _ms(row["p99_ms"]), f"{row['x_stateful']:.1f}x"]
    if row.get("batched_p50_ms") is None:
        return [*cells, "-", "-", "-"]
    return [*cells, _ms(row["batched_p50_ms"]), _ms(row["batched_p99_ms"]),
            f"{row['batched_x_stateful']:.1f}x"]


def report_tables(payload: Mapping) -> list:
    """The payload of `run_suite` as rich tables (pure: nothing is printed)."""
    from rich.table import Table

    machine = payload["machine"]
    gpu = "; ".join(f"{g['name']} (driver {g['driver']})" for g in machine.get("gpus", []))
    caption = (f"{machine['name']}: {machine['cpu']}, {machine['cores']} cores"
               + (f", {gpu}" if gpu else ", no GPU")
               + f"; model {payload['model']['file']}"
               + (f", inputs {'+'.join(inputs)}" if (inputs := payload["model"].get("inputs"))
                  else ""))
    tables = []
    steps = Table(title="step latency (ms per call)", caption=caption)
    for col in ("variant", "batch", "p50", "p99", "p50 / face", "faces/s"):
        steps.add_column(col, justify="left" if col == "variant" else "right")
    for r in payload["results"]:
        steps.add_row(r["variant"], str(r["batch"]), _ms(r["p50_ms"]), _ms(r["p99_ms"]),
                      _ms(r["p50_ms_per_face"]), f"{r['faces_per_s']:,.0f}")
    tables.append(steps)
    comparisons = payload["comparisons"]
    if comparisons["batch_vs_single"]:
        batch = Table(title="N faces: one batched step vs N steps at batch 1 (p50 ms)")
        for col in ("variant", "N", "batched", "N x batch 1", "speed-up", "ms / face"):
            batch.add_column(col, justify="left" if col == "variant" else "right")
        for r in comparisons["batch_vs_single"]:
            batch.add_row(r["variant"], str(r["batch"]), _ms(r["batched_call_ms"]),
                          _ms(r["n_single_calls_ms"]), f"{r['speedup']:.2f}x",
                          _ms(r["batched_ms_per_face"]))
        tables.append(batch)
    if comparisons["sliding_window"]:
        window = Table(title="per output frame: stateful step vs re-running the last W frames "
                             "(W steps at batch 1; or the W frames as one CNN batch, then the "
                             "cell)")
        for col in ("variant", "W", "W steps p50 ms", "p99 ms", "x stateful",
                    "CNN batch + cell p50 ms", "p99 ms", "x stateful"):
            window.add_column(col, justify="left" if col == "variant" else "right")
        for name, rows in comparisons["sliding_window"].items():
            for r in rows:
                label = "stateful (1)" if r["window"] == 1 else str(r["window"])
                window.add_row(name, label, *window_cells(r))
        tables.append(window)
    if comparisons.get("parity"):
        par = Table(title="parity with ONNX Runtime CPU FP32 (same crops, unrolled)")
        for col in ("variant", "steps", "max |AU error|", "max |state error|"):
            par.add_column(col, justify="left" if col == "variant" else "right")
        for name, p in comparisons["parity"].items():
            par.add_row(name, str(p["steps"]), f"{p['max_abs_au_error']:.2e}",
                        f"{p['max_abs_state_error']:.2e}")
        tables.append(par)
    stages = payload.get("stages") or {}
    if stages:
        src = stages["source"]
        lat = stages.get("capture_to_estimate") or {}
        process = stages["process"]
        cap = (f"{src['path']} {src['width']}x{src['height']} @ {src['fps']:g} fps, "
               f"{src['loops']} loop(s); rtau process: {process['fps']:.1f} frames/s")
        if lat:
            cap += (f"; live capture-to-estimate p50 {lat['p50_ms']:.1f} ms "
                    f"({lat['p50_frame_periods']:.2f} frame periods), p99 {lat['p99_ms']:.1f} "
                    f"ms, {lat['frames_dropped']} stale frames dropped")
        table = Table(title=f"pipeline stages ({stages['variant']})", caption=cap)
        for col in ("stage", "p50 ms", "p99 ms", "samples", "measured in"):
            table.add_column(col, justify="left" if col in ("stage", "measured in") else "right")
        for name, s in stages["per_stage"].items():
            table.add_row(name, _ms(s["p50_ms"]), _ms(s["p99_ms"]), str(s["samples"]),
                          s["measured_in"])
        if lat:
            table.add_row("capture-to-estimate", _ms(lat["p50_ms"]), _ms(lat["p99_ms"]),
                          str(lat["samples"]), "live")
        tables.append(table)
    return tables


def run_bench(cfg: BenchConfig) -> dict:
    """Measure, print the tables, write the JSON; returns the payload."""
    from rich.console import Console

    from rtau.bench import BenchError, run_suite
    from rtau.contract import write_json_atomic
    from rtau.model_files import resolve_model
    from rtau.native_logs import show_native_logs

    show_native_logs(cfg.verbose)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    suite = suite_config(cfg)
    variants = variants_for(cfg)
    if not variants:
        raise BenchError("no backend is installed here (rtau doctor says why)")
    if cfg.source is not None:
        from rtau.capture import VideoFileSource

        VideoFileSource(cfg.source).close()  # a bad source fails before anything is timed
    model = resolve_model(cfg.model)
    several = len(variants) > 1

    def on_skip(item) -> None:
        if several:
            at = f" at batch {item.batch}" if item.batch is not None else ""
            err.print(f"skipped {item.variant}{at}: {item.reason}")

    def on_result(r) -> None:
        err.print(f"{r.variant} batch {r.batch}: p50 {_ms(r.p50_ms)} ms, "
                  f"{r.faces_per_s:,.0f} faces/s")

    payload = run_suite(variants, model, suite, on_result=on_result, on_skip=on_skip,
                        on_note=err.print)
    if not payload["results"]:
        reasons = "; ".join(f"{s['variant']}: {s['reason']}" for s in payload["skipped"])
        raise BenchError(f"no backend could be timed here ({reasons})")
    payload["command"] = command_line(cfg)
    console = Console(width=120)
    for table in report_tables(payload):
        console.print(table)
    if cfg.json is not None:
        write_json_atomic(cfg.json, payload)
        err.print(f"wrote {cfg.json}")
    return payload


def bench(
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", help="Backends to time, comma-separated or repeated "
                          "(default: every one installed).")] = None,
    batch: Annotated[str, typer.Option(
        "--batch", help="Batch sizes, comma-separated.")] = DEFAULT_BATCH,
    steps: Annotated[int, typer.Option(
        "--steps", min=1, help="Timed steps per backend and batch size.")] = 200,
    warmup: Annotated[int, typer.Option(
        "--warmup", min=0, help="Untimed steps first.")] = 20,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", min=0.0, help="Time budget per batch size: stop timing after it "
                                       "(at least 50 steps; 0 = no limit).")] = 0.0,
    windows: Annotated[str, typer.Option(
        "--windows", help="Sliding-window lengths compared with the stateful step "
                          "('none' to skip).")] = DEFAULT_WINDOWS,
    window_frames: Annotated[int, typer.Option(
        "--window-frames", min=1, help="Output frames timed per window length.")] = 20,
    parity: Annotated[int, typer.Option(
        "--parity", min=0, help="Unrolled steps compared with ONNX Runtime CPU (0 = skip).")
    ] = 0,
    source: Annotated[Path | None, typer.Option(
        "--source", help="Video for the per-stage pipeline breakdown and live latency.")] = None,
    loops: Annotated[int, typer.Option(
        "--loops", min=1, help="Times the --source clip is played per pass.")] = 1,
    max_faces: Annotated[int, typer.Option(
        "--max-faces", min=1, help="Faces tracked per frame with --source.")] = 1,
    model: ModelOption = None,
    threads: Annotated[int, typer.Option(
        "--threads", min=0, help="CPU threads of ONNX Runtime and torch (0 = their default)."
    )] = 0,
    json: Annotated[Path | None, typer.Option(
        "--json", help="Write every number, the machine and the command as JSON.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show MediaPipe / TFLite start-up log lines.")] = False,
) -> None:
    """Time the step per backend and batch size (and with --source the whole pipeline)."""
    run_bench(BenchConfig(backend=tuple(backend or ()), batch=batch, steps=steps,
                          warmup=warmup, max_seconds=max_seconds, windows=windows,
                          window_frames=window_frames, parity=parity, source=source,
                          loops=loops, max_faces=max_faces, model=model, threads=threads,
                          json=json, verbose=verbose))
