"""Turn a benchmark JSON (from `rtau bench --json` or `python -m benchmarks.sweep`) into a markdown
table and a plot, with the DESIGN targets beside the numbers.

Run: `python -m benchmarks.report benchmarks/results/cpu2-x86_64.json` rewrites
`cpu2-x86_64.md` and `cpu2-x86_64.png` beside it (useful for a JSON measured on a machine
without matplotlib). `write_results(payload, out_dir)` writes all three atomically.
The plot: step latency vs batch per variant, per-face cost vs batch, the pipeline stage
breakdown, and the per-frame cost of the stateful step against a sliding window.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.results_io import write_text_atomic
from rtau.commands.bench import window_cells
from rtau.contract import write_json_atomic

CPU_STEP_TARGET_MS = 8.0
GPU_STEP_TARGET_MS = 0.3
GPU_THROUGHPUT_TARGET = 20_000.0
PROCESS_FPS_TARGET = 25.0
LATENCY_TARGET_PERIODS = 1.5
FP16_PARITY_TARGET = 0.05
FP16_PARITY_STEPS = 1000
PLOT_DPI = 110
SHARED_LOAD = 0.5
"""Load average per core above which a run is flagged as sharing the machine."""


def _is_gpu_variant(result: dict) -> bool:
    return "cuda" in result["description"] or result["backend"] == "tensorrt"


def _best(rows: list[dict], key: str, lowest: bool = True) -> dict | None:
    if not rows:
        return None
    return (min if lowest else max)(rows, key=lambda r: r[key])


def targets(payload: dict) -> list[dict]:
    """DESIGN.md section 6, each with what this payload measured and whether it is met
    (met None: not measured here, with the reason in `measured`)."""
    results, machine = payload["results"], payload["machine"]
    rows = []
    cpu = [r for r in results if r["backend"] == "onnxruntime" and r["batch"] == 1
           and not _is_gpu_variant(r)]
    best = _best(cpu, "p50_ms")
    rows.append({"what": "default model step, ONNX Runtime CPU, batch 1, 2 cores",
                 "target": f"<= {CPU_STEP_TARGET_MS:g} ms p50",
                 "measured": f"{best['p50_ms']:.2f} ms p50 ({machine['cores']} cores, model "
                             f"{payload.get('model', {}).get('file', '?')})"
                 if best else "not measured",
                 "met": (best["p50_ms"] <= CPU_STEP_TARGET_MS) if best else None})
    gpu = [r for r in results if _is_gpu_variant(r)]
    best = _best([r for r in gpu if r["batch"] == 1], "p50_ms")
    rows.append({"what": "step on a GPU (torch CUDA graphs or TensorRT FP16), batch 1",
                 "target": f"<= {GPU_STEP_TARGET_MS:g} ms p50",
                 "measured": f"{best['p50_ms']:.3f} ms p50 ({best['variant']})" if best
                 else "not measured (no GPU)",
                 "met": (best["p50_ms"] <= GPU_STEP_TARGET_MS) if best else None})
    best = _best(gpu, "faces_per_s", lowest=False)
    rows.append({"what": "step throughput on a GPU, large batch",
                 "target": f">= {GPU_THROUGHPUT_TARGET:,.0f} faces/s",
                 "measured": f"{best['faces_per_s']:,.0f} faces/s ({best['variant']}, batch "
                             f"{best['batch']})" if best else "not measured (no GPU)",
                 "met": (best["faces_per_s"] >= GPU_THROUGHPUT_TARGET) if best else None})
    stages = payload.get("stages") or {}
    process = stages.get("process")
    rows.append({"what": "`rtau process`, one face, 640x360 (2-core CPU)",
                 "target": f">= {PROCESS_FPS_TARGET:g} frames/s",
                 "measured": f"{process['fps']:.1f} frames/s ({machine['cores']} cores)"
                 if process else "not measured",
                 "met": (process["fps"] >= PROCESS_FPS_TARGET) if process else None})
    lat = stages.get("capture_to_estimate")
    rows.append({"what": "live: capture-to-estimate latency at 30 fps",
                 "target": f"<= {LATENCY_TARGET_PERIODS:g} frame periods",
                 "measured": f"p50 {lat['p50_frame_periods']:.2f} ({lat['p50_ms']:.1f} ms), "
                             f"p99 {lat['p99_frame_periods']:.2f} ({lat['p99_ms']:.1f} ms) "
                             "frame periods" if lat else "not measured",
                 "met": (lat["p50_frame_periods"] <= LATENCY_TARGET_PERIODS) if lat else None})
    parity = payload["comparisons"].get("parity") or {}
    fp16 = {name: p for name, p in parity.items() if p["steps"] >= FP16_PARITY_STEPS
            and any(r["variant"] == name and "fp16" in r["description"] for r in results)}
    worst = max(fp16.items(), key=lambda kv: kv[1]["max_abs_au_error"], default=None)
    rows.append({"what": "FP16 engine vs FP32 reference over 1,000 unrolled steps",
                 "target": f"max abs AU error <= {FP16_PARITY_TARGET:g}",
                 "measured": f"{worst[1]['max_abs_au_error']:.2e} ({worst[0]})" if worst
                 else "not measured (no FP16 GPU variant ran)",
                 "met": (worst[1]["max_abs_au_error"] <= FP16_PARITY_TARGET) if worst else None})
    return rows


def shared_machine(machine: dict) -> bool:
    """True when other processes kept the cores busy during the run (1-minute load average
    at the start or the end above SHARED_LOAD per core)."""
    loads = [machine["load_average"][0], *machine.get("load_average_after", [0.0])[:1]]
    return max(loads) > SHARED_LOAD * max(machine["cores"], 1)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def markdown(payload: dict) -> str:
    """Every table of the payload in markdown, the machine and command on top."""
    m, model = payload["machine"], payload["model"]
    gpus = "; ".join(f"{g['name']}, driver {g['driver']}, CC {g['compute_capability']}, "
                     f"{g['memory']}" for g in m["gpus"]) or "none"
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    weights = ("the shipped default model" if model.get("shipped_default")
               else model.get("note", "not the shipped default model"))
    lines = [
        f"# rtau benchmarks: {m['name']}",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['arch']}; GPU: {gpus}",
        f"- OS {m['os']}, Python {m['python']}; {libs}",
        f"- load average (1/5/15 min) before {m['load_average']}, after "
        f"{m.get('load_average_after', '?')}; threads {m['threads']}"
        + (f". **Other jobs shared this machine** (load {m['load_average'][0]:g} on "
           f"{m['cores']} cores): the timings are slower and noisier than on an idle machine"
           if shared_machine(m) else ""),
        f"- model: `{model['file']}` (sha256 {model['sha256'][:12]}..., {weights}; "
        f"S={model.get('crop_size')}, H={model.get('state_size')}, K={model.get('aus')}, "
        f"{model.get('precision')})",
        f"- command: `{payload.get('command', '?')}`",
        "",
        "## Step latency (ms per `step` call; p50 / p99 over "
        f"{payload['config']['steps']} timed calls after {payload['config']['warmup']} warm-up)",
        "",
        "| variant | backend | batch | p50 ms | p99 ms | p50 ms / face | faces/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(f"| {r['variant']} | {r['description']} | {r['batch']} | {_ms(r['p50_ms'])}"
                     f" | {_ms(r['p99_ms'])} | {_ms(r['p50_ms_per_face'])} "
                     f"| {r['faces_per_s']:,.0f} |")
    comparisons = payload["comparisons"]
    if comparisons["batch_vs_single"]:
        lines += ["", "## N faces: one batched step vs N steps at batch 1 (p50)", "",
                  "| variant | N | batched ms | N x batch-1 ms | speed-up | ms / face |",
                  "|---|---|---|---|---|---|"]
        for r in comparisons["batch_vs_single"]:
            lines.append(f"| {r['variant']} | {r['batch']} | {_ms(r['batched_call_ms'])} | "
                         f"{_ms(r['n_single_calls_ms'])} | {r['speedup']:.2f}x | "
                         f"{_ms(r['batched_ms_per_face'])} |")
    if comparisons["sliding_window"]:
        lines += ["", "## Per output frame: stateful step vs re-running the last W frames",
                  "", "A model without carried state must see its W frames of context again "
                  "for every new frame. Two ways: W steps from the zero state at batch 1 "
                  "through the same backend (W x by construction), and the fair one, the W "
                  "frames as one batch through the CNN, then the recurrent cell over them "
                  "(ONNX Runtime variants only; '-' elsewhere).",
                  "", "| variant | W | W steps p50 ms | p99 ms | x stateful "
                  "| CNN batch + cell p50 ms | p99 ms | x stateful |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, rows in comparisons["sliding_window"].items():
            for r in rows:
                label = "stateful (1)" if r["window"] == 1 else str(r["window"])
                lines.append(f"| {name} | {label} | " + " | ".join(window_cells(r)) + " |")
    if comparisons.get("parity"):
        lines += ["", "## Parity with ONNX Runtime CPU FP32 (same crops, unrolled from zero)",
                  "", "| variant | steps | batch | max abs AU error | max abs state error |",
                  "|---|---|---|---|---|"]
        for name, p in comparisons["parity"].items():
            lines.append(f"| {name} | {p['steps']} | {p['batch']} | {p['max_abs_au_error']:.2e}"
                         f" | {p['max_abs_state_error']:.2e} |")
    stages = payload.get("stages") or {}
    if stages:
        src, process = stages["source"], stages["process"]
        lines += ["", f"## Pipeline stages: {src['path']} ({src['width']}x{src['height']}, "
                  f"{src['fps']:g} fps, played {src['loops']} time(s)), {stages['variant']}", "",
                  f"`rtau process` throughput: **{process['fps']:.1f} frames/s** "
                  f"({process['frames']} frames, {process['frames_with_face']} with a face).", "",
                  "| stage | p50 ms | p99 ms | samples | measured in |", "|---|---|---|---|---|"]
        for name, s in stages["per_stage"].items():
            lines.append(f"| {name} | {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | {s['samples']} "
                         f"| {s['measured_in']} |")
        lat = stages.get("capture_to_estimate")
        if lat:
            lines.append(f"| capture-to-estimate | {_ms(lat['p50_ms'])} | {_ms(lat['p99_ms'])} "
                         f"| {lat['samples']} | live |")
            lines += ["", f"Live: {lat['frames_estimated']} frames estimated, "
                      f"{lat['frames_dropped']} stale frames dropped by the capture thread; "
                      f"capture-to-estimate p50 {lat['p50_frame_periods']:.2f}, p99 "
                      f"{lat['p99_frame_periods']:.2f} frame periods of "
                      f"{lat['frame_period_ms']:.1f} ms."]
    for skip in payload.get("skipped", []):
        if skip is payload["skipped"][0]:
            lines += ["", "## Not measured here", ""]
        at = f" (batch {skip['batch']})" if skip.get("batch") else ""
        lines.append(f"- {skip['variant']}{at}: {skip['reason']}")
    for note in payload.get("notes", []):
        if note is payload["notes"][0]:
            lines += ["", "## Notes", ""]
        lines.append(f"- {note}")
    lines += ["", "## DESIGN.md section 6 targets", "", "| what | target | measured | met |",
              "|---|---|---|---|"]
    for t in targets(payload):
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['what']} | {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    """Latency and per-face cost vs batch per variant, stage breakdown, sliding window; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax_lat, ax_face, ax_stage, ax_win = axes.ravel()
    variants = dict.fromkeys(r["variant"] for r in payload["results"])
    for name in variants:
        rows = sorted((r for r in payload["results"] if r["variant"] == name),
                      key=lambda r: r["batch"])
        batches = [r["batch"] for r in rows]
        line, = ax_lat.plot(batches, [r["p50_ms"] for r in rows], "o-", label=f"{name} p50")
        ax_lat.plot(batches, [r["p99_ms"] for r in rows], "--", color=line.get_color(),
                    alpha=0.6, label=f"{name} p99")
        ax_face.plot(batches, [r["p50_ms_per_face"] * 1000 for r in rows], "o-", label=name)
    for ax, title, unit in ((ax_lat, "step latency per call", "ms"),
                            (ax_face, "step cost per face (p50)", "µs per face")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({r["batch"] for r in payload["results"]}))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_xlabel("batch (faces per step)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    stages = payload.get("stages") or {}
    if stages:
        names = list(stages["per_stage"])
        p50 = [stages["per_stage"][n]["p50_ms"] for n in names]
        p99 = [stages["per_stage"][n]["p99_ms"] for n in names]
        lat = stages.get("capture_to_estimate")
        if lat:
            names.append("capture-to-\nestimate")
            p50.append(lat["p50_ms"])
            p99.append(lat["p99_ms"])
        ax_stage.barh(names, p50, color="tab:blue", label="p50")
        ax_stage.errorbar(p99, names, fmt="|", color="tab:red", markersize=12, label="p99")
        ax_stage.invert_yaxis()
        ax_stage.set_xlabel("ms")
        ax_stage.legend(fontsize=7)
        ax_stage.set_title(f"pipeline stages ({stages['source']['path']}, {stages['variant']}; "
                           f"process {stages['process']['fps']:.0f} fps)", fontsize=9)
    else:
        ax_stage.text(0.5, 0.5, "no --source: stages not measured", ha="center")
        ax_stage.set_axis_off()
    sliding = payload["comparisons"]["sliding_window"]
    if sliding:
        for name, rows in sliding.items():
            ax_win.plot([r["window"] for r in rows], [r["p50_ms"] for r in rows], "o-",
                        label=f"{name}: W steps")
            batched = [r for r in rows if r.get("batched_p50_ms") is not None]
            if batched:
                ax_win.plot([r["window"] for r in batched],
                            [r["batched_p50_ms"] for r in batched], "s--",
                            label=f"{name}: CNN batch + cell")
        ax_win.set_xlabel("frames re-run per output frame (1 = stateful step)")
        ax_win.set_ylabel("ms per output frame (p50)")
        ax_win.set_title("stateful step vs sliding window")
        ax_win.grid(True, alpha=0.3)
        ax_win.legend(fontsize=7)
    else:
        ax_win.set_axis_off()
    m = payload["machine"]
    gpu = m["gpus"][0]["name"] if m["gpus"] else "no GPU"
    fig.suptitle(f"rtau {m['name']}: {m['cpu']}, {m['cores']} cores, {gpu}; "
                 f"model {payload['model']['file']}", fontsize=10)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=PLOT_DPI)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def write_results(payload: dict, out_dir: Path, name: str | None = None,
                  json_too: bool = True) -> list[Path]:
    """`<name>.json`, `.md` and (with matplotlib) `.png` under out_dir; name defaults to the
    machine's. Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (name or payload["machine"]["name"])
    written = []
    if json_too:
        write_json_atomic(stem.with_suffix(".json"), payload)
        written.append(stem.with_suffix(".json"))
    write_text_atomic(stem.with_suffix(".md"), markdown(payload))
    written.append(stem.with_suffix(".md"))
    try:
        plot(payload, stem.with_suffix(".png"))
        written.append(stem.with_suffix(".png"))
    except ImportError:
        pass  # no matplotlib on this machine: run this script on the JSON elsewhere
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, nargs="+", help="benchmark JSON files")
    args = parser.parse_args(argv)
    for path in args.json:
        payload = json.loads(path.read_text())
        for written in write_results(payload, path.parent, path.stem, json_too=False):
            print(f"wrote {written}")


if __name__ == "__main__":
    main()
