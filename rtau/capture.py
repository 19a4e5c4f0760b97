"""Frame sources: a camera index, a video file or a stream URL, as a stream of `Frame`s.

Run: `with open_source("0") as src: frame = src.read()` (or "clip.mp4", "rtsp://...").

Two behaviours, on purpose:
- **Files** (`VideoFileSource`) are read in order and no frame is ever skipped; `frames()` can
  decode in a background thread (bounded queue) so decoding overlaps the rest of the pipeline.
  Timestamps are video time: `index * 1000 / fps` ms. A file that stops decoding before the
  frame count its container declares (truncated, damaged) ends there, and `shortfall()` says
  so in one line naming both numbers, for the commands to report.
- **Live sources** (`LiveSource`: cameras and stream URLs) are read by their own thread, which
  keeps only the newest frame: when processing is slower than the camera, stale frames are
  dropped instead of queueing up lag. A source that stops delivering (unplugged camera, broken
  stream) is reopened with exponential back-off and the outage is reported through `status`
  and the `on_status` callback, not raised. Timestamps are wall time since the source opened.

Images are BGR uint8[H, W, 3], as OpenCV decodes them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rtau.closing import Closing
from rtau.errors import RtauError

STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
STREAM_OPEN_TIMEOUT_MS = 5000
STREAM_READ_TIMEOUT_MS = 5000
DEFAULT_PREFETCH = 8
"""Decoded frames a file's decode thread may run ahead (640x360 BGR: ~0.7 MB each)."""
FALLBACK_FPS = 30.0
"""Used when a container does not report its frame rate."""
CLOSE_WAIT_S = 2.0
"""How long `LiveSource.close` waits for the reader thread (a stalled stream's read can block
until FFmpeg's own read time-out); the thread releases the capture itself when its read ends."""


