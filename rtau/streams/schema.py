"""The stream message formats (versioned) and the counters every stream sink keeps.

Run: `frame_message(12, 400.0, faces, au_names)` -> the JSON text of one `rtau.frame/1` message.

WebSocket, one JSON text message per frame (frames without a face too, with `"faces": []`):
    {"schema": "rtau.frame/1", "frame": int, "timestamp_ms": float,
     "faces": [{"id": int, "box": [x0, y0, x1, y1], "aus": {"AU01": float, ...}}]}
  `box` is in frame pixels; AU intensities 0..5 rounded to 4 decimals, keys in model order.
OSC (UDP):
    /rtau/au    int32 face_id, int32 frame, float32 timestamp_ms, K x float32 (model order)
    /rtau/names K x string, the AU names (at start, then every NAMES_INTERVAL_S seconds)
    /rtau/lost  int32 face_id, when a track ends (the tracker dropped it, or the stream closed)
A change that breaks a reader bumps the version (`rtau.frame/2`, `/rtau/v2/...`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rtau.records import BOX_DECIMALS, DECIMALS, EstimateLike

FRAME_SCHEMA = "rtau.frame/1"
OSC_AU = "/rtau/au"
OSC_NAMES = "/rtau/names"
OSC_LOST = "/rtau/lost"
NAMES_INTERVAL_S = 5.0


@dataclass(frozen=True)
class StreamCounters:
    """Totals of one stream sink. sent + dropped counts every message offered to a consumer.

    kind: "osc" or "ws". endpoint: where it sends / listens. clients: consumers connected now
    (OSC: 1, the destination). clients_seen: consumers ever connected. messages: messages built
    (OSC: datagrams; WebSocket: frames, each offered to every client). sent: messages handed to
    the network. dropped: messages discarded because a consumer's queue was full, it left with
    messages pending, or the socket refused them.
    """

    kind: str
    endpoint: str
    clients: int
    clients_seen: int
    messages: int
    sent: int
    dropped: int


def face_record(face: EstimateLike, au_names: Sequence[str]) -> dict:
    """One face of a frame message: id, box (frame pixels), aus {name: intensity}."""
    if len(face.aus) != len(au_names):
        raise ValueError(f"a face has {len(face.aus)} AU values, the stream has "
                         f"{len(au_names)} AU names")
    return {"id": int(face.id),
            "box": [round(float(v), BOX_DECIMALS) for v in face.box],
            "aus": {n: round(float(v), DECIMALS) for n, v in zip(au_names, face.aus,
                                                               strict=True)}}


def frame_message(frame_index: int, timestamp_ms: float, faces: Sequence[EstimateLike],
                  au_names: Sequence[str]) -> str:
    """The `rtau.frame/1` JSON text for one frame (compact separators)."""
    return json.dumps({"schema": FRAME_SCHEMA, "frame": int(frame_index),
                       "timestamp_ms": round(float(timestamp_ms), 1),
                       "faces": [face_record(f, au_names) for f in faces]},
                      separators=(",", ":"))
