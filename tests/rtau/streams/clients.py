"""Real consumers for the stream tests: an OSC UDP server (python-osc), a recording WebSocket
client (websockets), a stalled WebSocket client that never reads, and synthetic estimates."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import numpy as np
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from websockets.sync.client import connect

from rtau.estimator import FaceEstimate

STALLED_RECEIVE_BUFFER = 1024


def estimate(face_id: int, aus, au_names, box=(10.0, 20.0, 110.0, 140.0)) -> FaceEstimate:
    values = np.asarray(aus, np.float32)
    return FaceEstimate(id=face_id, box=box, landmarks=np.zeros((478, 3), np.float32),
                        aus=values, raw_aus=values, au_names=tuple(au_names), age=1,
                        calibration="off", crop=np.zeros((8, 8, 3), np.uint8))


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class OscRecorder:
    """python-osc's threading UDP server on a free loopback port, recording (address, args)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple]] = []
        self._lock = threading.Lock()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._record)
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, address: str, *args) -> None:
        with self._lock:
            self.messages.append((address, args))

    def of(self, address: str) -> list[tuple]:
        with self._lock:
            return [args for a, args in self.messages if a == address]

    def __enter__(self) -> OscRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class WsRecorder:
    """A websockets client in a thread that keeps every message until the server closes."""

    def __init__(self, url: str, connect_timeout: float = 30.0, **headers) -> None:
        self.url = url
        self.messages: list[dict] = []
        self.closed = threading.Event()
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self._timeout = connect_timeout
        self._headers = headers
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout
        try:
            while True:  # the server may not be listening yet (a CLI run still loading)
                try:
                    ws = connect(self.url, additional_headers=self._headers or None)
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            with ws:
                self.connected.set()
                for text in ws:
                    self.messages.append(json.loads(text))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.closed.set()

    def join(self, timeout: float = 30.0) -> None:
        assert self.closed.wait(timeout), "the server never closed the stream"


class StalledClient:
    """Completes the WebSocket handshake, then never reads (tiny receive buffer)."""

    def __init__(self, port: int, connect_timeout: float = 30.0) -> None:
        deadline = time.monotonic() + connect_timeout
        while True:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER)
            try:
                sock.connect(("127.0.0.1", port))
                break
            except ConnectionRefusedError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(1)  # just the handshake reply, never a frame
        assert reply.split(b"\r\n")[0].split()[1] == b"101", reply
        self.sock = sock

    def close(self) -> None:
        self.sock.close()
