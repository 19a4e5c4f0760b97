"""WebSocketSink with real websockets clients: every frame to every client, the viewer's files,
tokens and origins refused, and a stalled or vanished client that never holds up `write`."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from rtau.aus import DISFA_AUS
from rtau.errors import RtauError
from rtau.streams import WebSocketSink
from rtau.streams.schema import FRAME_SCHEMA
from tests.rtau.streams.clients import StalledClient, WsRecorder, estimate, wait_until

AUS = (*DISFA_AUS, "AU45")
PACE_S = 0.002


def values(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 5, len(AUS)).astype(np.float32)


def http_get(url: str, **headers) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_every_client_receives_every_frame():
    frames = 150
    # A queue as long as the run: this test is about delivery, the drops are tested below.
    with WebSocketSink(AUS, port=0, queue_size=frames) as sink:
        clients = [WsRecorder(sink.ws_url) for _ in range(3)]
        assert wait_until(lambda: sink.clients == 3)
        for i in range(frames):
            faces = [] if i % 10 == 9 else [estimate(2, values(i), AUS),
                                            estimate(5, values(10_000 + i), AUS, (0, 0, 9.96, 5))]
            sink.write(i, i * 33.3, faces)
            time.sleep(PACE_S)
    for client in clients:
        client.join()
        assert client.error is None or "1001" in str(client.error), client.error
        assert [m["frame"] for m in client.messages] == list(range(frames))
    first, empty = clients[0].messages[3], clients[1].messages[9]
    assert set(first) == {"schema", "frame", "timestamp_ms", "faces"}
    assert first["schema"] == FRAME_SCHEMA and first["timestamp_ms"] == 99.9
    assert [f["id"] for f in first["faces"]] == [2, 5]
    assert list(first["faces"][0]["aus"]) == list(AUS)
    np.testing.assert_allclose(list(first["faces"][0]["aus"].values()), values(3), atol=5e-5)
    assert first["faces"][1]["box"] == [0.0, 0.0, 10.0, 5.0]
    assert empty["faces"] == []
    counters = sink.counters()
    assert (counters.messages, counters.sent, counters.dropped) == (frames, 3 * frames, 0)
    assert counters.clients_seen == 3 and counters.clients == 0


def test_a_stalled_client_loses_its_oldest_frames_and_holds_up_nobody():
    frames, faces = 600, 6
    with WebSocketSink(AUS, port=0, queue_size=200) as sink:
        stalled = StalledClient(sink.port)
        healthy = WsRecorder(sink.ws_url)
        assert wait_until(lambda: sink.clients == 2)
        slowest = 0.0
        for i in range(frames):
            batch = [estimate(k, values(i * faces + k), AUS) for k in range(faces)]
            t0 = time.perf_counter()
            sink.write(i, i * 33.3, batch)
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(PACE_S)
        during = sink.counters()
    healthy.join()
    stalled.close()
    assert [m["frame"] for m in healthy.messages] == list(range(frames))
    # ~1.2 MB were offered to a client that read nothing: its socket and bounded queue filled,
    # then its oldest frames were dropped while the healthy client got every one.
    assert during.dropped > frames // 2, during
    done = sink.counters()
    assert done.sent + done.dropped == 2 * frames, done  # every message accounted for
    assert done.sent - frames < frames // 2
    # A write that waited for the stalled client would block until its keep-alive timeout.
    assert slowest < 1.0, f"one write took {slowest:.2f} s"


def test_a_vanished_client_is_forgotten():
    with WebSocketSink(AUS, port=0) as sink:
        gone = StalledClient(sink.port)
        assert wait_until(lambda: sink.clients == 1)
        gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        gone.close()  # a reset, no closing handshake
        for i in range(100):
            sink.write(i, i * 33.3, [estimate(1, values(i), AUS)])
            time.sleep(PACE_S)
        assert wait_until(lambda: sink.clients == 0)
    counters = sink.counters()
    assert counters.clients_seen == 1 and counters.sent + counters.dropped <= 100


def test_token_required_and_checked():
    with WebSocketSink(AUS, port=0, token="s3cret-token") as sink:
        for url in (sink.ws_url, sink.ws_url + "?token=wrong", sink.ws_url + "?token="):
            with pytest.raises(InvalidStatus) as info:
                connect(url, open_timeout=10)
            assert info.value.response.status_code == 401
        assert http_get(sink.url)[0] == 401
        assert http_get(sink.url + "?token=s3cret-token")[0] == 200
        with connect(sink.ws_url + "?token=s3cret-token", open_timeout=10) as ws:
            assert wait_until(lambda: sink.clients == 1)
            sink.write(4, 133.3, [])
            assert json.loads(ws.recv(timeout=10))["frame"] == 4
        assert sink.refused == 4


def test_non_loopback_needs_a_token():
    with pytest.raises(RtauError, match="--ws-token"):
        WebSocketSink(AUS, "0.0.0.0", 0)
    with WebSocketSink(AUS, "0.0.0.0", 0, token="t") as sink:
        assert http_get(f"http://127.0.0.1:{sink.port}/?token=t")[0] == 200


def test_other_sites_cannot_read_a_local_stream():
    with WebSocketSink(AUS, port=0) as sink:
        with pytest.raises(InvalidStatus) as info:
            connect(sink.ws_url, origin="http://evil.example", open_timeout=10)
        assert info.value.response.status_code == 403
        # DNS rebinding: the browser thinks it talks to evil.example, so Host says so.
        assert http_get(sink.url, Host=f"evil.example:{sink.port}")[0] == 403
        with connect(sink.ws_url, origin=f"http://localhost:{sink.port}", open_timeout=10):
            assert wait_until(lambda: sink.clients == 1)


def test_viewer_files_are_served_from_the_package():
    with WebSocketSink(AUS, port=0) as sink:
        status, kind, body = http_get(sink.url)
        assert status == 200 and kind.startswith("text/html")
        page = body.decode()
        assert "viewer.js" in page and "viewer.css" in page and "http" not in page.split(
            "<html")[1]  # no external resource
        assert http_get(sink.url + "viewer.js")[1].startswith("text/javascript")
        assert b"--bar-fill" in http_get(sink.url + "viewer.css")[2]
        aus = json.loads(http_get(sink.url + "aus.json")[2])["aus"]
        assert [a["name"] for a in aus] == list(AUS) and aus[6]["facs_name"] == "Lip corner puller"
        assert http_get(sink.url + "../etc/passwd")[0] == 404


def test_a_busy_port_is_one_clear_error():
    with WebSocketSink(AUS, port=0) as sink, pytest.raises(RtauError, match="cannot listen"):
        WebSocketSink(AUS, port=sink.port)


def test_write_after_close_and_double_close():
    sink = WebSocketSink(AUS, port=0)
    sink.close()
    sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink.write(0, 0.0, [])
