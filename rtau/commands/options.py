"""Command-line options that several `rtau` commands share, declared once so that their flag,
type, bounds and help read the same everywhere.

Use: `def live(model: ModelOption = None, backend: BackendOption = "auto", ...)`; each is a
typer `Annotated` type, the default stays in the command's signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOption = Annotated[Path | None, typer.Option(
    "--model", help="Contract ONNX/engine (default: the shipped model).")]
BackendOption = Annotated[str, typer.Option(
    "--backend", help="auto | onnxruntime | tensorrt | torch.")]
MaxFacesOption = Annotated[int, typer.Option("--max-faces", min=1, help="Faces tracked per frame.")]
CalibrateOption = Annotated[float, typer.Option(
    "--calibrate", min=0.0, help="Seconds of neutral face per id to subtract (0 = off).")]
CsvOption = Annotated[Path | None, typer.Option(
    "--csv", help="CSV table: one row per face per frame, flushed every frame.")]
JsonlOption = Annotated[Path | None, typer.Option(
    "--jsonl", help="The same rows as JSON lines.")]
StatsOption = Annotated[bool, typer.Option(
    "--stats", help="Print per-stage p50/p99 latency at the end.")]
