"""The offline pipeline's stage timers: `decode` is the decoder's own time per frame, whether
frames are decoded ahead in a thread or inline."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.backends.onnxruntime import OnnxRuntimeBackend
from rtau.media import test_media as media_file
from rtau.pipeline import PipelineConfig, process_video
from rtau.sinks import SinkGroup
from rtau.timing import StageStats

FRAMES = 24


@pytest.mark.parametrize("prefetch", [0, 4])
def test_decode_stage_is_the_frames_own_decode_time(tiny_onnx, prefetch):
    decoded = []
    stats = StageStats()
    with OnnxRuntimeBackend(tiny_onnx, device="cpu") as backend:
        summary = process_video(media_file("single_face.mp4"), backend, SinkGroup(),
                                PipelineConfig(max_frames=FRAMES, prefetch=prefetch), stats,
                                on_frame=lambda frame, _: decoded.append(frame.decode_ms))
    assert summary.frames == FRAMES and len(decoded) == FRAMES
    p50, p99, n = stats.summary()["decode"]
    assert n == FRAMES
    assert p50 == pytest.approx(float(np.percentile(decoded, 50)))
    assert p99 == pytest.approx(float(np.percentile(decoded, 99)))
