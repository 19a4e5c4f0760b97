"""A WebSocket server in its own thread: one `rtau.frame/1` JSON message per frame to every
client at ws://HOST:PORT/ws, and the offline viewer page at http://HOST:PORT/ (websockets).

Run: `with WebSocketSink(au_names, "127.0.0.1", 8765) as ws: ws.write(frame, ts_ms, faces)`,
then open http://127.0.0.1:8765/ in a browser; or read the stream with any WebSocket client
(message format: `rtau.streams.schema`).

Why it never slows the pipeline: `write` only serialises the frame once and hands the text to
the server's event loop (`call_soon_threadsafe`); each client has its own bounded queue of
`queue_size` messages and its own sender task, and when a client does not keep up its oldest
messages are dropped (and counted). A vanished client ends its connection; one that stops
reading fills its queue and is closed by the keep-alive ping after ~40 s.

Safety: a non-loopback address needs a token; with a token every request (page, /ws, aus.json)
must carry `?token=TOKEN` (401 otherwise). Without one, the server also refuses (403) requests
whose Host is not a loopback name and browser connections whose Origin is not this server, so
a web page in a local browser cannot read the stream (cross-site or by DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rtau.aus import CATALOGUE
from rtau.closing import Closing
from rtau.errors import RtauError
from rtau.records import EstimateLike
from rtau.streams.address import LOOPBACK_HOST, StreamAddress, check_server_address
from rtau.streams.schema import StreamCounters, frame_message

WS_PATH = "/ws"
DEFAULT_PORT = 8765
DEFAULT_CLIENT_QUEUE = 64
"""Messages waiting per client (about 2 s at 30 fps) before the oldest is dropped."""
WRITE_LIMIT = 8 * 1024
"""Bytes buffered in one connection before its sender waits: small, so that a slow client's
backlog sits in its bounded queue (where stale frames are dropped), not in the socket."""
SOCKET_SEND_BUFFER = 16 * 1024
"""SO_SNDBUF of each connection (Linux doubles it). Left alone, Linux grows a stalled
connection's send buffer to ~4 MB (measured: 1.1 MB of frames queued in the kernel for a
client that never read), minutes of stale frames; fixed, the backlog stays bounded."""
MAX_INCOMING = 64 * 1024
FLUSH_GRACE_S = 1.0
"""On close, how long clients get to receive what is queued for them."""
CLOSE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 10.0
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
    "/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
}
LOOPBACK_NETLOCS = ("127.0.0.1", "localhost", "[::1]")
LOGGER = logging.getLogger(__name__)
LOGGER.addHandler(logging.NullHandler())  # handshake noise (port scans, plain GET /ws) stays quiet


def _static_files(au_names: Sequence[str]) -> dict[str, tuple[bytes, str]]:
    """path -> (body, content type): the viewer's files from the package, and /aus.json."""
    folder = resources.files("rtau").joinpath("static")
    files = {path: (folder.joinpath(name).read_bytes(), ctype)
             for path, (name, ctype) in STATIC_FILES.items()}
    catalogue = [{"name": n, "facs_name": CATALOGUE[n].facs_name if n in CATALOGUE else ""}
                 for n in au_names]
    files["/aus.json"] = (json.dumps({"schema": "rtau.aus/1", "aus": catalogue}).encode(),
                          "application/json")
    return files


class _Client:
    """One connection's bounded queue (deque with maxlen: appending drops the oldest)."""

    def __init__(self, conn: ServerConnection, size: int) -> None:
        self.conn = conn
        self.queue: deque[str] = deque(maxlen=size)
        self.wakeup = asyncio.Event()
        self.in_flight = 0


