"""`rtau process` on real clips: every frame in order, a well-formed table, a summary; one
clear line for every bad input; a video without a face is a warning and an empty table."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rtau.cli import app
from rtau.contract import manifest_path
from rtau.media import test_media as media_file


def invoke(*args):
    return CliRunner().invoke(app, ["process", *map(str, args)])


def read_table(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_single_face_clip_gives_a_face_in_every_frame(tiny_onnx, tmp_path):
    out = tmp_path / "single.csv"
    result = invoke(media_file("single_face.mp4"), "--csv", out, "--model", tiny_onnx,
                    "--backend", "onnxruntime", "--no-progress")
    assert result.exit_code == 0, result.output
    rows = read_table(out)
    au_names = json.loads(manifest_path(tiny_onnx).read_text())["au_names"]
    assert list(rows[0]) == ["frame", "timestamp_ms", "face_id", "x0", "y0", "x1", "y1",
                             *au_names]
    assert [int(r["frame"]) for r in rows] == list(range(72)), "every frame, in order, once"
    assert len({r["face_id"] for r in rows}) == 1
    for r in rows:
        x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
        assert all(0.0 <= float(r[a]) <= 5.0 for a in au_names)
    assert float(rows[30]["timestamp_ms"]) == pytest.approx(1000.0, abs=0.1)
    summary = result.stdout
    assert "single_face.mp4" in summary and "72" in summary


def test_out_dir_several_videos_and_no_face_warning(tiny_onnx, tmp_path):
    out = tmp_path / "tables"
    result = invoke(media_file("single_face.mp4"), media_file("no_face.mp4"), "--out", out,
                    "--model", tiny_onnx, "--backend", "onnxruntime", "--max-frames", "20",
                    "--stats", "--no-progress")
    assert result.exit_code == 0, result.output
    assert len(read_table(out / "single_face.csv")) == 20
    no_face = out / "no_face.csv"
    assert no_face.read_text().startswith("frame,timestamp_ms,face_id,x0,y0,x1,y1,AU01")
    assert read_table(no_face) == []
    assert "warning: no face found in" in result.output and "no_face.mp4" in result.output
    assert "landmarks" in result.stdout and "p99" in result.stdout


def test_jsonl_output(tiny_onnx, tmp_path):
    out = tmp_path / "single.jsonl"
    result = invoke(media_file("single_face.mp4"), "--jsonl", out, "--model", tiny_onnx,
                    "--max-frames", "5", "--no-progress")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2, 3, 4] and len(rows[0]["aus"]) == 12


def _one_error_line(result, pattern):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_bad_inputs_are_one_clear_line(tiny_onnx, tmp_path):
    clip = media_file("single_face.mp4")
    _one_error_line(invoke(tmp_path / "missing.mp4", "--csv", tmp_path / "a.csv", "--model",
                           tiny_onnx), "video file not found")
    not_video = tmp_path / "notes.mov"
    not_video.write_text("hello\n")
    _one_error_line(invoke(not_video, "--csv", tmp_path / "a.csv", "--model", tiny_onnx),
                    "notes.mov is not a readable video")
    fake_model = tmp_path / "fake.onnx"
    fake_model.write_bytes(b"\x08\x07garbage")
    _one_error_line(invoke(clip, "--csv", tmp_path / "a.csv", "--model", fake_model),
                    "fake.onnx is not a readable ONNX model")
    _one_error_line(invoke(clip, "--csv", tmp_path / "a.csv", "--model", tmp_path / "no.onnx"),
                    "model file not found")
    _one_error_line(invoke(clip, clip, "--csv", tmp_path / "a.csv", "--model", tiny_onnx),
                    "--csv/--jsonl take one video")
    _one_error_line(invoke(clip), "say where the results go")


def test_model_without_the_contract_is_refused(tiny_onnx, tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    stripped = tmp_path / "plain.onnx"
    onnx.save(proto, str(stripped))
    result = invoke(media_file("single_face.mp4"), "--csv", tmp_path / "a.csv", "--model",
                    stripped)
    _one_error_line(result, "is not an rtau step model")


def test_missing_default_model_says_to_pass_model(tmp_path, monkeypatch):
    # an install whose default model is missing (deleted, or a broken package)
    monkeypatch.delenv("RTAU_MODEL", raising=False)
    monkeypatch.setattr("rtau.model_files.DEFAULT_MODEL", tmp_path / "gone" / "default.onnx")
    result = invoke(media_file("single_face.mp4"), "--csv", tmp_path / "a.csv")
    _one_error_line(result, "pass --model PATH")


def test_real_subprocess(tiny_onnx, tmp_path):
    out = tmp_path / "sub.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "rtau.cli", "process", str(media_file("single_face.mp4")),
         "--csv", str(out), "--model", str(tiny_onnx), "--backend", "onnxruntime"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read_table(out)) == 72
    assert "backend onnxruntime" in proc.stderr and "72/72" in proc.stderr  # progress bar


def test_a_video_cut_short_is_reported_and_its_rows_kept(tiny_onnx, tmp_path, truncated_clip):
    path, declared, decodable = truncated_clip
    out = tmp_path / "cut.csv"
    result = invoke(path, "--csv", out, "--model", tiny_onnx, "--backend", "onnxruntime",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert [int(r["frame"]) for r in read_table(out)] == list(range(decodable))
    lines = [line for line in result.output.splitlines() if "stopped decoding" in line]
    assert len(lines) == 1 and f"after {decodable} of the {declared} frames" in lines[0], lines
