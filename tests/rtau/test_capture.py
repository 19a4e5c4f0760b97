"""Frame sources on real video: files in order with nothing skipped, live sources newest-first
with reconnection, and one clear error per bad source."""

from __future__ import annotations

import threading
import time

import cv2
import pytest

from rtau.capture import (
    Backoff,
    LiveSource,
    SourceError,
    VideoFileSource,
    decode_frames,
    open_source,
    read_frame,
)
from rtau.media import test_media as media_file

SINGLE_FACE_FRAMES = 72


@pytest.fixture(scope="module")
def clip():
    return media_file("single_face.mp4")


def test_file_is_read_in_order_without_skipping(clip):
    with open_source(str(clip)) as source:
        assert isinstance(source, VideoFileSource) and not source.live
        assert source.size == (640, 360) and source.fps == pytest.approx(30.0)
        frames = list(source.frames(prefetch=3))
    assert [f.index for f in frames] == list(range(SINGLE_FACE_FRAMES))
    assert frames[30].timestamp_ms == pytest.approx(1000.0)
    # The prefetching thread must hand over exactly what a plain sequential decode gives.
    cap = cv2.VideoCapture(str(clip))
    for frame in frames:
        ok, image = cap.read()
        assert ok and (image == frame.image).all()
    assert not cap.read()[0]


def test_decode_frames_and_read_frame_give_the_sequential_decode(clip, tmp_path):
    frames = decode_frames(clip)
    assert len(frames) == SINGLE_FACE_FRAMES and frames[0].shape == (360, 640, 3)
    first = decode_frames(clip, limit=5)
    assert len(first) == 5 and all((a == b).all() for a, b in zip(first, frames[:5], strict=True))
    assert (read_frame(clip, 40) == frames[40]).all()
    with pytest.raises(SourceError, match=f"has no frame {SINGLE_FACE_FRAMES}"):
        read_frame(clip, SINGLE_FACE_FRAMES)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(SourceError, match="cannot be opened as a video"):
        decode_frames(text)


def test_prefetch_stops_early_when_asked(clip):
    stop = threading.Event()
    with VideoFileSource(clip) as source:
        seen = []
        for frame in source.frames(prefetch=2, stop=stop):
            seen.append(frame.index)
            if len(seen) == 5:
                stop.set()
        assert seen[:5] == [0, 1, 2, 3, 4] and len(seen) < SINGLE_FACE_FRAMES


@pytest.mark.parametrize("prefetch", [0, 3])
def test_a_file_cut_short_reports_its_shortfall(truncated_clip, prefetch):
    path, declared, decodable = truncated_clip
    with VideoFileSource(path) as source:
        assert source.frame_count == declared and source.shortfall() is None
        frames = list(source.frames(prefetch=prefetch))
        message = source.shortfall()
    assert [f.index for f in frames] == list(range(decodable))
    assert message is not None
    assert f"after {decodable} of the {declared} frames" in message and str(path) in message


def test_a_complete_file_has_no_shortfall(clip):
    with VideoFileSource(clip) as source:
        for n, _ in enumerate(source.frames(prefetch=0), start=1):
            if n == 10:
                assert source.shortfall() is None, "not at the end yet"
        assert source.ended and source.shortfall() is None


