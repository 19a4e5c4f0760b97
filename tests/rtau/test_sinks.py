"""CSV / JSONL sinks: header from the model's AU names, one row per face per frame, flushed
after every frame (a reader sees complete frames while the writer is still open)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from rtau.aus import DISFA_AUS
from rtau.estimator import FaceEstimate
from rtau.sinks import CsvSink, JsonlSink, csv_columns, open_sinks

AUS = DISFA_AUS[:4]


def estimate(face_id: int, value: float, box=(10.0, 20.0, 110.0, 140.0)) -> FaceEstimate:
    aus = np.full(len(AUS), value, np.float32)
    return FaceEstimate(id=face_id, box=box, landmarks=np.zeros((478, 3), np.float32), aus=aus,
                        raw_aus=aus, au_names=AUS, age=1, calibration="off",
                        crop=np.zeros((8, 8, 3), np.uint8))


def test_csv_rows_are_flushed_every_frame(tmp_path):
    path = tmp_path / "out" / "table.csv"
    sink = CsvSink(path, AUS)
    sink.write(0, 0.0, [estimate(1, 0.5), estimate(2, 1.25, (0.0, 0.0, 5.0, 5.0))])
    sink.write(1, 33.3, [])
    sink.write(2, 66.7, [estimate(2, 4.0)])
    # Not closed yet: a crash now must still leave every finished frame on disk.
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == csv_columns(AUS) == ["frame", "timestamp_ms", "face_id", "x0", "y0",
                                                 "x1", "y1", *AUS]
    assert [(r["frame"], r["face_id"]) for r in rows] == [("0", "1"), ("0", "2"), ("2", "2")]
    assert float(rows[1]["AU02"]) == 1.25 and float(rows[2]["x1"]) == 110.0
    assert rows[2]["timestamp_ms"] == "66.7"
    sink.close()
    sink.close()  # idempotent
    assert sink.rows == 3


def test_jsonl_rows(tmp_path):
    path = tmp_path / "table.jsonl"
    with JsonlSink(path, AUS) as sink:
        sink.write(5, 166.7, [estimate(3, 2.0)])
        first = json.loads(path.read_text().splitlines()[0])
    assert first == {"frame": 5, "timestamp_ms": 166.7, "face_id": 3,
                     "box": [10.0, 20.0, 110.0, 140.0], "aus": dict.fromkeys(AUS, 2.0)}


def test_header_only_when_no_face(tmp_path):
    with open_sinks(AUS, tmp_path / "a.csv", tmp_path / "a.jsonl") as group:
        group.write(0, 0.0, [])
    assert (tmp_path / "a.csv").read_text().strip() == ",".join(csv_columns(AUS))
    assert (tmp_path / "a.jsonl").read_text() == ""


def test_mismatched_au_count_is_refused(tmp_path):
    with CsvSink(tmp_path / "b.csv", AUS[:2]) as sink, pytest.raises(ValueError, match="4 AU"):
        sink.write(0, 0.0, [estimate(1, 1.0)])


def test_streams_open_beside_the_files(tmp_path):
    from rtau.errors import RtauError
    from tests.rtau.streams.clients import OscRecorder, wait_until

    with OscRecorder() as osc:
        with open_sinks(AUS, tmp_path / "a.csv", osc=f"127.0.0.1:{osc.port}",
                        ws="127.0.0.1:0") as group:
            group.write(0, 0.0, [estimate(4, 1.0)])
            group.end_tracks([4])
            kinds = [c.kind for c in group.stream_counters()]
        assert kinds == ["osc", "ws"]
        assert wait_until(lambda: osc.of("/rtau/lost") == [(4,)])
        assert len(osc.of("/rtau/au")) == 1
    # A stream that cannot open is one clear error; the file opened before it is complete.
    from rtau.streams import WebSocketSink

    with WebSocketSink(AUS, port=0) as taken:
        busy = taken.port
        with pytest.raises(RtauError, match="cannot listen"):
            open_sinks(AUS, tmp_path / "b.csv", ws=f"127.0.0.1:{busy}")
    assert (tmp_path / "b.csv").read_text().startswith("frame,")
