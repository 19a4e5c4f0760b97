"""Export the model's `step` to a contract ONNX, check it against ONNX Runtime, write a manifest.

Run: `python -m train export CHECKPOINT --out model.onnx [--precision fp32|fp16-cnn]`.

The exported graph is exactly the stateful step contract of `rtau.contract`:
`image` uint8[B, S, S, 3] BGR + `state` float32[B, H] -> `aus` float32[B, K] + `state_out`
float32[B, H], dynamic B. Normalisation and NHWC -> NCHW happen inside the graph; the GRU cell is
plain Gemm/Sigmoid/Tanh. `--precision fp32` (the default, shipped for CPU users: see README) keeps
everything FP32; `fp16-cnn` rewrites the CNN to FP16 with `rtau.precision` (the layout engines
are built from). The ONNX metadata carries the contract, the model config and the CNN boundary;
`model.json` beside it repeats them with the file's sha256 and the parity numbers. The alignment
of the training crops (`rtau.alignment`, so the runtime crops faces the same way) comes from the
checkpoint, which training copies from its clip store.

Before anything is written, the ONNX is run by ONNX Runtime for `parity_steps` unrolled steps on
real-looking face frames (a public-domain portrait under small motion and lighting change) and
compared with the torch FP32 step; a model over tolerance is refused.

`--scores EVALUATION.json` (written by `python -m train evaluate`) and `--limits TEXT` put the
model's held-out scores and its known limits into the manifest, so a shipped model says what it
was measured on and what it cannot do.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import typer
from torch import nn

from rtau.contract import (
    ALIGNMENT_FIVE_POINT,
    ALIGNMENT_RIGID,
    INPUT_IMAGE,
    INPUT_STATE,
    OUTPUT_AUS,
    OUTPUT_STATE,
    PRECISION_FP16_CNN,
    PRECISION_FP32,
    ModelContract,
    ModelManifest,
    manifest_path,
    sha256_file,
    write_json_atomic,
)
from rtau.precision import META_CNN_OUTPUT, convert_cnn_to_fp16
from train.model import AUModel, count_flops_per_frame, load_checkpoint

OPSET = 17
META_MODEL_CONFIG = "rtau.model_config"
PARITY_TOLERANCE = {PRECISION_FP32: 1e-3, PRECISION_FP16_CNN: 0.05}
"""Max abs AU error (intensity units) over the unrolled parity run, per precision."""
PARITY_BATCH = 2
POOL_OPS = ("ReduceMean", "GlobalAveragePool")


class ExportError(RuntimeError):
    """The export failed a check; nothing was written."""


@dataclass(frozen=True)
class ExportConfig:
    """Options of `python -m train export` (flags map 1:1)."""

    precision: str = PRECISION_FP32
    model_version: str = "0.1.0"
    training_data: str = ""
    parity_steps: int = 500
    seed: int = 0
    scores: Path | None = None
    limits: str = ""
    alignment: str = ALIGNMENT_RIGID  # of the training crops; the CLI takes the checkpoint's


def read_scores(path: Path) -> dict:
    """The pooled ICC / PCC / MAE of an evaluation.json (`train evaluate`), for a manifest."""
    try:
        result = json.loads(Path(path).read_text())
        pooled = result["pooled"]
        return {"store": result["store"], "videos": sorted(
            {v for fold in result["folds"] for v in fold["videos"]}),
            "mean": pooled["mean"], "per_au": pooled["per_au"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"--scores {path}: not an evaluation.json of `train evaluate` "
                          f"({exc.__class__.__name__}: {exc})") from None


class _StepModule(nn.Module):
    """`AUModel.step` as a module with the contract's argument order, for tracing."""

    def __init__(self, model: AUModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, state: torch.Tensor):
        return self.model.step(image, state)


