"""`python -m train prepare`: turn a dataset (DISFA, BP4D, a folder of videos) into a clip store.

    python -m train prepare --dataset disfa --root /data/DISFA --out stores/disfa
    python -m train prepare --dataset videos --root ~/clips --out stores/clips --workers 2
    python -m train prepare --dataset disfa --root data/synth --out stores/synth_test --split test

Per frame: MediaPipe FaceLandmarker (rtau.faces, the same wrapper the live app uses) -> the largest
face -> alignment to an S x S crop (rtau.align; `--alignment rigid/2`, on the eye corners and
philtrum top, filtered over the video's frames by rtau.stabilise as the live path does, by default;
the store's index records it and training keeps stores apart by it). Frames without a face stay in
place as gaps (zero crop, face_found False, labels masked; the filter starts afresh after one), so
frame i keeps the labels of frame i. Labels are read and checked for every video before any
decoding starts. Videos run in parallel worker processes (each owns its landmarker); a video enters
the store only when complete, so an interrupted prepare resumes where it stopped when run again
with the same arguments. Ends with a summary table of the whole store. `--split train|test` keeps
only the subjects of that split of synthetic data (read from ROOT/synth.json; `all`, the default,
keeps every video of any dataset).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rtau.commands.options import config_from_options
from rtau.contract import ALIGNMENT_DEFAULT, KNOWN_ALIGNMENTS
from train.data.source import DatasetError, SourceVideo
from train.data.splits import ALL, check_split, select_subjects
from train.data.store import ClipStore, VideoEntry
from train.data.store_writer import StoreHeader, StoreWriter, VideoEntryWriter

DEFAULT_CROP_SIZE = 112  # rtau.align.CROP_SIZE; not imported so that `--help` stays fast
DEFAULT_ALIGNMENT = ALIGNMENT_DEFAULT  # rtau.align.DEFAULT_ALIGNMENT
MIN_CROP_SIZE = 32
DEFAULT_WORKERS = max(1, os.cpu_count() or 1)
PROGRESS_EVERY = 16  # frames between progress messages from a worker
POLL_SECONDS = 0.1
MS_PER_SECOND = 1000.0
VIDEO_TRACK = 0
"""The one face a video's crops follow (its largest), as a stabiliser track id."""


class Dataset(StrEnum):
    disfa = "disfa"
    bp4d = "bp4d"
    videos = "videos"


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of one prepare run (CLI flags map 1:1 to these fields).

    dataset: layout of `root` (disfa, bp4d, videos; see train/data/<dataset>.py).
    out: the clip store folder (created, or resumed if it holds a store of the same settings).
    crop_size: S, side of the aligned crops in pixels.
    workers: processes working on different videos at once.
    max_faces: faces the landmarker looks for per frame; the largest one is kept.
    split: train | test | all: the subjects of one split of synthetic data (see synth.json).
    alignment: how crops are made (rtau.align.ALIGNMENTS), recorded in the store's index.
    """

    dataset: str
    root: Path
    out: Path
    crop_size: int = DEFAULT_CROP_SIZE
    workers: int = DEFAULT_WORKERS
    max_faces: int = 1
    split: str = ALL
    alignment: str = DEFAULT_ALIGNMENT

    def check(self) -> None:
        check_split(self.split)
        if self.dataset not in {d.value for d in Dataset}:
            raise ValueError(f"unknown dataset {self.dataset!r} (disfa, bp4d or videos)")
        if self.crop_size < MIN_CROP_SIZE:
            raise ValueError(f"--crop-size must be at least {MIN_CROP_SIZE}, got {self.crop_size}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.max_faces < 1:
            raise ValueError(f"--max-faces must be at least 1, got {self.max_faces}")
        if self.alignment not in KNOWN_ALIGNMENTS:
            raise ValueError(f"unknown --alignment {self.alignment!r} "
                             f"({' or '.join(KNOWN_ALIGNMENTS)})")


def read_dataset(dataset: str, root: Path) -> list[SourceVideo]:
    """The checked entries of a dataset folder (DatasetError on anything malformed)."""
    if dataset == Dataset.disfa:
        from train.data.disfa import read_disfa

        return read_disfa(root)
    if dataset == Dataset.bp4d:
        from train.data.bp4d import read_bp4d

        return read_bp4d(root)
    from train.data.videos import read_videos

    return read_videos(root)


def _timestamps_ms(fps: float):
    """Strictly increasing integer timestamps, as MediaPipe's video mode requires."""
    previous, index = -1, 0
    while True:
        now = max(previous + 1, int(round(index * MS_PER_SECOND / fps)))
        yield now
        previous, index = now, index + 1


