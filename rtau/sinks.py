"""Result writers: CSV and JSONL, one row per face per frame, flushed after every frame.

Run: `with CsvSink("out.csv", au_names) as sink: sink.write(frame_index, timestamp_ms, faces)`;
`open_sinks(au_names, csv_path, jsonl_path, osc="127.0.0.1:9000", ws="127.0.0.1:8765")` opens
the files and the live streams (`rtau.streams`: OSC, WebSocket) as one SinkGroup.

Columns (CSV header / JSONL keys): `frame` (0-based index in the source), `timestamp_ms`,
`face_id` (the tracker's id), `x0, y0, x1, y1` (face box in frame pixels), then one column per
AU named as in the model's manifest (`AU01`, ...), intensities 0..5 with 4 decimals. JSONL rows
carry `box` as a list and `aus` as an object. A frame without a face writes no row, so a video
without faces gives a header-only CSV / an empty JSONL.

The file is written under its final name and flushed after each frame (not renamed at the end)
on purpose: a live session's table can be followed while it grows, and an interrupted or killed
run keeps every frame completed before it stopped.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rtau.closing import Closing
from rtau.records import BOX_DECIMALS, DECIMALS, EstimateLike

BOX_COLUMNS = ("x0", "y0", "x1", "y1")
KEY_COLUMNS = ("frame", "timestamp_ms", "face_id")

class Sink(Protocol):
    """What the pipeline writes to: files here, live streams in `rtau.streams`."""

    def write(self, frame_index: int, timestamp_ms: float,
              faces: Sequence[EstimateLike]) -> None: ...

    def close(self) -> None: ...


def csv_columns(au_names: Sequence[str]) -> list[str]:
    return [*KEY_COLUMNS, *BOX_COLUMNS, *au_names]


class _FileSink(Closing):
    def __init__(self, path: str | os.PathLike, au_names: Sequence[str]) -> None:
        self.path = Path(path)
        self.au_names = tuple(au_names)
        self.rows = 0
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115

    def _check(self, face: EstimateLike) -> None:
        if len(face.aus) != len(self.au_names):
            raise ValueError(f"{self.path}: a face has {len(face.aus)} AU values, the header has "
                             f"{len(self.au_names)}")

    def write(self, frame_index: int, timestamp_ms: float,
              faces: Sequence[EstimateLike]) -> None:
        for face in faces:
            self._check(face)
            self._write_row(frame_index, timestamp_ms, face)
            self.rows += 1
        self._fh.flush()

    def _write_row(self, frame_index: int, timestamp_ms: float, face: EstimateLike) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()



class CsvSink(_FileSink):
    """CSV with a header row; see the module docstring for the columns."""

    def __init__(self, path: str | os.PathLike, au_names: Sequence[str]) -> None:
        super().__init__(path, au_names)
        self._writer = csv.writer(self._fh)
        self._writer.writerow(csv_columns(self.au_names))
        self._fh.flush()

    def _write_row(self, frame_index: int, timestamp_ms: float, face: EstimateLike) -> None:
        self._writer.writerow([
            frame_index, f"{timestamp_ms:.1f}", face.id,
            *(f"{v:.{BOX_DECIMALS}f}" for v in face.box),
            *(f"{float(v):.{DECIMALS}f}" for v in face.aus),
        ])


class JsonlSink(_FileSink):
    """One JSON object per line: frame, timestamp_ms, face_id, box [x0,y0,x1,y1], aus {name: v}."""

    def _write_row(self, frame_index: int, timestamp_ms: float, face: EstimateLike) -> None:
        record = {
            "frame": frame_index,
            "timestamp_ms": round(float(timestamp_ms), 1),
            "face_id": int(face.id),
            "box": [round(float(v), BOX_DECIMALS) for v in face.box],
            "aus": {n: round(float(v), DECIMALS) for n, v in zip(self.au_names, face.aus,
                                                                   strict=True)},
        }
        self._fh.write(json.dumps(record) + "\n")


class SinkGroup(Closing):
    """Several sinks written and closed together (closing never stops at the first error)."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks = list(sinks)

    def write(self, frame_index: int, timestamp_ms: float,
              faces: Sequence[EstimateLike]) -> None:
        for sink in self.sinks:
            sink.write(frame_index, timestamp_ms, faces)

    def end_tracks(self, face_ids: Sequence[int]) -> None:
        """Tell the streams that these face ids ended (the tracker dropped them)."""
        if not face_ids:
            return
        for sink in self.sinks:
            if hasattr(sink, "end_tracks"):
                sink.end_tracks(face_ids)

    def stream_counters(self) -> list:
        """`rtau.streams.StreamCounters` of every stream sink (messages sent, dropped...)."""
        return [sink.counters() for sink in self.sinks if hasattr(sink, "counters")]

    def close(self) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except (OSError, RuntimeError) as exc:
                errors.append(exc)
        if errors:
            raise errors[0]



def open_sinks(au_names: Sequence[str], csv_path: str | os.PathLike | None = None,
               jsonl_path: str | os.PathLike | None = None, osc: str | None = None,
               ws: str | None = None, ws_token: str | None = None,
               ws_queue: int | None = None) -> SinkGroup:
    """Open the sinks asked for; on failure, close what was opened and re-raise.

    osc: "HOST:PORT" to send OSC datagrams to. ws: "HOST:PORT" to serve the WebSocket stream
    and viewer on (port 0: any free port). ws_token: required for a non-loopback ws address.
    ws_queue: messages kept per WebSocket client (None: the default).
    """
    group = SinkGroup()
    try:
        if csv_path is not None:
            group.sinks.append(CsvSink(csv_path, au_names))
        if jsonl_path is not None:
            group.sinks.append(JsonlSink(jsonl_path, au_names))
        if osc is not None:
            from rtau.streams import OscSink, parse_address

            target = parse_address(osc, "--osc")
            group.sinks.append(OscSink(au_names, target.host, target.port))
        if ws is not None:
            from rtau.streams import WebSocketSink, parse_address
            from rtau.streams.websocket import DEFAULT_CLIENT_QUEUE

            where = parse_address(ws, "--ws", allow_any_port=True)
            group.sinks.append(WebSocketSink(au_names, where.host, where.port, ws_token,
                                             ws_queue or DEFAULT_CLIENT_QUEUE))
    except BaseException:
        group.close()
        raise
    return group
