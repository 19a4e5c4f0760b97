"""Offline processing of one video with the stages overlapped: decode | landmarks | step.

Run: `summary = process_video("clip.mp4", backend, sinks)` (what `rtau process` does per video).

Three threads, so that both cores of a small machine are busy: a decode thread (FFmpeg through
OpenCV, `VideoFileSource.frames`) feeds a landmarks thread (MediaPipe FaceLandmarker), which
feeds the calling thread (tracking, alignment, the batched backend step, the sinks). Queues are
bounded, frames stay in file order and none is skipped. MediaPipe, FFmpeg and ONNX Runtime all
release the GIL while they compute. If the caller is interrupted (Ctrl-C) or a stage fails,
the other threads stop and the estimator is closed before the exception goes on; the sinks
belong to the caller, which closes them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rtau.backends import Backend
from rtau.capture import DEFAULT_PREFETCH, Frame, VideoFileSource
from rtau.estimator import AUEstimator, FaceEstimate
from rtau.sinks import SinkGroup
from rtau.timing import StageStats

STAGE_QUEUE = 4
"""Frames with landmarks waiting for the step stage."""
_DONE = object()


@dataclass(frozen=True)
class PipelineConfig:
    """Per-video options of the offline pipeline (the `rtau process` flags)."""

    max_faces: int = 1
    max_lost: int = 30
    """Frames a face may be missed and keep its id and state (1 s at 30 fps)."""
    calibrate_seconds: float = 0.0
    min_confidence: float = 0.5
    max_frames: int = 0
    """0 = every frame."""
    prefetch: int = DEFAULT_PREFETCH


@dataclass
class VideoSummary:
    """What one processed video gave: frames, frames with a face, distinct face ids, speed."""

    video: Path
    frames: int = 0
    frames_with_face: int = 0
    face_ids: set[int] = field(default_factory=set)
    seconds: float = 0.0
    interrupted: bool = False
    outputs: list[Path] = field(default_factory=list)

    @property
    def faces(self) -> int:
        return len(self.face_ids)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def process_video(video: str | os.PathLike, backend: Backend, sinks: SinkGroup,
                  cfg: PipelineConfig = PipelineConfig(), stats: StageStats | None = None,
                  on_frame: Callable[[Frame, list[FaceEstimate]], None] | None = None,
                  source: VideoFileSource | None = None) -> VideoSummary:
    """Every frame of `video` in order through the estimator; rows go to `sinks`.

    `source` may be an already opened VideoFileSource of `video` (it is closed here).
    `on_frame(frame, estimates)` is called after each frame (progress bars).
    """
    source = source or VideoFileSource(video)
    summary = VideoSummary(Path(video))
    stats = stats or StageStats()
    estimator = None
    stop = threading.Event()
    handoff: queue.Queue = queue.Queue(maxsize=STAGE_QUEUE)
    errors: list[BaseException] = []

    def landmarks_stage() -> None:
        try:
            for n, frame in enumerate(source.frames(cfg.prefetch, stop)):
                # The decoder's own time, not how long this thread waited for the frame.
                stats.add("decode", frame.decode_ms)
                t0 = time.perf_counter()
                faces = estimator.detect(frame.image, frame.timestamp_ms)
                ms = (time.perf_counter() - t0) * 1000.0
                if not _put(handoff, (frame, faces, ms), stop):
                    return
                if cfg.max_frames and n + 1 >= cfg.max_frames:
                    break
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)
        finally:
            _put(handoff, _DONE, stop)

    thread = threading.Thread(target=landmarks_stage, name="landmarks", daemon=True)
    t_start = time.perf_counter()
    try:
        estimator = AUEstimator(backend=backend, max_faces=cfg.max_faces, max_lost=cfg.max_lost,
                                calibrate_seconds=cfg.calibrate_seconds,
                                min_confidence=cfg.min_confidence)
        t_start = time.perf_counter()  # speed is measured without the model loading
        thread.start()
        while True:
            item = handoff.get()
            if item is _DONE:
                break
            frame, faces, landmarks_ms = item
            estimates = estimator.estimate(frame.image, faces, frame.timestamp_ms,
                                           {"landmarks": landmarks_ms})
            t0 = time.perf_counter()
            sinks.write(frame.index, frame.timestamp_ms, estimates)
            sinks.end_tracks(estimator.tracker.dropped)
            timings = dict(estimator.last_timings)
            timings["output"] = (time.perf_counter() - t0) * 1000.0
            stats.add_all(timings)
            summary.frames += 1
            if estimates:
                summary.frames_with_face += 1
                summary.face_ids.update(e.id for e in estimates)
            if on_frame is not None:
                on_frame(frame, estimates)
        if errors:
            raise errors[0]
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.seconds = time.perf_counter() - t_start
        stop.set()
        if thread.is_alive():
            thread.join()
        if estimator is not None:
            estimator.close()
        source.close()
    return summary
