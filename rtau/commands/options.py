"""Command-line options that several `rtau` commands share, declared once so that their flag,
type, bounds and help read the same everywhere.

Use: `def live(model: ModelOption = None, backend: BackendOption = "auto", ...)`; each is a
typer `Annotated` type, the default stays in the command's signature.

`config_from_options` builds a command's frozen config from its option values once, by name
(the flags map 1:1 to config fields); `python -m train`'s commands use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, TypeVar

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


Config = TypeVar("Config")


def config_from_options(config_type: type[Config], options: Mapping[str, object],
                        **parsed: object) -> Config:
    """A `config_type` dataclass from a command's option values: `options` maps each flag's
    parameter name to its value (the command's `locals()` as its first statement, before it
    names anything else), `parsed` replaces the values a command converts from their text
    (`size="640x480"` -> `size=(640, 480)`). Fields without a flag keep their defaults; an
    option that names no field is a TypeError (a flag that would be silently ignored)."""
    values = {**options, **parsed}
    fields = {f.name for f in dataclasses.fields(config_type) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise TypeError(f"{config_type.__name__} has no field for option(s) {unknown}")
    return config_type(**values)