class SourceError(RtauError):
    """A source that cannot be opened or read; the message names it."""


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    index: 0-based position in the source (files: in the file; live: frames delivered by the
      device, so gaps show frames dropped because processing was slower).
    timestamp_ms: video time for files, wall time since opening for live sources.
    image: BGR uint8[H, W, 3].
    captured_at: `time.perf_counter()` when the frame was decoded, for latency measurements.
    decode_ms: milliseconds the decoder spent on this frame (files; 0 for live sources), not
      counting any time the frame then waited in a prefetch queue.
    """

    index: int
    timestamp_ms: float
    image: np.ndarray
    captured_at: float
    decode_ms: float = 0.0


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: first, doubled per failure, capped; `attempts` None = forever."""

    first_s: float = 0.5
    max_s: float = 8.0
    attempts: int | None = None

    def delays(self) -> Iterator[float]:
        delay, n = self.first_s, 0
        while self.attempts is None or n < self.attempts:
            yield delay
            delay = min(delay * 2.0, self.max_s)
            n += 1


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log while probing devices (it prints one line per failed backend)."""
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def is_stream_url(source: str) -> bool:
    return source.lower().startswith(STREAM_SCHEMES)


def _camera_index(source: str | int) -> int | None:
    if isinstance(source, int):
        return source
    text = source.strip()
    return int(text) if text.isdigit() else None


class _Source(Closing):
    """What both kinds of source share: `with source:` closes it."""

    def close(self) -> None:
        raise NotImplementedError



class VideoFileSource(_Source):
    """A video file read frame by frame, in order, nothing skipped.

    `read()` returns the next Frame or None at the end; `frames(prefetch)` iterates, decoding in
    a background thread when prefetch > 0. Raises SourceError if the file is missing or does not
    decode (checked on open by decoding the first frame).
    """

    live = False

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"video file not found: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a file")
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise SourceError(f"{self.path} is not a readable video (FFmpeg cannot open it)")
        t0 = time.perf_counter()
        ok, first = cap.read()
        self._pending_ms = (time.perf_counter() - t0) * 1000.0
        if not ok or first is None:
            cap.release()
            raise SourceError(f"{self.path} is not a readable video (no frame could be decoded)")
        self._cap = cap
        self._pending: np.ndarray | None = first
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else FALLBACK_FPS
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = count if count > 0 else None
        """Frames the container declares (None when it does not say)."""
        self.size = (first.shape[1], first.shape[0])
        self.ended = False
        """True once a read failed: the end of the file, or where it stopped decoding."""
        self._next_index = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def frames_read(self) -> int:
        """Frames handed out by `read` so far."""
        return self._next_index

    def shortfall(self) -> str | None:
        """One line when decoding ended before the frame count the container declares, else
        None (also while the file has not been read to its end)."""
        if not self.ended or self.frame_count is None or self._next_index >= self.frame_count:
            return None
        return (f"{self.path} stopped decoding after {self._next_index} of the "
                f"{self.frame_count} frames its container declares (a truncated or damaged "
                "file?)")

    def read(self) -> Frame | None:
        """The next frame in file order, or None after the last one."""
        with self._lock:
            if self._cap is None:
                return None
            if self._pending is not None:
                image, self._pending = self._pending, None
                decode_ms = self._pending_ms
            else:
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                decode_ms = (time.perf_counter() - t0) * 1000.0
                if not ok or image is None:
                    self.ended = True
                    return None
            index = self._next_index
            self._next_index += 1
        return Frame(index, index * 1000.0 / self.fps, image, time.perf_counter(), decode_ms)

    def frames(self, prefetch: int = DEFAULT_PREFETCH,
               stop: threading.Event | None = None) -> Iterator[Frame]:
        """All remaining frames in order; with prefetch > 0 a thread decodes ahead.

        Setting `stop` (or closing the generator) ends the decode thread early; the generator
        never sets `stop` itself.
        """
        if prefetch <= 0:
            while (frame := self.read()) is not None:
                yield frame
            return
        external = stop or threading.Event()
        finished = threading.Event()
        buffer: queue.Queue[Frame | None] = queue.Queue(maxsize=prefetch)

        def stopped() -> bool:
            return finished.is_set() or external.is_set()

        def decode() -> None:
            try:
                while not stopped():
                    frame = self.read()
                    while not stopped():
                        try:
                            buffer.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if frame is None:
                        return
            finally:
                with contextlib.suppress(queue.Full):
                    buffer.put_nowait(None)

        thread = threading.Thread(target=decode, name=f"decode:{self.path.name}", daemon=True)
        thread.start()
        try:
            while not external.is_set():
                try:
                    frame = buffer.get(timeout=0.1)
                except queue.Empty:
                    if not thread.is_alive() and buffer.empty():
                        return
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            finished.set()  # the caller's event is left alone: it may be shared
            thread.join(timeout=2.0)

    def close(self) -> None:
        """Release the decoder (after a `read` in progress). Idempotent."""
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class LiveSource(_Source):
    """A camera or stream read by a background thread that keeps only the newest frame.

    opener: returns an opened `cv2.VideoCapture` or None if the device cannot be opened now.
    name: how the source is named in messages ("camera 0", the URL).
    backoff: reconnection policy once the source stops delivering.
    on_status: called (from the reader thread) with a one-line message on loss / reconnection.

    `read(timeout)` blocks until a frame newer than the last one returned is available and
    returns it (None on timeout or once the source is closed or gave up); `dropped` counts the
    frames that were never handed over because a newer one replaced them.
    """

    live = True

    def __init__(self, opener: Callable[[], cv2.VideoCapture | None], name: str,
                 backoff: Backoff = Backoff(),
                 on_status: Callable[[str], None] | None = None) -> None:
        self.name = name
        self._opener = opener
        self._backoff = backoff
        self._on_status = on_status
        cap = opener()
        if cap is None:
            raise SourceError(f"cannot open {name}")
        self._cap: cv2.VideoCapture | None = cap
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or FALLBACK_FPS
        self.status = "open"
        self.dropped = 0
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._delivered = -1
        self._seq = -1
        self._closed = threading.Event()
        self._gave_up = False
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"capture:{name}", daemon=True)
        self._thread.start()

    @property
    def gave_up(self) -> bool:
        return self._gave_up

    def _report(self, message: str) -> None:
        self.status = message
        if self._on_status is not None:
            self._on_status(message)

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                cap = self._cap
                ok, image = cap.read() if cap is not None else (False, None)
                if ok and image is not None:
                    now = time.perf_counter()
                    with self._cond:
                        self._seq += 1
                        self._latest = Frame(self._seq, (now - self._t0) * 1000.0, image, now)
                        self._cond.notify_all()
                    continue
                if self._closed.is_set():
                    break
                if not self._reconnect():
                    self._gave_up = True
                    with self._cond:
                        self._cond.notify_all()
                    return
        finally:
            self._release()

    def _release(self) -> None:
        """Release the capture. Only the reader thread calls this, never while it is in a read,
        so a capture is released exactly once and never under a running `read()`."""
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def _reconnect(self) -> bool:
        self._release()
        self._report(f"{self.name} stopped delivering frames; reconnecting")
        for attempt, delay in enumerate(self._backoff.delays(), start=1):
            if self._closed.wait(delay):
                return False
            cap = self._opener()
            if cap is not None:
                self._cap = cap
                if self._closed.is_set():  # closed while opening: released in _run's finally
                    return False
                self.reconnects += 1
                self._report(f"{self.name} reconnected after {attempt} attempt(s)")
                return True
            self._report(f"{self.name} still unavailable (attempt {attempt}, next in "
                         f"{min(delay * 2.0, self._backoff.max_s):.1f} s)")
        self._report(f"{self.name} gave up reconnecting")
        return False

    def read(self, timeout: float | None = 5.0) -> Frame | None:
        """The newest frame not yet returned; None on timeout, on close, or after giving up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._seq <= self._delivered or self._closed.is_set():
                if self._closed.is_set() or self._gave_up:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is None else min(remaining, 0.5))
            frame = self._latest
            self.dropped += self._seq - self._delivered - 1
            self._delivered = self._seq
        return frame

    def close(self) -> None:
        """Stop the reader thread; it releases the capture once its current read returns.

        Waits up to CLOSE_WAIT_S for it. A read that blocks longer (a stalled stream) is left
        to finish on its own: releasing the capture under it would free what FFmpeg is using.
        Idempotent.
        """
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=CLOSE_WAIT_S)


