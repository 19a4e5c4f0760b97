"""Export: the ONNX step follows the contract and matches torch over long unrolled runs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

import train.export as export_module
from rtau.backends.onnxruntime import OnnxRuntimeBackend
from rtau.bench import face_crops, unrolled_parity
from rtau.contract import manifest_path, read_onnx_contract, sha256_file
from tests.conftest import randomised_model
from train.__main__ import app
from train.export import ExportConfig, ExportError, export_onnx, torch_step
from train.model import ModelConfig, save_checkpoint

LONG_RUN = 500


@pytest.fixture(scope="module")
def default_model():
    return randomised_model(ModelConfig(), seed=1)


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-4), ("fp16-cnn", 0.05)])
def test_onnxruntime_matches_torch_over_500_steps(default_model, tmp_path, precision, tolerance):
    path, manifest = export_onnx(
        default_model, tmp_path / f"{precision}.onnx",
        ExportConfig(precision=precision, parity_steps=0),
    )
    frames = np.stack([face_crops(112, LONG_RUN, seed=10), face_crops(112, LONG_RUN, 11)], 1)
    backend = OnnxRuntimeBackend(path, device="cpu")
    assert backend.contract.precision == precision
    error = unrolled_parity(backend.step, torch_step(default_model), frames,
                            default_model.cfg.hidden_size)["max_abs_au_error"]
    assert error <= tolerance, f"{precision}: max abs AU error {error} over {LONG_RUN} steps"


def test_contract_metadata_and_manifest(tiny_model, tmp_path):
    path, manifest = export_onnx(tiny_model, tmp_path / "m.onnx",
                                 ExportConfig(parity_steps=5, model_version="9.9",
                                              training_data="nothing"))
    contract = read_onnx_contract(path)
    assert contract.crop_size == 112 and contract.state_size == tiny_model.cfg.hidden_size
    assert contract.au_names == tuple(tiny_model.cfg.au_names)
    assert contract.model_version == "9.9" and contract.training_data == "nothing"
    assert contract.alignment == "rigid/2"  # new exports: rigid crops, stabilised in video
    on_disk = json.loads(manifest_path(path).read_text())
    assert on_disk["contract"] == "rtau.step/2" and on_disk["alignment"] == "rigid/2"
    assert on_disk == manifest
    assert on_disk["onnx_sha256"] == sha256_file(path)
    assert on_disk["io"]["image"] == {"dtype": "uint8", "shape": ["B", 112, 112, 3]}
    assert on_disk["parity_vs_torch_fp32"]["max_abs_au_error"] < 1e-3

    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"GRU", "Loop", "Scan", "LSTM"}
    assert {"Sigmoid", "Tanh"} <= ops
    # TensorRT rejects a Transpose on UINT8: the image must be cast before the layout change.
    first_consumer = next(n for n in graph.node if "image" in n.input)
    assert first_consumer.op_type == "Cast"
    image_input = next(i for i in graph.input if i.name == "image")
    assert image_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_fp16_cnn_layout_keeps_the_cell_fp32(tiny_model, tmp_path):
    path, _ = export_onnx(tiny_model, tmp_path / "h.onnx",
                          ExportConfig(precision="fp16-cnn", parity_steps=5))
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    gemms = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    assert convs and gemms
    assert all(inits[n.input[1]].data_type == onnx.TensorProto.FLOAT16 for n in convs)
    assert all(inits[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in gemms
               if n.input[1] in inits)
    state_in = next(i for i in model.graph.input if i.name == "state")
    assert state_in.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_export_refuses_a_model_that_fails_parity(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(export_module.PARITY_TOLERANCE, "fp32", -1.0)
    out = tmp_path / "refused.onnx"
    with pytest.raises(ExportError, match="was not written"):
        export_onnx(tiny_model, out, ExportConfig(parity_steps=3))
    assert not out.exists() and not manifest_path(out).exists()
    assert list(tmp_path.iterdir()) == []


def test_parity_gates_the_state_and_the_unclamped_head(tmp_path, monkeypatch):
    """An ONNX whose clamped AUs agree with torch (all exactly 0 on both sides) while its
    recurrent cell computes something else must be refused, naming what disagrees."""
    import copy

    exported = randomised_model(ModelConfig.tiny(), seed=4)
    with torch.no_grad():
        exported.head.bias.fill_(-100.0)  # every AU clamps to 0, whatever the state
    drifted = copy.deepcopy(exported)
    with torch.no_grad():
        for param in drifted.gru.parameters():
            param.add_(0.05 * torch.randn_like(param))
    original_build = export_module.build_onnx
    monkeypatch.setattr(export_module, "build_onnx",
                        lambda model, cfg: original_build(exported, cfg))
    out = tmp_path / "drifted.onnx"
    with pytest.raises(ExportError, match="the unclamped head output by .*the recurrent state by"):
        export_onnx(drifted, out, ExportConfig(parity_steps=10))
    assert not out.exists() and not manifest_path(out).exists()
    onnx.save(original_build(exported, ExportConfig()), str(tmp_path / "same.onnx"))
    parity = export_module.check_parity(drifted, tmp_path / "same.onnx", steps=10)
    assert parity["max_abs_au_error"] == 0.0, "the clamped AUs alone cannot see the drift"
    assert parity["max_abs_state_error"] > 1e-3 and parity["max_abs_head_error"] > 1e-3
    same = export_module.check_parity(exported, tmp_path / "same.onnx", steps=10)
    assert max(same["max_abs_state_error"], same["max_abs_head_error"]) < 1e-4, same


def test_export_command_writes_a_model_the_runtime_runs(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, randomised_model(ModelConfig.tiny()))
    out = tmp_path / "out" / "tiny.onnx"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out),
                                      "--parity-steps", "10", "--training-data", "fresh init"])
    assert result.exit_code == 0, result.output
    assert "parity over 10 steps" in result.output
    backend = OnnxRuntimeBackend(out)
    images = face_crops(112, 3)
    aus, state = backend.step(images, backend.init_state(3))
    assert aus.shape == (3, 12) and state.shape == (3, backend.contract.state_size)
    assert backend.contract.training_data == "fresh init"
    assert backend.contract.alignment == "five-point/1"  # the checkpoint records none: legacy


def test_export_command_takes_the_alignment_from_the_checkpoint(tmp_path):
    ckpt = tmp_path / "rigid.pt"
    save_checkpoint(ckpt, randomised_model(ModelConfig.tiny()), alignment="rigid/1")
    out = tmp_path / "rigid.onnx"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out),
                                      "--parity-steps", "0"])
    assert result.exit_code == 0, result.output
    assert read_onnx_contract(out).alignment == "rigid/1"
    assert json.loads(manifest_path(out).read_text())["alignment"] == "rigid/1"


def test_export_command_missing_checkpoint_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path / "nope.pt"), "--out",
                                      str(tmp_path / "x.onnx")])
    assert result.exit_code == 1
    assert "checkpoint not found" in result.output
    assert "Traceback" not in result.output


def test_export_leaves_the_model_mode_alone(tiny_model, tmp_path):
    model = randomised_model(ModelConfig.tiny(), seed=3)
    export_onnx(model, tmp_path / "a.onnx", ExportConfig(parity_steps=2))
    assert not any(m.training for m in model.modules())
    model.train()
    export_onnx(model, tmp_path / "b.onnx", ExportConfig(parity_steps=2))
    assert all(m.training for m in model.modules())


def test_scores_and_limits_go_into_the_manifest(tiny_model, tmp_path):
    from train.evaluate import write_results
    from train.metrics import au_metrics

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 5, (50, 2))
    pred = truth + rng.normal(0, 0.5, truth.shape)
    report = au_metrics(pred, truth, np.ones_like(truth, bool), ("AU06", "AU12"))
    result = {"store": "stores/test", "pooled": report.to_json(),
              "folds": [{"checkpoint": "c.pt", "fold": -1, "videos": ["B", "A"],
                         **report.to_json()}]}
    write_results(tmp_path / "eval", result, report, result["folds"])
    _, manifest = export_onnx(tiny_model, tmp_path / "m.onnx", ExportConfig(
        parity_steps=2, scores=tmp_path / "eval" / "evaluation.json", limits="geometry only"))
    assert manifest["scores"]["videos"] == ["A", "B"]
    assert manifest["scores"]["mean"]["icc"] == pytest.approx(report.mean["icc"])
    assert set(manifest["scores"]["per_au"]) == {"AU06", "AU12"}
    assert manifest["limits"] == "geometry only"

    (tmp_path / "bad.json").write_text('{"folds": []}')
    with pytest.raises(ExportError, match="not an evaluation.json"):
        export_onnx(tiny_model, tmp_path / "n.onnx", ExportConfig(
            parity_steps=2, scores=tmp_path / "bad.json"))
    assert not (tmp_path / "n.onnx").exists()


@pytest.mark.parametrize("prior,fade", [(10, 0), (0, 20)])
def test_a_baseline_prior_is_part_of_the_exported_step(tmp_path, prior, fade):
    import dataclasses

    cfg = dataclasses.replace(ModelConfig.tiny(inputs="geometry"), baseline_prior_frames=prior,
                              absolute_fade_frames=fade)
    model = randomised_model(cfg, seed=3)
    model.set_baseline_prior(0.2 * torch.rand(956, generator=torch.Generator().manual_seed(4))
                             - 0.1)
    path, _ = export_onnx(model, tmp_path / "prior.onnx", ExportConfig(parity_steps=200))
    backend = OnnxRuntimeBackend(path, device="cpu")
    face = (0.1 * torch.rand(2, 956, generator=torch.Generator().manual_seed(5))).numpy()
    aus, _ = backend.step(None, backend.init_state(2), face)
    with torch.no_grad():
        expected, _ = model.step(None, model.init_state(2), torch.from_numpy(face))
        model.baseline_prior.zero_()
        without, _ = model.step(None, model.init_state(2), torch.from_numpy(face))
    assert np.allclose(aus, expected.numpy(), atol=1e-4)
    assert not np.allclose(aus, without.numpy(), atol=1e-3)  # the prior, not zeros, is in it
