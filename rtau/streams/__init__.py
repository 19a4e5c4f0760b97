"""Live streams of AU intensities to other programs: OSC over UDP and a WebSocket with a viewer.

Run: `rtau live --osc 127.0.0.1:9000 --ws 127.0.0.1:8765` (then open http://127.0.0.1:8765/),
or from Python:

    from rtau import AUEstimator
    from rtau.streams import OscSink, WebSocketSink
    with AUEstimator() as est, WebSocketSink(est.au_names, port=8765) as ws:
        for i, frame in enumerate(frames):
            ws.write(i, i * 33.3, est.update(frame, i * 33.3))
            ws.end_tracks(est.tracker.dropped)

Both are sinks with the interface of `rtau.sinks` (`write(frame, timestamp_ms, faces)`,
`end_tracks(ids)`, `close()`, `counters()`), so the pipeline writes them beside CSV/JSONL.
Neither ever blocks the caller on a consumer: OSC sends non-blocking datagrams, the WebSocket
server runs in its own thread with a bounded queue per client (oldest message dropped).
The message formats are in `rtau.streams.schema`.
"""

from __future__ import annotations

from rtau.streams.address import StreamAddress, parse_address
from rtau.streams.osc import OscSink
from rtau.streams.schema import StreamCounters
from rtau.streams.websocket import WebSocketSink

__all__ = ["OscSink", "StreamAddress", "StreamCounters", "WebSocketSink", "parse_address"]
