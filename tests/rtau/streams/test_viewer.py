"""The viewer page in headless Chromium while `rtau live` plays a real clip: the AU bars in the
screenshots have the lengths of the values sent over the WebSocket (measured in pixels)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from rtau.media import test_media as media_file
from tests.rtau.streams.browser import Chromium, find_chromium
from tests.rtau.streams.clients import WsRecorder, wait_until

MAX_INTENSITY = 5.0
PIXEL_SLACK = 1.5
"""A fill ends on a fractional pixel, drawn blended: count exact-colour pixels +- that edge."""


def css_colour(css: str, name: str) -> np.ndarray:
    hex_colour = re.search(rf"{name}:\s*#([0-9a-fA-F]{{6}})", css).group(1)
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (0, 2, 4))
    return np.array([b, g, r], np.uint8)


def viewer_style() -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Bar fill and track colours (BGR), track width (px), first trace colour, from the files."""
    folder = resources.files("rtau").joinpath("static")
    css = folder.joinpath("viewer.css").read_text()
    js = folder.joinpath("viewer.js").read_text()
    width = int(re.search(r"--track-width:\s*(\d+)px", css).group(1))
    trace = re.search(r'TRACE_COLOURS = \["#([0-9a-fA-F]{6})"', js).group(1)
    return (css_colour(css, "--bar-fill"), css_colour(css, "--bar-track"), width,
            css_colour(f"t: #{trace}", "t"))


def measured_bars(shot: np.ndarray, fill: np.ndarray, track: np.ndarray,
                  width: int) -> list[float]:
    """Fill length of each bar, top to bottom, as a fraction of its track (one face)."""
    is_fill = (shot == fill).all(axis=2)
    is_bar = is_fill | (shot == track).all(axis=2)
    rows = np.flatnonzero(is_bar.sum(axis=1) >= width // 2)
    if not len(rows):
        return []
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    fractions = []
    for band in bands:
        y = band[len(band) // 2]
        xs = np.flatnonzero(is_bar[y])
        extent = xs.max() + 1 - xs.min()
        assert abs(extent - width) <= 1, f"a bar track {extent} px wide, the CSS says {width}"
        fractions.append(is_fill[y, xs.min():xs.max() + 1].sum() / width)
    return fractions


def error_px(fractions: list[float], message: dict, au_names: list[str], width: int) -> float:
    """Largest gap in pixels between the drawn bars and one frame message's single face."""
    if len(message["faces"]) != 1 or len(fractions) != len(au_names):
        return float("inf")
    sent = np.array([message["faces"][0]["aus"][n] for n in au_names]) / MAX_INTENSITY
    return float(np.abs(np.asarray(fractions) - np.clip(sent, 0, 1)).max() * width)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_viewer_shows_the_bars_of_the_frames_sent(tmp_path):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium), "
                    "so the viewer cannot be rendered")
    fill, track, width, trace_colour = viewer_style()
    port = free_port()
    # The shipped model on the real clip, played at its frame rate; the run starts when both
    # the recorder and the page are connected, so both see every frame.
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtau.cli", "live", "--source", str(media_file("single_face.mp4")),
         "--headless", "--pace", "--ws", f"127.0.0.1:{port}", "--ws-wait", "2",
         "--backend", "onnxruntime"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    shots = []
    try:
        recorder = WsRecorder(f"ws://127.0.0.1:{port}/ws", connect_timeout=60)
        assert recorder.connected.wait(60), recorder.error
        with Chromium(f"http://127.0.0.1:{port}/") as browser:
            while proc.poll() is None:
                shots.append(browser.screenshot())
            recorder.join()
            last = recorder.messages[-1]["frame"]
            assert wait_until(lambda: browser.evaluate("document.body.dataset.frame")
                              == str(last)), "the page never showed the last frame"
            final = browser.screenshot()
            trace_box = json.loads(browser.evaluate(
                "JSON.stringify(document.getElementById('trace').getBoundingClientRect())"))
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    messages = recorder.messages
    assert [m["frame"] for m in messages] == list(range(72))
    au_names = list(messages[0]["faces"][0]["aus"])

    drawn = measured_bars(final, fill, track, width)
    gap = error_px(drawn, messages[-1], au_names, width)
    assert gap <= PIXEL_SLACK, f"final bars off by {gap:.1f} px: {drawn}"
    x, y, w, h = (int(trace_box[k]) for k in ("x", "y", "width", "height"))
    trace = final[y:y + h, x:x + w].astype(int)
    near_trace = (np.abs(trace - trace_colour).max(axis=2) <= 40).sum()
    assert near_trace > 100, "no trace line drawn"

    matched = set()
    for shot in shots:
        drawn = measured_bars(shot, fill, track, width)
        if not drawn:
            continue  # the page before the first frame
        errors = [error_px(drawn, m, au_names, width) for m in messages]
        best = int(np.argmin(errors))
        assert errors[best] <= PIXEL_SLACK, f"a screenshot matches no frame sent ({drawn})"
        matched.add(best)
    assert len(matched) >= 2, f"only {len(shots)} screenshots, frames {sorted(matched)}"
