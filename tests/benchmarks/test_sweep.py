"""benchmarks/sweep.py and report.py: one run writes JSON + markdown + plot, variants that
cannot run here are listed with a reason, and the DESIGN targets are judged only on what was
measured."""

from __future__ import annotations

import json

from benchmarks import report, sweep


def test_quick_sweep_writes_json_markdown_and_plot(tiny_onnx, tmp_path, capsys):
    payload = sweep.main(["--quick", "--no-source", "--out", str(tmp_path), "--name", "here",
                          "--model", str(tiny_onnx),
                          "--variants", "onnxruntime-cpu,torch-cuda-graphs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.json", "here.md", "here.png"]
    printed = capsys.readouterr().out
    assert printed.rindex("design targets on") > printed.rindex("step latency")  # printed last
    saved = json.loads((tmp_path / "here.json").read_text())
    assert saved["results"] == payload["results"]
    assert {r["variant"] for r in saved["results"]} == {"onnxruntime-cpu"}
    assert [r["batch"] for r in saved["results"]] == list(sweep.CPU_BATCHES)
    if not saved["machine"]["gpus"]:
        assert [s["variant"] for s in saved["skipped"]] == ["torch-cuda-graphs"]
    assert saved["comparisons"]["parity"] == {}  # ONNX Runtime CPU is the reference
    assert saved["command"].startswith("python -m benchmarks.sweep --quick")
    text = (tmp_path / "here.md").read_text()
    assert "| onnxruntime-cpu | onnxruntime (cpu, fp32)" in text
    assert "## DESIGN.md section 6 targets" in text and "not measured (no GPU)" in text
    (tmp_path / "here.md").unlink()
    report.main([str(tmp_path / "here.json")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.json", "here.md", "here.png"]


def _result(variant, backend, batch, p50, description):
    return {"variant": variant, "backend": backend, "batch": batch, "p50_ms": p50,
            "p99_ms": p50 * 1.5, "faces_per_s": batch * 1000 / p50, "description": description,
            "p50_ms_per_face": p50 / batch}


GRAPHS = "torch (cuda X, fp16-cnn, CUDA graphs)"


def test_targets_are_judged_on_what_was_measured():
    payload = {
        "machine": {"cores": 16},
        "results": [
            _result("onnxruntime-cpu", "onnxruntime", 1, 2.5, "onnxruntime (cpu, fp32)"),
            _result("torch-cuda-graphs", "torch", 1, 0.2, GRAPHS),
            _result("torch-cuda-graphs", "torch", 512, 20.0, GRAPHS),
        ],
        "comparisons": {"parity": {"torch-cuda-graphs": {
            "steps": 1000, "batch": 2, "max_abs_au_error": 0.01, "max_abs_state_error": 0.02}}},
        "stages": {},
    }
    rows = {t["what"].split(",")[0]: t for t in report.targets(payload)}
    assert rows["default model step"]["met"] is True
    assert rows["step on a GPU (torch CUDA graphs or TensorRT FP16)"]["met"] is True
    assert rows["step throughput on a GPU"]["met"] is True  # 25,600 faces/s
    assert rows["FP16 engine vs FP32 reference over 1"]["met"] is True
    assert rows["`rtau process`"]["met"] is None
    assert rows["live: capture-to-estimate latency at 30 fps"]["met"] is None