class WebSocketSink(Closing):
    """Serves the AU stream and the viewer; see the module docstring.

    host/port: where to listen (port 0 = a free port, read it back from `.port`). token: None,
    or the secret clients must pass as `?token=`; required for a non-loopback host.
    queue_size: messages kept per client before the oldest is dropped.
    """

    def __init__(self, au_names: Sequence[str], host: str = LOOPBACK_HOST,
                 port: int = DEFAULT_PORT, token: str | None = None,
                 queue_size: int = DEFAULT_CLIENT_QUEUE) -> None:
        self.au_names = tuple(au_names)
        self.address = StreamAddress(host, port)
        check_server_address(self.address, token)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.token = token or None
        self.queue_size = queue_size
        self._static = _static_files(self.au_names)
        self._clients: set[_Client] = set()
        self.messages = self.sent = self.dropped = self.clients_seen = self.refused = 0
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._server = None
        self.port = port
        self._allowed_hosts: set[str] = set()
        self._start_error: OSError | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtau-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RtauError(f"--ws {self.address.netloc()}: the server did not start")
        if self._start_error is not None:
            self._thread.join()
            reason = self._start_error.strerror or str(self._start_error)
            raise RtauError(f"--ws {self.address.netloc()}: cannot listen there ({reason})")

    # --- the server thread -------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            return await serve(
                self._handler, self.address.host, self.address.port,
                process_request=self._process_request, compression=None,
                write_limit=WRITE_LIMIT, max_size=MAX_INCOMING, close_timeout=CLOSE_TIMEOUT_S,
                logger=LOGGER)

        try:
            self._server = self._loop.run_until_complete(start())
        except OSError as exc:
            self._start_error = exc
            self._loop.close()
            self._ready.set()
            return
        # Set before the loop serves its first request (it runs only from run_forever on).
        self.port = self._server.sockets[0].getsockname()[1]
        self._allowed_hosts = {f"{h}:{self.port}" for h in LOOPBACK_NETLOCS}
        self._allowed_hosts.add(self.address.netloc(self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            self._loop.close()

    def _refuse(self, conn: ServerConnection, status: HTTPStatus, text: str) -> Response:
        self.refused += 1
        return conn.respond(status, text + "\n")

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if self.token is not None:
            given = parse_qs(url.query).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return self._refuse(conn, HTTPStatus.UNAUTHORIZED,
                                    "a valid ?token= is required")
        else:
            host = request.headers.get("Host", "")
            origin = request.headers.get("Origin")
            if host not in self._allowed_hosts:
                return self._refuse(conn, HTTPStatus.FORBIDDEN, "unknown Host")
            if origin is not None and origin.removeprefix("http://") not in self._allowed_hosts:
                return self._refuse(conn, HTTPStatus.FORBIDDEN, "cross-origin access refused")
        if url.path == WS_PATH:
            return None  # go on with the WebSocket handshake
        static = self._static.get(url.path)
        if static is None:
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        body, content_type = static
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, Headers({
            "Content-Type": content_type, "Content-Length": str(len(body)),
            "Cache-Control": "no-store", "Connection": "close"}), body)

    async def _handler(self, conn: ServerConnection) -> None:
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        client = _Client(conn, self.queue_size)
        self._clients.add(client)
        self.clients_seen += 1
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for _ in conn:  # clients have nothing to say; reading keeps close frames moving
                pass
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self._clients.discard(client)
            self.dropped += len(client.queue) + client.in_flight
            client.queue.clear()

    async def _send_loop(self, client: _Client) -> None:
        while True:
            await client.wakeup.wait()
            client.wakeup.clear()
            while client.queue:
                text = client.queue.popleft()
                client.in_flight = 1
                try:
                    await client.conn.send(text)
                except ConnectionClosed:
                    return  # the handler counts the in-flight message as dropped
                client.in_flight = 0
                self.sent += 1

    def _fanout(self, text: str) -> None:
        for client in self._clients:
            if len(client.queue) == self.queue_size:
                self.dropped += 1
            client.queue.append(text)
            client.wakeup.set()

    async def _shutdown(self) -> None:
        deadline = self._loop.time() + FLUSH_GRACE_S
        while (any(c.queue or c.in_flight for c in self._clients)
               and self._loop.time() < deadline):
            await asyncio.sleep(0.01)
        for client in list(self._clients):
            if client.queue or client.in_flight:  # stalled: no closing handshake would get through
                client.conn.transport.abort()
        self._server.close()  # the others get a 1001 close frame
        try:
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_S + 1.0)
        except TimeoutError:
            for client in list(self._clients):
                client.conn.transport.abort()
            await asyncio.wait([asyncio.ensure_future(self._server.wait_closed())],
                               timeout=CLOSE_TIMEOUT_S)

    # --- the caller's side ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The viewer page."""
        return f"http://{self.address.netloc(self.port)}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address.netloc(self.port)}{WS_PATH}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    def wait_for_clients(self, count: int, timeout: float | None = None) -> bool:
        """Block until `count` clients are connected (True) or `timeout` seconds pass (False)."""
        step = threading.Event()
        waited = 0.0
        while self.clients < count:
            if timeout is not None and waited >= timeout:
                return False
            step.wait(0.05)
            waited += 0.05
        return True

    def write(self, frame_index: int, timestamp_ms: float,
              faces: Sequence[EstimateLike]) -> None:
        """Queue this frame's message for every connected client; returns at once."""
        if self._closed:
            raise ValueError("write on a closed WebSocketSink")
        text = frame_message(frame_index, timestamp_ms, faces, self.au_names)
        self.messages += 1
        self._loop.call_soon_threadsafe(self._fanout, text)

    def end_tracks(self, face_ids: Iterable[int]) -> None:
        """Nothing to send: a face that is not in a frame message is not tracked in it."""

    def counters(self) -> StreamCounters:
        return StreamCounters("ws", self.ws_url, self.clients, self.clients_seen, self.messages,
                              self.sent, self.dropped)

    def close(self) -> None:
        """Give clients FLUSH_GRACE_S to receive their queues, close them, stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(
                FLUSH_GRACE_S + CLOSE_TIMEOUT_S + 5.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

