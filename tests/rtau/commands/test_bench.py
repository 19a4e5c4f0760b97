"""`rtau bench` on the tiny model: the JSON other tools read has the documented shape and sane
values; `--source` adds the pipeline stages; every bad input is one line and a non-zero exit.
No timing thresholds: these check the measuring, not the machine."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rtau.cli import app
from rtau.media import test_media as media_file

QUICK = ("--steps", "5", "--warmup", "1", "--window-frames", "2")


def invoke(*args):
    return CliRunner().invoke(app, ["bench", *map(str, args)])


def one_error_line(result, pattern: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert pattern in lines[0], lines[0]


def test_onnxruntime_batches_json_shape(tiny_onnx, tmp_path):
    out = tmp_path / "out.json"
    result = invoke("--backend", "onnxruntime", "--batch", "1,8", *QUICK, "--windows", "2,3",
                    "--model", tiny_onnx, "--json", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    machine = payload["machine"]
    for key in ("name", "cpu", "cores", "arch", "os", "python", "gpus", "libraries",
                "load_average"):
        assert key in machine, key
    assert machine["cores"] >= 1 and "onnxruntime" in machine["libraries"]
    assert [(r["backend"], r["batch"]) for r in payload["results"]] == [
        ("onnxruntime", 1), ("onnxruntime", 8)]
    for r in payload["results"]:
        assert set(r) >= {"backend", "batch", "p50_ms", "p99_ms", "faces_per_s"}
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["faces_per_s"] == pytest.approx(r["batch"] * 1000.0 / r["p50_ms"])
        assert r["steps"] == 5
    assert payload["stages"] == {}
    assert payload["model"]["file"] == tiny_onnx.name and not payload["model"]["shipped_default"]
    windows = payload["comparisons"]["sliding_window"]["onnxruntime"]
    assert [w["window"] for w in windows] == [1, 2, 3]
    assert windows[0]["x_stateful"] == 1.0 and windows[0]["batched_p50_ms"] is None
    assert all(w["batched_p50_ms"] > 0 for w in windows[1:]), "the fair way is timed too"
    (versus,) = payload["comparisons"]["batch_vs_single"]
    assert versus["batch"] == 8
    assert versus["n_single_calls_ms"] == pytest.approx(8 * payload["results"][0]["p50_ms"])
    assert payload["command"].startswith("rtau bench --backend onnxruntime --batch 1,8")
    assert "step latency" in result.stdout and "faces/s" in result.stdout


def test_source_adds_pipeline_stages(tiny_onnx, tmp_path):
    out = tmp_path / "stages.json"
    result = invoke("--backend", "onnxruntime", "--batch", "1", *QUICK, "--windows", "none",
                    "--model", tiny_onnx, "--source", media_file("single_face.mp4"),
                    "--json", out)
    assert result.exit_code == 0, result.output
    stages = json.loads(out.read_text())["stages"]
    assert stages["source"]["frames"] == 72 and stages["source"]["width"] == 640
    for stage in ("decode", "landmarks", "align", "step", "render"):
        s = stages["per_stage"][stage]
        assert 0 <= s["p50_ms"] <= s["p99_ms"] and s["samples"] > 0, stage
    assert stages["process"]["frames"] == 72 and stages["process"]["fps"] > 0
    latency = stages["capture_to_estimate"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert latency["p50_frame_periods"] == pytest.approx(
        latency["p50_ms"] / latency["frame_period_ms"])
    assert latency["frames_estimated"] + latency["frames_dropped"] <= 72
    assert "pipeline stages" in result.stdout and "capture-to-estimate" in result.stdout


def test_a_backend_that_cannot_load_is_skipped_with_its_reason(tiny_onnx, tmp_path):
    out = tmp_path / "out.json"
    result = invoke("--backend", "onnxruntime,tensorrt", "--batch", "1", *QUICK,
                    "--windows", "none", "--model", tiny_onnx, "--json", out)
    assert result.exit_code == 0, result.output
    skipped = json.loads(out.read_text())["skipped"]
    assert [s["variant"] for s in skipped] == ["tensorrt"] and skipped[0]["reason"]
    assert "skipped tensorrt: " in result.output


@pytest.mark.parametrize(("args", "pattern"), [
    (("--backend", "nope"), "unknown backend 'nope'"),
    (("--batch", "1,x"), "--batch must be comma-separated integers"),
    (("--batch", "0"), "--batch must be integers >= 1"),
    (("--windows", "1"), "--windows must be integers >= 2"),
])
def test_bad_flags_are_one_line(tiny_onnx, args, pattern):
    one_error_line(invoke("--backend", "onnxruntime", *QUICK, "--model", tiny_onnx, *args),
                   pattern)


def test_bad_source_model_and_unloadable_backend_are_one_line(tiny_onnx, tmp_path):
    one_error_line(invoke("--backend", "onnxruntime", "--source", tmp_path / "missing.mp4",
                          "--model", tiny_onnx), "video file not found")
    not_video = tmp_path / "clip.mp4"
    not_video.write_text("not a video")
    one_error_line(invoke("--backend", "onnxruntime", "--source", not_video,
                          "--model", tiny_onnx), "is not a readable video")
    one_error_line(invoke("--backend", "onnxruntime", "--model", tmp_path / "no.onnx"),
                   "model file not found")
    one_error_line(invoke("--backend", "tensorrt", *QUICK, "--model", tiny_onnx),
                   "no backend could be timed here (tensorrt: ")


def test_a_geometry_only_model_is_timed_and_described(tiny_onnx_of, tmp_path):
    out = tmp_path / "geo.json"
    model = tiny_onnx_of("geometry")
    result = invoke("--backend", "onnxruntime", "--batch", "1,2", *QUICK, "--windows", "2",
                    "--parity", "3", "--model", model, "--json", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert [r["batch"] for r in payload["results"]] == [1, 2]
    assert payload["model"]["inputs"] == ["geometry"]
    assert "inputs geometry" in result.stdout
