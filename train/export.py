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
real-looking face frames (`rtau.bench.face_crops`: a public-domain portrait under small motion
and lighting change) and
compared with the torch FP32 step: the AUs, the head's output before the 0..5 clamp and the
recurrent state must each agree within tolerance, or the model is refused.

`--scores EVALUATION.json` (written by `python -m train evaluate`) and `--limits TEXT` put the
model's held-out scores and its known limits into the manifest, so a shipped model says what it
was measured on and what it cannot do. `ExportConfig.training` (set by `python -m train recipe`)
adds the `training` record: recipe, preset, resolved config, commit, stages and evaluation.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
from torch import nn

from rtau.bench import face_inputs_of, unrolled_parity
from rtau.contract import (
    ALIGNMENT_DEFAULT,
    ALIGNMENT_FIVE_POINT,
    GEOMETRY_LANDMARKS_XY,
    INPUT_GEOMETRY,
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
"""Max abs error over the unrolled parity run, per precision, of the AUs and of the unclamped
head output (intensity units) and of the recurrent state. The clamped AUs alone prove little:
on a neutral face about half of them are exactly 0 on both sides whatever the graph computes."""
PARITY_GATED = {"max_abs_au_error": "AUs", "max_abs_head_error": "the unclamped head output",
                "max_abs_state_error": "the recurrent state"}
PARITY_BATCH = 2
CLAMP_OP = "Clip"
"""The op that clamps the head output to 0..5 in the exported graph."""
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
    alignment: str = ALIGNMENT_DEFAULT  # of the training crops; the CLI takes the checkpoint's
    training: dict | None = None  # how the model was made (`python -m train recipe`), verbatim


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

    def forward(self, *tensors: torch.Tensor):
        # (image?, geometry?, state): the model's inputs in contract order, state last
        named = dict(zip((*model_inputs(self.model.cfg), INPUT_STATE), tensors, strict=True))
        return self.model.step(named.get(INPUT_IMAGE), named[INPUT_STATE],
                               named.get(INPUT_GEOMETRY))


def model_inputs(cfg) -> tuple[str, ...]:
    """The contract's per-face input names a model of `cfg` takes, in contract order."""
    return tuple(name for name, used in ((INPUT_IMAGE, cfg.uses_image),
                                         (INPUT_GEOMETRY, cfg.uses_geometry)) if used)


def _trace_to_onnx(model: AUModel) -> bytes:
    cfg = model.cfg
    names = model_inputs(cfg)
    example = face_inputs_of(cfg, 2)
    args = tuple(torch.from_numpy(example[n]).contiguous() for n in names) + (
        torch.zeros(2, cfg.state_size),)
    buffer = io.BytesIO()
    # torch.onnx.export leaves every submodule in the *wrapper's* mode afterwards: a wrapper in
    # train mode would silently switch the caller's model to batch-statistics BatchNorm.
    wrapper = _StepModule(model).eval()
    dynamic = {name: {0: "B"} for name in (*names, INPUT_STATE, OUTPUT_AUS, OUTPUT_STATE)}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export; it still gives the
        # plainest graph (Conv+BN folded, Gemm cell) and needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, buffer,
            input_names=[*names, INPUT_STATE], output_names=[OUTPUT_AUS, OUTPUT_STATE],
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
    if len(pools) != int(model.cfg.uses_image):
        raise ExportError(f"expected {int(model.cfg.uses_image)} global pooling node (the CNN's),"
                          f" found {len(pools)}")
    contract = ModelContract(
        crop_size=model.cfg.crop_size, state_size=model.cfg.state_size,
        au_names=tuple(model.cfg.au_names), model_version=cfg.model_version,
        training_data=cfg.training_data or "unspecified", precision=PRECISION_FP32,
        alignment=cfg.alignment, inputs=model_inputs(model.cfg),
        geometry=GEOMETRY_LANDMARKS_XY if model.cfg.uses_geometry else "",
    )
    meta = contract.to_metadata()
    if pools:
        meta[META_CNN_OUTPUT] = pools[0].output[0]
    meta[META_MODEL_CONFIG] = json.dumps(model.cfg.to_dict())
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "rtau"
    proto.doc_string = (f"rtau stateful AU step: ({', '.join(contract.inputs)}, state) -> "
                        "(aus, state_out)")
    if cfg.precision == PRECISION_FP16_CNN:
        if not model.cfg.uses_image:
            raise ExportError(f"{PRECISION_FP16_CNN} needs a CNN; a geometry-only model is "
                              f"exported {PRECISION_FP32}")
        proto = convert_cnn_to_fp16(proto)
    elif cfg.precision != PRECISION_FP32:
        raise ExportError(f"precision must be {PRECISION_FP32} or {PRECISION_FP16_CNN}")
    onnx.checker.check_model(proto)
    return proto


def _with_head_output(onnx_path: Path) -> bytes:
    """The ONNX with the AU clamp's input (the unclamped head output) as a third output."""
    import onnx

    proto = onnx.load(str(onnx_path))
    clamps = [n for n in proto.graph.node if OUTPUT_AUS in n.output]
    if len(clamps) != 1 or clamps[0].op_type != CLAMP_OP:
        raise ExportError(f"expected `{OUTPUT_AUS}` to come from one {CLAMP_OP} node")
    proto.graph.output.append(onnx.helper.make_tensor_value_info(
        clamps[0].input[0], onnx.TensorProto.FLOAT, None))
    return proto.SerializeToString()


def torch_step(model: AUModel) -> Callable:
    """`model.step` in FP32 as an `rtau.bench.StepFn` over numpy arrays: (images, state,
    geometry) -> (aus, state, unclamped head output)."""

    def tensor(array):
        return None if array is None else torch.from_numpy(array)

    def step(images: np.ndarray | None, state: np.ndarray, geometry: np.ndarray | None = None):
        with torch.no_grad():
            aus, h = model.step(tensor(images), torch.from_numpy(state), tensor(geometry))
            hidden = h[..., : model.cfg.hidden_size]
            return aus.numpy(), h.numpy(), model.raw_readout(hidden).numpy()

    return step


def check_parity(model: AUModel, onnx_path: Path, steps: int, seed: int = 0) -> dict:
    """Unroll torch (FP32) and ONNX Runtime side by side (`rtau.bench.unrolled_parity`): max and
    mean abs errors of the AUs, max abs errors of the unclamped head output and of the state."""
    import onnxruntime as ort

    was_training = model.training
    model.eval()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(_with_head_output(onnx_path), options,
                                   providers=["CPUExecutionProvider"])
    outputs = [OUTPUT_AUS, OUTPUT_STATE, session.get_outputs()[-1].name]

    def onnx_step(images: np.ndarray | None, state: np.ndarray,
                  geometry: np.ndarray | None = None):
        feeds = {INPUT_IMAGE: images, INPUT_GEOMETRY: geometry, INPUT_STATE: state}
        return session.run(outputs, {k: v for k, v in feeds.items() if v is not None})

    cfg = model.cfg
    runs = [face_inputs_of(cfg, steps, seed + i) for i in range(PARITY_BATCH)]
    stacked = {name: np.stack([r[name] for r in runs], axis=1) for name in runs[0]}
    try:
        return unrolled_parity(onnx_step, torch_step(model), stacked.get(INPUT_IMAGE),
                               cfg.state_size, stacked.get(INPUT_GEOMETRY))
    finally:
        model.train(was_training)


def parity_gate(parity: dict, precision: str) -> None:
    """ExportError naming every quantity of `parity` (check_parity's dict) over tolerance."""
    tolerance = PARITY_TOLERANCE[precision]
    over = [f"{what} by {parity[key]:.4g}" for key, what in PARITY_GATED.items()
            if parity[key] > tolerance]
    if over:
        raise ExportError(f"ONNX Runtime and torch disagree over {parity['steps']} steps: "
                          f"{', '.join(over)} (tolerance {tolerance}); the model was not written")


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
        if parity:
            parity_gate(parity, cfg.precision)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    contract = ModelContract.from_metadata(meta, source=str(out_path))
    manifest = ModelManifest(
        contract=contract, onnx_sha256=sha256_file(out_path), onnx_file=out_path.name,
        extra={
            "model_config": model.cfg.to_dict(),
            **({"cnn_output": meta[META_CNN_OUTPUT]} if META_CNN_OUTPUT in meta else {}),
            "gflops_per_frame": round(count_flops_per_frame(model.cfg) / 1e9, 3),
            "parameters": sum(p.numel() for p in model.parameters()),
            "parity_vs_torch_fp32": {**parity, "tolerance": PARITY_TOLERANCE[cfg.precision]},
            **({"scores": scores} if scores is not None else {}),
            **({"limits": cfg.limits} if cfg.limits else {}),
            **({"training": cfg.training} if cfg.training else {}),
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
    # a checkpoint that records no alignment predates it: trained on five-point crops
    alignment = str(loaded.extra.get("alignment", ALIGNMENT_FIVE_POINT))
    cfg = ExportConfig(precision=precision, model_version=model_version,
                       training_data=training_data,
                       parity_steps=parity_steps, seed=seed, scores=scores, limits=limits,
                       alignment=alignment)
    path, manifest = export_onnx(loaded.model, out, cfg)
    parity = manifest["parity_vs_torch_fp32"]
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {manifest['contract']}, "
        f"{len(manifest['au_names'])} AUs, S={manifest['crop_size']}, H={manifest['state_size']}); "
        f"parity over {parity.get('steps', 0)} steps: max abs error AUs "
        f"{parity.get('max_abs_au_error', float('nan')):.2e}, unclamped head "
        f"{parity.get('max_abs_head_error', float('nan')):.2e}, state "
        f"{parity.get('max_abs_state_error', float('nan')):.2e}"
    )
