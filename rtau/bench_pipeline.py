"""The whole pipeline, timed per stage on a real video: what `rtau bench --source VIDEO` runs.

Run: `stages = pipeline_stages("clip.mp4", backend, loops=3)` -> a JSON-ready dict.
Three passes, each through rtau's own code and its own stage timers (`rtau.timing`):

1. **Breakdown**: `rtau.pipeline.process_video` (the `rtau process` pipeline) with decoding
   done in the landmarks thread, so no stage competes with a decode thread for the cores;
   `decode` is the decoder's own time per frame (`Frame.decode_ms`), `landmarks`, `align` and
   `step` come from the estimator. `landmarks` is the whole face stage of a frame (full-range
   detection when due + landmarks of every face).
1b. **Face stage split**: `rtau.faces.FaceDetector` alone over the clip, as the estimator
   runs it: `face detect` (the full-range passes, on the frames that run them) and
   `landmarks / face` (one crop through FaceLandmarker).
2. **Throughput**: the same pipeline as `rtau process` runs it (decoding ahead in its own
   thread): frames per second over the whole clip, nothing skipped.
3. **Live**: the clip played like a 30 fps camera (each frame handed over at its due time)
   through the real capture thread (`rtau.capture.LiveSource`, which keeps only the newest
   frame), `AUEstimator.update` and `rtau.render.draw_overlay`, as `rtau live` does per frame.
   Capture-to-estimate latency is the time from a frame's capture to its AU estimates
   (`Frame.captured_at` to the end of `update`), also in frame periods; `render` is the
   overlay drawing (the window's own `imshow` is not included).

`loops` plays the clip that many times in every pass, for more samples. Milliseconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2

from rtau.backends import Backend
from rtau.capture import Backoff, LiveSource, VideoFileSource
from rtau.timing import RateMeter, StageStats

BREAKDOWN_STAGES = ("decode", "landmarks", "align", "step")
FACE_STAGES = ("face detect", "landmarks / face")
LIVE_STAGES = ("render",)
LIVE_READ_TIMEOUT_S = 1.0
NO_RECONNECT = Backoff(first_s=0.0, max_s=0.0, attempts=0)
"""The played clip ends like an unplugged camera: the capture thread gives up at once."""


class PacedFileCapture:
    """A video file that behaves like a camera for `LiveSource`: `read()` returns the next
    frame no earlier than its due time (`start + n / fps`), blocking like a camera driver, and
    the clip restarts at its end until it has played `loops` times. Duck-types the
    `cv2.VideoCapture` methods `LiveSource` uses (read, get, release)."""

    def __init__(self, path: str | os.PathLike, loops: int = 1) -> None:
        self.path = Path(path)
        self._loops_left = loops
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0
        self._t0: float | None = None
        self._n = 0

    def read(self) -> tuple[bool, object]:
        if self._cap is None:
            return False, None
        ok, image = self._cap.read()
        if not ok:
            self._loops_left -= 1
            if self._loops_left <= 0:
                return False, None
            self._cap.release()
            self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            ok, image = self._cap.read()
            if not ok:
                return False, None
        now = time.perf_counter()
        self._t0 = now if self._t0 is None else self._t0
        due = self._t0 + self._n / self.fps
        self._n += 1
        if due > now:
            time.sleep(due - now)
        return True, image

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        return self._cap.get(prop) if self._cap is not None else 0.0

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._cap is not None

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _stage_json(summary: dict, stages, measured_in: str) -> dict:
    return {stage: {"p50_ms": summary[stage][0], "p99_ms": summary[stage][1],
                    "samples": summary[stage][2], "measured_in": measured_in}
            for stage in stages if stage in summary}


def _process_passes(path: Path, backend: Backend, loops: int, max_faces: int
                    ) -> tuple[dict, dict]:
    from rtau.pipeline import PipelineConfig, process_video
    from rtau.sinks import SinkGroup

    stats = StageStats()
    breakdown = PipelineConfig(max_faces=max_faces, prefetch=0)
    for _ in range(loops):
        process_video(path, backend, SinkGroup(), breakdown, stats)
    frames = seconds = with_face = 0.0
    for _ in range(loops):
        summary = process_video(path, backend, SinkGroup(), PipelineConfig(max_faces=max_faces))
        frames += summary.frames
        seconds += summary.seconds
        with_face += summary.frames_with_face
    throughput = {"frames": int(frames), "frames_with_face": int(with_face),
                  "seconds": seconds, "fps": frames / seconds if seconds > 0 else 0.0,
                  "what": "rtau process pipeline (decode | landmarks | step threads), "
                          "every frame, no output file"}
    return _stage_json(stats.summary(), BREAKDOWN_STAGES, "process"), throughput


def face_stage_timings(path: str | os.PathLike, loops: int = 1, max_faces: int = 1) -> dict:
    """Per-stage JSON of the face stage alone over the clip `path` (pass 1b of the module
    docstring): `face detect` on frames that run it, `landmarks / face` on frames with faces."""
    from rtau.faces import FaceDetector

    stats = StageStats()
    with FaceDetector(max_faces=max_faces, video=True, blendshapes=False) as detector:
        for _ in range(loops):
            with VideoFileSource(path) as source:
                for frame in source.frames(0):
                    detector.detect(frame.image)
                    t = detector.last_timings
                    if "detect" in t:
                        stats.add("face detect", t["detect"])
                    if t.get("faces"):
                        stats.add("landmarks / face", t["landmarks"] / t["faces"])
    return _stage_json(stats.summary(), FACE_STAGES, "faces")


def _live_pass(path: Path, backend: Backend, loops: int, max_faces: int) -> tuple[dict, dict]:
    from rtau.estimator import AUEstimator
    from rtau.render import draw_overlay

    stats = StageStats()
    capture = PacedFileCapture(path, loops)
    handed_out = []

    def opener():
        if handed_out:  # the clip has ended: no reconnection
            return None
        handed_out.append(capture)
        return capture

    with AUEstimator(backend=backend, max_faces=max_faces) as estimator:
        # The first update builds MediaPipe's graph; keep that out of the latency.
        with VideoFileSource(path) as first:
            estimator.update(first.read().image)
        estimator.reset()
        au_names = estimator.au_names
        meter = RateMeter()
        frames = 0
        source = LiveSource(opener, f"{path.name} played at {capture.fps:g} fps", NO_RECONNECT)
        try:
            while True:
                frame = source.read(timeout=LIVE_READ_TIMEOUT_S)
                if frame is None:
                    if source.gave_up or not capture.isOpened():
                        break
                    continue
                estimates = estimator.update(frame.image, frame.timestamp_ms)
                t1 = time.perf_counter()
                timings = dict(estimator.last_timings)
                timings["latency"] = (t1 - frame.captured_at) * 1000.0
                draw_overlay(frame.image, estimates, au_names, meter.tick(), stats.last)
                timings["render"] = (time.perf_counter() - t1) * 1000.0
                stats.add_all(timings)
                frames += 1
        finally:
            source.close()
    summary = stats.summary()
    period_ms = 1000.0 / capture.fps
    latency = {}
    if "latency" in summary:
        p50, p99, n = summary["latency"]
        latency = {"p50_ms": p50, "p99_ms": p99, "samples": n, "frame_period_ms": period_ms,
                   "p50_frame_periods": p50 / period_ms, "p99_frame_periods": p99 / period_ms,
                   "frames_estimated": frames, "frames_dropped": source.dropped,
                   "what": "capture thread (newest frame) -> landmarks -> align -> step, "
                           f"clip played at {capture.fps:g} fps like a camera"}
    return _stage_json(summary, LIVE_STAGES, "live"), latency


def pipeline_stages(video: str | os.PathLike, backend: Backend, loops: int = 1,
                    max_faces: int = 1) -> dict:
    """Per-stage p50/p99, `rtau process` throughput and live capture-to-estimate latency of
    `video` through `backend` (see the module docstring). Raises SourceError for a video that
    cannot be read, before anything is timed."""
    path = Path(video)
    with VideoFileSource(path) as probe:
        source = {"path": path.name, "frames": probe.frame_count, "width": probe.size[0],
                  "height": probe.size[1], "fps": probe.fps, "loops": loops}
    per_stage, throughput = _process_passes(path, backend, loops, max_faces)
    per_stage.update(face_stage_timings(path, loops, max_faces))
    live_stage, latency = _live_pass(path, backend, loops, max_faces)
    per_stage.update(live_stage)
    return {"source": source, "backend": backend.describe(), "per_stage": per_stage,
            "process": throughput, "capture_to_estimate": latency}
