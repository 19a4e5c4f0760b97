"""`rtau live --osc --ws` on a real clip, with real consumers: a python-osc server gets every
frame's /rtau/au with the right types, a websockets client gets every frame with the values of
the JSONL, and a client that never reads does not slow the run."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from rtau.cli import app
from rtau.media import test_media as media_file
from tests.rtau.streams.clients import OscRecorder, StalledClient, WsRecorder, wait_until

CLIP_FRAMES = 72


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live(tiny_onnx, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rtau.cli", "live", "--source", str(media_file("single_face.mp4")),
         "--headless", "--model", str(tiny_onnx), "--backend", "onnxruntime", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return out, err


def test_osc_and_websocket_carry_every_frame(tiny_onnx, tmp_path):
    port, table = free_port(), tmp_path / "live.jsonl"
    with OscRecorder() as osc:
        proc = live(tiny_onnx, "--osc", f"127.0.0.1:{osc.port}", "--ws", f"127.0.0.1:{port}",
                    "--ws-wait", 1, "--jsonl", table, "--stats")
        ws = WsRecorder(f"ws://127.0.0.1:{port}/ws", connect_timeout=60)
        out, err = finish(proc)
        ws.join()
        assert wait_until(lambda: len(osc.of("/rtau/lost")) == 1), osc.messages[-3:]
        rows = [json.loads(line) for line in table.read_text().splitlines()]
        assert [r["frame"] for r in rows] == list(range(CLIP_FRAMES))
        au_names = list(rows[0]["aus"])

        assert osc.messages[0] == ("/rtau/names", tuple(au_names))
        au = osc.of("/rtau/au")
        assert [a[1] for a in au] == list(range(CLIP_FRAMES))
        for args, row in zip(au, rows, strict=True):
            assert len(args) == 3 + len(au_names)
            assert [type(a) for a in args] == [int, int, float] + [float] * len(au_names)
            assert args[0] == row["face_id"]
            assert args[2] == pytest.approx(row["timestamp_ms"], abs=0.05)
            np.testing.assert_allclose(args[3:], list(row["aus"].values()), atol=6e-5)
        assert osc.of("/rtau/lost") == [(rows[0]["face_id"],)]  # the track ends with the clip

    assert ws.error is None or "1001" in str(ws.error), ws.error
    assert [m["frame"] for m in ws.messages] == list(range(CLIP_FRAMES))
    for message, row in zip(ws.messages, rows, strict=True):
        assert message["schema"] == "rtau.frame/1"
        face, = message["faces"]
        assert (face["id"], face["box"], face["aus"]) == (row["face_id"], row["box"], row["aus"])
    # 72 frames, lost, and the names: at the start and again every NAMES_INTERVAL_S, so a slow
    # (loaded) machine sends them more than once
    names = len(osc.of("/rtau/names"))
    assert names >= 1
    assert f"osc: {CLIP_FRAMES + 1 + names} sent, 0 dropped" in err
    assert f"ws: 1 client(s), {CLIP_FRAMES} sent, 0 dropped" in err
    assert f"viewer at http://127.0.0.1:{port}/" in err
    assert "streams" in out and "dropped" in out  # the --stats table


def run_seconds(err: str) -> float:
    frames, fps = re.search(r"(\d+) frames .*?, ([\d.]+) fps", err).groups()
    return int(frames) / float(fps)


def test_a_stalled_client_does_not_slow_the_run(tiny_onnx):
    """The same run with one reading client, then with a second one that never reads."""
    seconds = []
    for stalled_clients in (0, 1):
        port = free_port()
        proc = live(tiny_onnx, "--ws", f"127.0.0.1:{port}", "--ws-wait", 1 + stalled_clients)
        healthy = WsRecorder(f"ws://127.0.0.1:{port}/ws", connect_timeout=60)
        assert healthy.connected.wait(60), healthy.error
        stalled = [StalledClient(port) for _ in range(stalled_clients)]
        _, err = finish(proc)
        healthy.join()
        for client in stalled:
            client.close()
        assert [m["frame"] for m in healthy.messages] == list(range(CLIP_FRAMES))
        sent, dropped = map(int, re.search(r"ws: \d+ client\(s\), (\d+) sent, (\d+) dropped",
                                           err).groups())
        # Every frame was offered to every client: delivered or counted as dropped.
        assert sent + dropped == CLIP_FRAMES * (1 + stalled_clients), err
        seconds.append(run_seconds(err))
    alone, with_stalled = seconds
    print(f"72-frame run: {alone:.2f} s alone, {with_stalled:.2f} s with a stalled client")
    # Generous: the runs share a loaded machine. A write that waited on the stalled client
    # would hold the run until its keep-alive timeout (~40 s).
    assert with_stalled < 2 * alone + 2.0, seconds


def test_stream_flag_errors_are_one_line_before_the_model_loads(tiny_onnx):
    for args, words in ((["--ws", "0.0.0.0:8765"], "--ws-token"),
                        (["--osc", "localhost:notaport"], "numeric port"),
                        (["--ws-wait", "1"], "--ws-wait needs --ws")):
        result = CliRunner().invoke(app, ["live", "--source", str(media_file("single_face.mp4")),
                                          "--headless", "--model", str(tiny_onnx), *args])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