def _largest(faces):
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def prepare_video(
    source: SourceVideo, store_root: Path, crop_size: int, max_faces: int, report=None,
    alignment: str = DEFAULT_ALIGNMENT,
) -> VideoEntry:
    """Detect, align and store one video; returns its entry (its folder is then in videos/).

    report(video_id, frames_done_since_last_report) is called every few frames.
    """
    from rtau.align import align_face
    from rtau.faces import FaceDetector
    from rtau.stabilise import AlignmentStabiliser

    pending = 0
    stabiliser = AlignmentStabiliser(alignment, crop_size)  # fresh for every video
    with (
        FaceDetector(max_faces=max_faces, video=True) as detector,
        VideoEntryWriter(store_root, source.id, crop_size) as writer,
    ):
        for frame, timestamp in zip(source.frames(), _timestamps_ms(source.fps), strict=False):
            faces = detector.detect(frame, timestamp)
            if faces:
                face = _largest(faces)
                matrix = stabiliser.matrix(VIDEO_TRACK, face.landmarks, timestamp)
                aligned = align_face(frame, face.landmarks, crop_size, alignment, matrix)
                writer.append(aligned.crop, face.landmarks)
            else:
                stabiliser.reset()  # the face found after a gap starts its filter afresh
                writer.append(None, None)
            pending += 1
            if report is not None and pending >= PROGRESS_EVERY:
                report(source.id, pending)
                pending = 0
        n = writer.num_frames
        labels = source.labels if source.labeled else np.zeros((n, 0), np.float32)
        mask = source.mask if source.labeled else np.zeros((n, 0), bool)
        entry = writer.finish(source.subject, labels, mask, source.au_names, str(source.path))
    if report is not None and pending:
        report(source.id, pending)
    return entry


_WORKER_QUEUE = None  # set in each worker process by _init_worker


def _init_worker(progress_queue) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = progress_queue


def _report_to_queue(video_id: str, frames: int) -> None:
    _WORKER_QUEUE.put((video_id, frames))


def _worker(source: SourceVideo, store_root: Path, crop_size: int, max_faces: int,
            alignment: str) -> VideoEntry:
    return prepare_video(source, store_root, crop_size, max_faces, _report_to_queue, alignment)


