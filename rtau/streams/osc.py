"""OSC over UDP: one `/rtau/au` message per face per frame to one destination (python-osc).

Run: `with OscSink(au_names, "127.0.0.1", 9000) as osc: osc.write(frame, timestamp_ms, faces)`;
receive with any OSC library (python-osc's `ThreadingOSCUDPServer`, Max/MSP, Pure Data, Unity
OSC, TouchDesigner). Messages: see `rtau.streams.schema`.

The socket is non-blocking: a datagram the kernel cannot take at once is counted as dropped and
never waited for, so a slow network or receiver cannot slow the pipeline. UDP itself gives no
delivery report: datagrams the receiver's buffer overflows on are lost without a count here.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable, Sequence

from pythonosc.osc_message_builder import OscMessageBuilder

from rtau.closing import Closing
from rtau.errors import RtauError
from rtau.records import EstimateLike
from rtau.streams.address import LOOPBACK_HOST, StreamAddress
from rtau.streams.schema import NAMES_INTERVAL_S, OSC_AU, OSC_LOST, OSC_NAMES, StreamCounters

_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def _message(address: str, args: Iterable[tuple[str, object]]) -> bytes:
    builder = OscMessageBuilder(address=address)
    for type_tag, value in args:
        builder.add_arg(value, type_tag)
    return builder.build().dgram


class OscSink(Closing):
    """Sends AU intensities as OSC datagrams to host:port.

    au_names: the model's AU names (order of the floats). names_interval_s: how often
    `/rtau/names` is repeated (receivers started late learn the order within that time).
    """

    def __init__(self, au_names: Sequence[str], host: str = LOOPBACK_HOST, port: int = 9000,
                 names_interval_s: float = NAMES_INTERVAL_S) -> None:
        self.au_names = tuple(au_names)
        self.address = StreamAddress(host, port)
        self.names_interval_s = names_interval_s
        try:
            family, kind, proto, _, target = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise RtauError(f"--osc {self.address.netloc()}: cannot resolve {host!r} ({exc})") \
                from None
        self._target = target
        self._sock = socket.socket(family, kind, proto)
        self._sock.setblocking(False)
        self._names = _message(OSC_NAMES, (("s", n) for n in self.au_names))
        self._open_ids: set[int] = set()
        self._last_names = float("-inf")
        self.messages = self.sent = self.dropped = 0
        self.last_error: str | None = None
        self._send_names()

    def _send(self, dgram: bytes) -> None:
        self.messages += 1
        try:
            self._sock.sendto(dgram, self._target)
            self.sent += 1
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:  # e.g. ECONNREFUSED reported for an earlier datagram
            self.dropped += 1
            if exc.errno not in _WOULD_BLOCK:
                self.last_error = str(exc)

    def _send_names(self) -> None:
        self._last_names = time.monotonic()
        self._send(self._names)

    def write(self, frame_index: int, timestamp_ms: float,
              faces: Sequence[EstimateLike]) -> None:
        """One `/rtau/au` per face (a frame without a face sends nothing but the names)."""
        if self._sock is None:
            raise ValueError("write on a closed OscSink")
        if time.monotonic() - self._last_names >= self.names_interval_s:
            self._send_names()
        for face in faces:
            if len(face.aus) != len(self.au_names):
                raise ValueError(f"a face has {len(face.aus)} AU values, the stream has "
                                 f"{len(self.au_names)} AU names")
            self._open_ids.add(int(face.id))
            self._send(_message(OSC_AU, (
                ("i", int(face.id)), ("i", int(frame_index)), ("f", float(timestamp_ms)),
                *(("f", float(v)) for v in face.aus))))

    def end_tracks(self, face_ids: Iterable[int]) -> None:
        """`/rtau/lost` for each id that had been sent and has now ended."""
        for face_id in face_ids:
            if int(face_id) in self._open_ids:
                self._open_ids.discard(int(face_id))
                self._send(_message(OSC_LOST, (("i", int(face_id)),)))

    def counters(self) -> StreamCounters:
        return StreamCounters("osc", f"udp://{self.address.netloc()}", 1, 1, self.messages,
                              self.sent, self.dropped)

    def close(self) -> None:
        """Ends every open track (`/rtau/lost`), then closes the socket. Idempotent."""
        if self._sock is None:
            return
        self.end_tracks(sorted(self._open_ids))
        self._sock.close()
        self._sock = None

