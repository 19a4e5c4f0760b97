"""`rtau build-engine`: compile a contract ONNX into a TensorRT / TensorRT-RTX engine.

Run: `rtau build-engine` (the default model, TensorRT-RTX or full TensorRT, whichever is
installed) or `rtau build-engine --model model.onnx --out engines/model.engine --max-batch 16
--buckets 1,2,4,8,16 --target rtx --compute-capability 8.6,8.9`. Prints the builder's phases as
a progress display, then a summary; an engine whose manifest already matches the request is
not rebuilt (`--force` rebuilds). Everything it does is `rtau.engine_build.build_engine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtau import engine_build
from rtau.engine_build import (
    DEFAULT_BUCKETS,
    DEFAULT_MAX_BATCH,
    EngineBuildConfig,
    parse_compute_capabilities,
    parse_int_list,
)

PRECISION_NOTES = {"fp16-cnn": "CNN FP16, geometry encoder, recurrent cell and state FP32",
                   "fp32": "no CNN: a geometry-only model runs FP32"}


def summary_table(result):
    """A rich Table describing a BuildResult (pure; tested without printing)."""
    from rich.table import Table

    m = result.manifest
    table = Table(title="rtau build-engine", show_header=False)
    table.add_column("what")
    table.add_column("value")
    status = ("up to date (manifest matches; --force rebuilds)" if result.skipped
              else f"built in {result.seconds:.1f} s")
    rows = [
        ("engine", f"{result.engine_path} ({m['engine_bytes'] / 1e6:.1f} MB)"),
        ("status", status),
        ("manifest", str(result.manifest_path)),
        ("source", f"{m['source_onnx']} (sha256 {m['source_onnx_sha256'][:12]}...)"),
        ("tensorrt", f"{m['tensorrt']['package']} {m['tensorrt']['version']}"),
        ("compute capabilities", ", ".join(m["targets"]["compute_capabilities"])),
        ("batch buckets", ", ".join(str(b) for b in m["buckets"])),
        ("precision", f"{m['precision']} ({PRECISION_NOTES.get(m['precision'], '')})"),
    ]
    rows += [(f"{'in' if t['mode'] == 'input' else 'out'}: {name}",
              f"{t['dtype']}[{', '.join(str(d) for d in t['shape'])}]")
             for name, t in m["io"].items()]
    for row in rows:
        table.add_row(*row)
    return table


def build_engine(
    model: Annotated[Path | None, typer.Option(
        "--model", help="Contract ONNX (default: $RTAU_MODEL or the shipped model).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Engine path (default: engines/<model>-<flavour>-<version>.engine).")
    ] = None,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", min=1, help="Largest batch; the last bucket.")] = DEFAULT_MAX_BATCH,
    buckets: Annotated[str | None, typer.Option(
        "--buckets", help="Batch sizes with their own profile, e.g. "
        f"{','.join(map(str, DEFAULT_BUCKETS))} (default: powers of two up to --max-batch).")
    ] = None,
    target: Annotated[str, typer.Option(
        "--target", help="auto | tensorrt (datacenter GPUs) | rtx (TensorRT-RTX, RTX GPUs).")
    ] = "auto",
    compute_capability: Annotated[str, typer.Option(
        "--compute-capability", help="TensorRT-RTX targets, e.g. 8.6,8.9, or 'current' "
        "(default: 8.0,8.6,8.9,12.0; full TensorRT: the GPU present).")] = "",
    force: Annotated[bool, typer.Option(
        "--force", help="Rebuild even when the manifest matches.")] = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show the builder's phases while it works.")] = True,
) -> None:
    """Build a TensorRT FP16 engine (stateful step) with a JSON manifest beside it."""
    from rich.console import Console

    cfg = EngineBuildConfig(
        model=model, out=out, max_batch=max_batch,
        buckets=parse_int_list(buckets, "--buckets") if buckets else None, target=target,
        compute_capability=parse_compute_capabilities(compute_capability), force=force,
        progress=progress,
    )
    result = engine_build.build_engine(cfg, console=Console(stderr=True))
    Console(width=160).print(summary_table(result))