def _progress(console: Console, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def _run_parallel(pending, config: PrepareConfig, writer: StoreWriter, progress, task) -> None:
    """Videos in worker processes; the parent alone writes the index as each one completes."""
    context = multiprocessing.get_context("spawn")  # MediaPipe's threads do not survive fork
    progress_queue = context.Queue()

    def drain() -> None:
        while True:
            try:
                _, frames = progress_queue.get_nowait()
            except queue.Empty:
                return
            progress.advance(task, frames)

    with ProcessPoolExecutor(
        max_workers=min(config.workers, len(pending)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress_queue,),
    ) as pool:
        futures = {
            pool.submit(_worker, s, config.out, config.crop_size, config.max_faces,
                        config.alignment): s
            for s in pending
        }
        try:
            while futures:
                done, _ = wait(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                drain()
                for future in done:
                    futures.pop(future)
                    writer.add(future.result())
        except BaseException as exc:
            running = sum(f.running() for f in futures)
            if running and not isinstance(exc, KeyboardInterrupt):
                progress.console.print(
                    f"stopping: letting {running} video(s) in progress finish (kept for resuming)"
                )
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    drain()


def prepare(config: PrepareConfig, console: Console | None = None) -> ClipStore:
    """Run a prepare (resuming if `config.out` holds part of the same store); returns the store."""
    config.check()
    console = console or Console()
    sources = read_dataset(config.dataset, Path(config.root))
    chosen = select_subjects(Path(config.root), sorted({s.subject for s in sources}), config.split)
    if chosen is not None:
        sources = [s for s in sources if s.subject in chosen]
        if not sources:
            raise DatasetError(f"{config.root}: no subject of split {config.split}")
    au_names = sources[0].au_names
    for source in sources:
        if source.au_names != au_names:  # the readers guarantee it; the store relies on it
            raise DatasetError(f"{source.path}: AUs {source.au_names} differ from {au_names}")
    header = StoreHeader(config.dataset, config.crop_size, au_names, str(Path(config.root)),
                         config.alignment)
    with StoreWriter(config.out, header) as writer:
        done = writer.done_ids()
        pending = [s for s in sources if s.id not in done]
        if done:
            console.print(
                f"resuming {config.out}: {len(sources) - len(pending)} of {len(sources)} "
                "videos already prepared"
            )
        started = time.perf_counter()
        total = sum(s.num_frames for s in pending)
        with _progress(console, disable=not pending) as progress:
            task = progress.add_task(f"prepare {config.dataset}", total=total or None)
            if config.workers == 1 or len(pending) <= 1:
                for source in pending:
                    entry = prepare_video(
                        source,
                        config.out,
                        config.crop_size,
                        config.max_faces,
                        lambda _, frames: progress.advance(task, frames),
                        config.alignment,
                    )
                    writer.add(entry)
            else:
                _run_parallel(pending, config, writer, progress, task)
        elapsed = time.perf_counter() - started
    store = ClipStore(config.out)
    console.print(summary_table(store))
    if pending:
        frames = sum(store.entry(s.id).num_frames for s in pending)
        console.print(
            f"prepared {len(pending)} videos, {frames} frames in {elapsed:.1f} s "
            f"({frames / max(elapsed, 1e-9):.1f} frames/s)"
        )
    return store


def summary_table(store: ClipStore) -> Table:
    """Videos, frames, faces found and labeled frames per AU of a whole store (pure)."""
    frames = sum(v.num_frames for v in store.videos)
    found = sum(v.faces_found for v in store.videos)
    table = Table(
        title=f"{store.dataset} clip store, {store.crop_size} px crops, {store.alignment}",
        caption=str(store.root),
    )
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("share of frames", justify="right")

    def share(n: int) -> str:
        return f"{100.0 * n / frames:.1f}%" if frames else "-"

    table.add_row("videos", str(len(store.videos)), "")
    table.add_row("subjects", str(len({v.subject for v in store.videos})), "")
    table.add_row("frames", str(frames), "")
    table.add_row("faces found", str(found), share(found))
    for name in store.au_names:
        labeled = sum(v.labeled_frames.get(name, 0) for v in store.videos)
        table.add_row(f"labeled {name}", str(labeled), share(labeled))
    return table


def prepare_command(
    dataset: Annotated[Dataset, typer.Option("--dataset", help="Layout of --root.")],
    root: Annotated[Path, typer.Option("--root", help="The dataset folder, as distributed.")],
    out: Annotated[Path, typer.Option("--out", help="Clip store folder (created or resumed).")],
    crop_size: Annotated[
        int, typer.Option("--crop-size", help="Side S of the aligned crops, px.")
    ] = DEFAULT_CROP_SIZE,
    workers: Annotated[
        int, typer.Option("--workers", help="Videos processed in parallel.")
    ] = DEFAULT_WORKERS,
    max_faces: Annotated[
        int, typer.Option("--max-faces", help="Faces looked for per frame; the largest is kept.")
    ] = 1,
    split: Annotated[
        str, typer.Option("--split", help="train | test | all: subjects of synthetic data.")
    ] = ALL,
    alignment: Annotated[
        str, typer.Option("--alignment", help="How crops are made: rigid/2 (eye corners + "
                          "philtrum top, stabilised over the frames), rigid/1 (the same points, "
                          "unfiltered) or five-point/1 (legacy: irises, nose tip, mouth "
                          "corners).")
    ] = DEFAULT_ALIGNMENT,
) -> None:
    """Detect, align and store every frame of a dataset as a clip store for training."""
    config = config_from_options(PrepareConfig, locals(), dataset=dataset.value)
    prepare(config, Console())