def test_decode_time_is_the_decoder_not_the_queue(clip):
    """A consumer slower than the decoder: frames wait in the prefetch queue, and that wait
    must not be counted as decoding."""
    consumer_ms = 20.0
    with VideoFileSource(clip) as source:
        decode_ms = []
        for frame in source.frames(prefetch=2):
            decode_ms.append(frame.decode_ms)
            time.sleep(consumer_ms / 1000.0)
            if len(decode_ms) == 20:
                break
    assert all(ms > 0 for ms in decode_ms)
    assert sorted(decode_ms)[len(decode_ms) // 2] < consumer_ms / 2, decode_ms


def _file_opener(path, calls, fail_after=None):
    def opener():
        calls.append(time.monotonic())
        if fail_after is not None and len(calls) > fail_after:
            return None
        cap = cv2.VideoCapture(str(path))
        return cap if cap.isOpened() else None

    return opener


def test_live_source_hands_over_newest_frame_and_drops_stale_ones(clip):
    calls = []
    # The file decodes much faster than this consumer reads: a camera outpacing processing.
    with LiveSource(_file_opener(clip, calls, fail_after=1), "fake camera",
                    Backoff(first_s=0.01, attempts=1)) as source:
        got = []
        while (frame := source.read(timeout=2.0)) is not None:
            got.append(frame.index)
            time.sleep(0.03)
        assert source.gave_up
    assert got == sorted(set(got)), "a frame was handed over twice or out of order"
    assert len(got) < SINGLE_FACE_FRAMES and source.dropped > 0
    assert got[-1] == SINGLE_FACE_FRAMES - 1, "the newest frame must be the last one handed over"


def test_live_source_reconnects_with_backoff_and_reports(clip):
    calls, messages = [], []
    backoff = Backoff(first_s=0.05, max_s=0.2, attempts=4)
    with LiveSource(_file_opener(clip, calls, fail_after=2), "flaky camera", backoff,
                    on_status=messages.append) as source:
        frames = 0
        while source.read(timeout=3.0) is not None:
            frames += 1
        assert source.gave_up and source.reconnects == 1
    # First open, one successful reopen after the stream ended, then 4 failed attempts.
    assert len(calls) == 2 + 4
    gaps = [b - a for a, b in zip(calls[2:], calls[3:], strict=False)]
    assert all(g2 >= g1 * 0.9 for g1, g2 in zip(gaps, gaps[1:], strict=False)), gaps
    assert any("reconnected" in m for m in messages)
    assert messages[-1] == "flaky camera gave up reconnecting"
    assert frames >= 2


class GatedCapture:
    """A real `cv2.VideoCapture` of a file whose `read` blocks while `gate` is clear, as a stalled
    stream's does; it records every `release` and whether a read was running at that moment.
    (It wraps the capture: OpenCV's classes are not safe to subclass with Python attributes.)"""

    def __init__(self, path) -> None:
        self.cap = cv2.VideoCapture(str(path))
        self.gate = threading.Event()
        self.gate.set()
        self.in_read = threading.Event()
        self.releases: list[bool] = []

    def read(self):
        self.in_read.set()
        try:
            self.gate.wait()
            return self.cap.read()
        finally:
            self.in_read.clear()

    def get(self, prop: int) -> float:
        return self.cap.get(prop)

    def release(self) -> None:
        self.releases.append(self.in_read.is_set())
        self.cap.release()


def test_close_never_releases_under_a_blocked_read(clip, monkeypatch):
    import rtau.capture

    monkeypatch.setattr(rtau.capture, "CLOSE_WAIT_S", 0.2, raising=False)
    cap = GatedCapture(clip)
    source = LiveSource(lambda: cap, "stalling stream", Backoff(attempts=0))
    assert source.read(timeout=5.0) is not None
    cap.gate.clear()
    deadline = time.monotonic() + 5.0
    while not (cap.in_read.is_set() and not cap.gate.is_set()) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # the reader thread is now waiting inside read()
    t0 = time.monotonic()
    source.close()
    assert time.monotonic() - t0 < 1.0, "close waits CLOSE_WAIT_S at most"
    assert cap.releases == [], "released while a read was still running"
    assert source.read(timeout=0.1) is None
    cap.gate.set()  # the stalled read returns: the reader thread releases the capture
    source._thread.join(timeout=5.0)
    assert not source._thread.is_alive()
    assert cap.releases == [False], cap.releases
    source.close()  # idempotent
    assert cap.releases == [False]


def test_every_capture_is_released_once_across_reconnects_and_close(clip):
    opened: list[GatedCapture] = []
    opening = threading.Event()

    def opener():
        if opened:  # a reconnection: slow enough for close() to arrive in the middle
            opening.set()
            time.sleep(0.3)
        opened.append(GatedCapture(clip))
        return opened[-1]

    with LiveSource(opener, "flaky stream", Backoff(first_s=0.01, max_s=0.01)) as source:
        while source.read(timeout=5.0) is not None and not opening.is_set():
            pass  # the file ends, the source reconnects
        assert opening.wait(5.0)
    source._thread.join(timeout=5.0)
    assert not source._thread.is_alive() and len(opened) == 2
    assert [cap.releases for cap in opened] == [[False], [False]]


def test_backoff_doubles_and_caps():
    assert list(Backoff(first_s=0.5, max_s=2.0, attempts=5).delays()) == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_missing_camera_is_one_clear_error():
    with pytest.raises(SourceError, match="no camera at index 9"):
        open_source("9")


def test_missing_file_and_non_video_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="video file not found: .*nope.mp4"):
        open_source(str(tmp_path / "nope.mp4"))
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(SourceError, match=r"notes.mp4 is not a readable video"):
        open_source(str(text))


def test_unreachable_stream_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot open the stream rtsp://127.0.0.1:9/"):
        open_source("rtsp://127.0.0.1:9/none")