def camera_opener(index: int, width: int | None = None,
                  height: int | None = None) -> Callable[[], cv2.VideoCapture | None]:
    """Opener for camera `index` (OpenCV's default backend), None when it is not there."""

    def open_camera() -> cv2.VideoCapture | None:
        with _quiet_opencv():
            cap = cv2.VideoCapture(index)
            if not cap.isOpened():
                cap.release()
                return None
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            # The driver's queue would otherwise hold several stale frames.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_camera


def stream_opener(url: str) -> Callable[[], cv2.VideoCapture | None]:
    """Opener for a network stream through FFmpeg, with open/read time-outs."""

    def open_stream() -> cv2.VideoCapture | None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS]
        with _quiet_opencv():
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    return open_stream


def open_source(source: str | int, backoff: Backoff = Backoff(),
                on_status: Callable[[str], None] | None = None,
                width: int | None = None, height: int | None = None,
                ) -> VideoFileSource | LiveSource:
    """Open a camera index (int or digits), a stream URL, or a video file path."""
    index = _camera_index(source)
    if index is not None and not Path(str(source)).exists():
        try:
            return LiveSource(camera_opener(index, width, height), f"camera {index}", backoff,
                              on_status)
        except SourceError:
            raise SourceError(
                f"no camera at index {index} (OpenCV could not open it); pass --source with a "
                "video file or stream URL, or try --demo"
            ) from None
    text = str(source)
    if is_stream_url(text):
        try:
            return LiveSource(stream_opener(text), text, backoff, on_status)
        except SourceError:
            raise SourceError(f"cannot open the stream {text} (FFmpeg could not connect "
                              f"within {STREAM_OPEN_TIMEOUT_MS / 1000:.0f} s)") from None
    return VideoFileSource(text)


def decode_frames(path: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """The frames of a video file in order (BGR uint8[H, W, 3]), the first `limit` of them when
    given, decoded one by one from the start (no seeking: exact on every container). For tools
    and tests that want a whole clip in memory; the pipeline reads through `open_source`."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"{path}: cannot be opened as a video")
        frames: list[np.ndarray] = []
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        return frames
    finally:
        cap.release()


def read_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame `index` (0-based) of a video file, BGR uint8[H, W, 3]; SourceError if it has none."""
    frames = decode_frames(path, index + 1)
    if len(frames) <= index:
        raise SourceError(f"{path}: has no frame {index}")
    return frames[index]
