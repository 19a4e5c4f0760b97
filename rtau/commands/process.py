"""`rtau process VIDEO... --out DIR` (or `--csv FILE` for one video): AU tables of video files.

Run: `rtau process clip.mp4 --csv clip.csv` or `rtau process a.mp4 b.mov --out results/`
(`--csv`/`--jsonl` take one video; `--out DIR` any number).
Every frame is processed in order (nothing skipped) with decoding, landmarks and the model
step overlapped in three threads (`rtau.pipeline`); a progress bar runs on stderr and a
summary per video (frames, frames with a face, faces, fps) is printed at the end. `--out DIR`
writes `DIR/<video stem>.csv`. A video without a face gives a warning and a header-only table
(exit 0). A video that stops decoding before the frame count its container declares gives a
warning naming both numbers (exit 0); the rows of the frames it did decode stay. Ctrl-C stops
cleanly: every row written so far is flushed and the files closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from rtau.commands import options
from rtau.errors import RtauError


@dataclass(frozen=True)
class ProcessConfig:
    """Options of `rtau process`; each field is the flag of the same name."""

    videos: tuple[Path, ...]
    out: Path | None = None
    csv: Path | None = None
    jsonl: Path | None = None
    model: Path | None = None
    backend: str = "auto"
    max_faces: int = 1
    calibrate: float = 0.0
    max_frames: int = 0
    stats: bool = False
    progress: bool = True
    verbose: bool = False


def _outputs(cfg: ProcessConfig) -> list[tuple[Path | None, Path | None]]:
    """(csv path, jsonl path) per video; RtauError for a contradictory request."""
    if cfg.out is not None and (cfg.csv is not None or cfg.jsonl is not None):
        raise RtauError("give either --out DIR or --csv/--jsonl FILE, not both")
    if cfg.out is None and cfg.csv is None and cfg.jsonl is None:
        raise RtauError("say where the results go: --out DIR (one CSV per video) or --csv FILE")
    if cfg.out is None:
        if len(cfg.videos) != 1:
            raise RtauError(f"--csv/--jsonl take one video, {len(cfg.videos)} were given; "
                            "use --out DIR for several")
        return [(cfg.csv, cfg.jsonl)]
    if cfg.out.exists() and not cfg.out.is_dir():
        raise RtauError(f"--out {cfg.out} exists and is not a folder")
    stems = [v.stem for v in cfg.videos]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise RtauError(f"several videos are named {duplicates[0]!r}: their tables would "
                        f"overwrite each other in {cfg.out}")
    return [(cfg.out / f"{stem}.csv", None) for stem in stems]


def run_process(cfg: ProcessConfig) -> list:
    """Process every video of `cfg`; returns the `VideoSummary` list (printed by the command)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtau.capture import VideoFileSource
    from rtau.estimator import choose_backend
    from rtau.model_files import resolve_model
    from rtau.native_logs import show_native_logs
    from rtau.pipeline import PipelineConfig, process_video
    from rtau.render import stats_table
    from rtau.sinks import open_sinks
    from rtau.timing import StageStats

    show_native_logs(cfg.verbose)
    err = Console(stderr=True, soft_wrap=True)
    outputs = _outputs(cfg)
    # Check every input before spending time on the first one.
    sources = []
    try:
        for video in cfg.videos:
            sources.append(VideoFileSource(video))
    except BaseException:
        for source in sources:
            source.close()
        raise
    backend = None
    summaries = []
    stats = StageStats()
    try:
        backend, info = choose_backend(cfg.backend, resolve_model(cfg.model))
        err.print(info, highlight=False)
        pipeline_cfg = PipelineConfig(max_faces=cfg.max_faces, calibrate_seconds=cfg.calibrate,
                                      max_frames=cfg.max_frames)
        if cfg.out is not None:
            cfg.out.mkdir(parents=True, exist_ok=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[fps]:5.1f} fps"), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=not cfg.progress) as progress:
            for video, source, (csv_path, jsonl_path) in zip(cfg.videos, sources, outputs,
                                                             strict=True):
                total = source.frame_count
                if cfg.max_frames and total:
                    total = min(total, cfg.max_frames)
                task = progress.add_task(video.name, total=total, fps=0.0)
                t_start = [0.0]

                def advance(frame, estimates, task=task, t_start=t_start):
                    import time

                    now = time.perf_counter()
                    t_start[0] = t_start[0] or now
                    done = frame.index + 1
                    fps = (done - 1) / (now - t_start[0]) if now > t_start[0] else 0.0
                    progress.update(task, completed=done, fps=fps)

                with open_sinks(backend.contract.au_names, csv_path, jsonl_path) as sinks:
                    summary = process_video(video, backend, sinks, pipeline_cfg, stats,
                                            on_frame=advance, source=source)
                summary.outputs = [p for p in (csv_path, jsonl_path) if p is not None]
                summaries.append(summary)
                short = source.shortfall()
                if short is not None:
                    err.print(f"[yellow]warning:[/] {short}; its {summary.frames} frames are in "
                              "the table", highlight=False)
                if summary.frames_with_face == 0:
                    err.print(f"[yellow]warning:[/] no face found in {video} "
                              f"({summary.frames} frames); its table is empty", highlight=False)
    finally:
        for source in sources:
            source.close()
        if backend is not None:
            backend.close()
    _print_summary(summaries)
    if cfg.stats:
        Console().print(stats_table(stats.summary()))
    return summaries


def _print_summary(summaries: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rtau process")
    for name in ("video", "frames", "frames with face", "faces", "fps", "output"):
        table.add_column(name, justify="right" if name in ("frames", "faces", "fps") else "left")
    for s in summaries:
        table.add_row(str(s.video), str(s.frames), str(s.frames_with_face), str(s.faces),
                      f"{s.fps:.1f}", ", ".join(str(p) for p in s.outputs))
    Console(width=160).print(table)


def process(
    videos: Annotated[list[Path], typer.Argument(help="Video files, processed in order.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for one <stem>.csv per video.")] = None,
    csv: options.CsvOption = None,
    jsonl: options.JsonlOption = None,
    model: options.ModelOption = None,
    backend: options.BackendOption = "auto",
    max_faces: options.MaxFacesOption = 1,
    calibrate: options.CalibrateOption = 0.0,
    max_frames: Annotated[int, typer.Option(
        "--max-frames", min=0, help="Stop each video after N frames (0 = all).")] = 0,
    stats: options.StatsOption = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show a progress bar on stderr.")] = True,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show MediaPipe / TFLite start-up log lines.")] = False,
) -> None:
    """Estimate AU intensities in every frame of video files; write CSV/JSONL tables."""
    cfg = ProcessConfig(videos=tuple(videos), out=out, csv=csv, jsonl=jsonl, model=model,
                        backend=backend, max_faces=max_faces, calibrate=calibrate,
                        max_frames=max_frames, stats=stats, progress=progress,
                        verbose=verbose)
    run_process(cfg)