def parity_frames(crop_size: int, steps: int, seed: int = 0) -> np.ndarray:
    """Real-looking crops uint8[steps, S, S, 3]: a real portrait drifting in place and lighting.

    Uses matplotlib's public-domain `grace_hopper.jpg` (matplotlib comes with MediaPipe).
    """
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path))
    if image is None:
        raise ExportError(f"cannot read the parity image {path}")
    h, w = image.shape[:2]
    side = min(h, w)
    base = image[(h - side) // 4 : (h - side) // 4 + side, (w - side) // 2 : (w - side) // 2 + side]
    base = cv2.resize(base, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    frames = np.empty((steps, crop_size, crop_size, 3), np.uint8)
    phase = rng.uniform(0, 2 * np.pi, size=4)
    for t in range(steps):
        dx, dy = 2.0 * np.sin(0.05 * t + phase[0]), 2.0 * np.sin(0.037 * t + phase[1])
        angle = 3.0 * np.sin(0.021 * t + phase[2])
        gain = 1.0 + 0.15 * np.sin(0.013 * t + phase[3])
        m = cv2.getRotationMatrix2D((crop_size / 2, crop_size / 2), angle, 1.0)
        m[:, 2] += (dx, dy)
        warped = cv2.warpAffine(base, m, (crop_size, crop_size), borderMode=cv2.BORDER_REFLECT)
        noisy = warped.astype(np.float32) * gain + rng.normal(0, 2.0, warped.shape)
        frames[t] = np.clip(noisy, 0, 255).astype(np.uint8)
    return frames


def _trace_to_onnx(model: AUModel) -> bytes:
    cfg = model.cfg
    image = torch.from_numpy(parity_frames(cfg.crop_size, 2)).contiguous()
    state = torch.zeros(2, cfg.hidden_size)
    buffer = io.BytesIO()
    # torch.onnx.export leaves every submodule in the *wrapper's* mode afterwards: a wrapper in
    # train mode would silently switch the caller's model to batch-statistics BatchNorm.
    wrapper = _StepModule(model).eval()
    dynamic = {name: {0: "B"} for name in (INPUT_IMAGE, INPUT_STATE, OUTPUT_AUS, OUTPUT_STATE)}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export; it still gives the
        # plainest graph (Conv+BN folded, Gemm cell) and needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (image, state), buffer,
            input_names=[INPUT_IMAGE, INPUT_STATE], output_names=[OUTPUT_AUS, OUTPUT_STATE],
            dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    return buffer.getvalue()


def build_onnx(model: AUModel, cfg: ExportConfig):
    """Trace `model.step` and return the contract onnx.ModelProto (metadata set)."""
    import onnx

    was_training = model.training
    try:
        proto = onnx.load_from_string(_trace_to_onnx(model.eval()))
    finally:
        model.train(was_training)
    pools = [n for n in proto.graph.node if n.op_type in POOL_OPS]
    if len(pools) != 1:
        raise ExportError(f"expected one global pooling node in the CNN, found {len(pools)}")
    contract = ModelContract(
        crop_size=model.cfg.crop_size, state_size=model.cfg.hidden_size,
        au_names=tuple(model.cfg.au_names), model_version=cfg.model_version,
        training_data=cfg.training_data or "unspecified", precision=PRECISION_FP32,
        alignment=cfg.alignment,
    )
    meta = contract.to_metadata()
    meta[META_CNN_OUTPUT] = pools[0].output[0]
    meta[META_MODEL_CONFIG] = json.dumps(model.cfg.to_dict())
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "rtau"
    proto.doc_string = "rtau stateful AU step: (image uint8 BxSxSx3, state) -> (aus, state_out)"
    if cfg.precision == PRECISION_FP16_CNN:
        proto = convert_cnn_to_fp16(proto)
    elif cfg.precision != PRECISION_FP32:
        raise ExportError(f"precision must be {PRECISION_FP32} or {PRECISION_FP16_CNN}")
    onnx.checker.check_model(proto)
    return proto


def check_parity(model: AUModel, onnx_path: Path, steps: int, seed: int = 0) -> dict:
    """Unroll torch (FP32) and ONNX Runtime side by side; max/mean abs errors of AUs and state."""
    import onnxruntime as ort

    was_training = model.training
    model.eval()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    cfg = model.cfg
    frames = np.stack(
        [parity_frames(cfg.crop_size, steps, seed + i) for i in range(PARITY_BATCH)], axis=1
    )
    ort_state = np.zeros((PARITY_BATCH, cfg.hidden_size), np.float32)
    torch_state = torch.zeros(PARITY_BATCH, cfg.hidden_size)
    max_au = max_state = 0.0
    sum_au = 0.0
    with torch.no_grad():
        for t in range(steps):
            aus, ort_state = session.run(
                [OUTPUT_AUS, OUTPUT_STATE], {INPUT_IMAGE: frames[t], INPUT_STATE: ort_state}
            )
            ref, torch_state = model.step(torch.from_numpy(frames[t]), torch_state)
            err = np.abs(aus - ref.numpy())
            max_au = max(max_au, float(err.max()))
            sum_au += float(err.mean())
            max_state = max(max_state, float(np.abs(ort_state - torch_state.numpy()).max()))
    model.train(was_training)
    return {
        "steps": steps, "batch": PARITY_BATCH,
        "max_abs_au_error": max_au, "mean_abs_au_error": sum_au / max(steps, 1),
        "max_abs_state_error": max_state,
    }


def export_onnx(model: AUModel, out_path: str | os.PathLike, cfg: ExportConfig = ExportConfig())\
        -> tuple[Path, dict]:
    """Export, check parity, then write `out_path` and its manifest; returns (path, manifest)."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scores = read_scores(cfg.scores) if cfg.scores is not None else None
    proto = build_onnx(model, cfg)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        onnx.save(proto, str(tmp))
        parity = check_parity(model, tmp, cfg.parity_steps, cfg.seed) if cfg.parity_steps else {}
        tolerance = PARITY_TOLERANCE[cfg.precision]
        if parity and parity["max_abs_au_error"] > tolerance:
            raise ExportError(
                f"ONNX Runtime and torch disagree by {parity['max_abs_au_error']:.4g} AU units "
                f"over "
                f"{cfg.parity_steps} steps (tolerance {tolerance}); the model was not written"
            )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    contract = ModelContract.from_metadata(meta, source=str(out_path))
    manifest = ModelManifest(
        contract=contract, onnx_sha256=sha256_file(out_path), onnx_file=out_path.name,
        extra={
            "model_config": model.cfg.to_dict(),
            "cnn_output": meta[META_CNN_OUTPUT],
            "gflops_per_frame": round(count_flops_per_frame(model.cfg) / 1e9, 3),
            "parameters": sum(p.numel() for p in model.parameters()),
            "parity_vs_torch_fp32": {**parity, "tolerance": PARITY_TOLERANCE[cfg.precision]},
            **({"scores": scores} if scores is not None else {}),
            **({"limits": cfg.limits} if cfg.limits else {}),
        },
    ).to_json()
    write_json_atomic(manifest_path(out_path), manifest)
    return out_path, manifest


def export_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by pretrain/finetune."),
    out: Path = typer.Option(..., "--out", help="Where to write the ONNX (manifest beside it)."),
    precision: str = typer.Option(PRECISION_FP32, help="fp32 (CPU-friendly) or fp16-cnn."),
    model_version: str = typer.Option("0.1.0", help="Version string stored in the metadata."),
    training_data: str = typer.Option("", help="What the model was trained on (metadata)."),
    parity_steps: int = typer.Option(500, help="Unrolled steps of the ONNX Runtime check."),
    seed: int = typer.Option(0, help="Seed of the parity frames."),
    scores: Path | None = typer.Option(
        None, help="evaluation.json of `train evaluate` to record in the manifest."),
    limits: str = typer.Option("", help="Known limits of the model (manifest text)."),
) -> None:
    """Export a checkpoint's step to a contract ONNX + manifest, after a parity check."""
    loaded = load_checkpoint(checkpoint)
    data = training_data or str(loaded.extra.get("training_data", ""))
    # a checkpoint that records no alignment predates it: trained on five-point crops
    alignment = str(loaded.extra.get("alignment", ALIGNMENT_FIVE_POINT))
    cfg = ExportConfig(precision=precision, model_version=model_version, training_data=data,
                       parity_steps=parity_steps, seed=seed, scores=scores, limits=limits,
                       alignment=alignment)
    path, manifest = export_onnx(loaded.model, out, cfg)
    parity = manifest["parity_vs_torch_fp32"]
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {manifest['contract']}, "
        f"{len(manifest['au_names'])} AUs, S={manifest['crop_size']}, H={manifest['state_size']}); "
        f"parity over {parity.get('steps', 0)} steps: max abs AU error "
        f"{parity.get('max_abs_au_error', float('nan')):.2e}"
    )
