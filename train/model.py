"""The rtau spatio-temporal model: a ResNet-style CNN per frame, a GRU cell over time, an AU head.

Shapes (B batch, T time, S crop side, K AUs, H hidden):
- input frames are aligned BGR crops, uint8 (or float in 0..255), channels last: [..., S, S, 3];
- `forward_sequence(images[B, T, S, S, 3], state[B, H] | None) -> (aus[B, T, K], state[B, H])`
  is the training entry point;
- `step(image[B, S, S, 3], state[B, H]) -> (aus[B, K], state[B, H])` is one timestep, the
  function exported to ONNX (`train.export`). Unrolling `step` equals `forward_sequence`.
AU intensities are the head's linear output clamped to 0..5 (`readout`). Training takes its loss
on the unclamped `raw_readout`: AU labels are mostly 0, and a squashing output (5 * sigmoid)
drives every unit into saturation at 0 early on, where its gradient vanishes and the model
predicts a constant; a clamp has the same range at inference without that trap.

Normalisation and the NHWC -> NCHW change live inside the model so that the exported graph
takes raw uint8 crops; the uint8 -> float cast comes *before* the transpose because TensorRT
rejects a Transpose on UINT8. The GRU cell is written out as Linear/Sigmoid/Tanh (no nn.GRU) so
that ONNX gets plain MatMul/Sigmoid/Tanh nodes and the cell can stay FP32 when the CNN is FP16.

Normalisation (`ModelConfig.norm`): "batch" (BatchNorm, the shipped default model) or "group"
(GroupNorm: statistics of each frame alone). BatchNorm in train mode mixes the frames of a batch,
so in stage 2 the gradient of a labeled frame's loss would also reach the unlabeled frames (and
other sequences) through the batch statistics; GroupNorm does not couple frames, and behaves the
same in train and eval mode. Stage 2 freezes BatchNorm statistics when sequences hold unlabeled
frames (train/finetune.py). Stage 1 builds "group" models by default (batch statistics would
also let the two contrasted views see each other); stage 2 from scratch defaults to "batch"
(the shipped model) and takes `--norm group` for sparse labels.

Checkpoints carry their `ModelConfig`: `load_checkpoint(path)` rebuilds the model from them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from rtau.aus import DISFA_AUS, INTENSITY_MAX

PIXEL_MEAN = 127.5
PIXEL_STD = 64.0
STAGE_MULTIPLIERS = (1, 2, 4, 8)
BASE_CHANNELS = 64
CHECKPOINT_FORMAT = "rtau-checkpoint/1"
NORMS = ("batch", "group")
CHANNELS_PER_GROUP = 8  # GroupNorm: 8 channels a group (1 group in the tiny stem: LayerNorm-like)
LEGACY_NORM = "batch"  # checkpoints written before `norm` existed are BatchNorm models


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the model; stored in every checkpoint and in ONNX metadata.

    width: multiplier of the ResNet-18 channel widths (64, 128, 256, 512). The default 0.375 with a
      stride-2 stem and no max-pool costs about 0.48 GFLOP (2 x MAC) per 112 px frame.
    blocks: basic blocks per stage (ResNet-18: 2, 2, 2, 2).
    hidden_size: H, the GRU state width.
    norm: "batch" | "group" (see the module docstring).
    """

    crop_size: int = 112
    width: float = 0.375
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    hidden_size: int = 256
    au_names: tuple[str, ...] = DISFA_AUS
    dropout: float = 0.1
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def channels(self) -> tuple[int, ...]:
        base = max(8, int(round(BASE_CHANNELS * self.width)))
        return tuple(base * m for m in STAGE_MULTIPLIERS[: len(self.blocks)])

    @property
    def feature_size(self) -> int:
        return self.channels[-1]

    @classmethod
    def tiny(cls, au_names: tuple[str, ...] = DISFA_AUS, crop_size: int = 112,
             norm: str = "batch") -> ModelConfig:
        """A very small model for tests: same structure, a fraction of the cost."""
        return cls(crop_size=crop_size, width=0.125, blocks=(1, 1, 1, 1), hidden_size=32,
                   au_names=au_names, norm=norm)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        d["au_names"] = list(self.au_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = {"norm": LEGACY_NORM, **d}
        if "blocks" in d:
            d["blocks"] = tuple(d["blocks"])
        if "au_names" in d:
            d["au_names"] = tuple(d["au_names"])
        return cls(**d)


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layer of `kind` ("batch" | "group") over NCHW maps of `channels`."""
    if kind == "group":
        return nn.GroupNorm(max(1, channels // CHANNELS_PER_GROUP), channels)
    return nn.BatchNorm2d(channels)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a norm each, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class Backbone(nn.Module):
    """Per-frame feature extractor: float NCHW normalised -> features [N, C]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        chans = cfg.channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, chans[0], 3, 2, 1, bias=False), make_norm(cfg.norm, chans[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        cin = chans[0]
        for i, (cout, n) in enumerate(zip(chans, cfg.blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1, cfg.norm))
                cin = cout
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return x.mean(dim=(2, 3))


class GRUCell(nn.Module):
    """GRU cell with the torch.nn.GRUCell equations, written as Linear/Sigmoid/Tanh.

    x [N, F], h [N, H] -> h' [N, H]. `input_proj` can be applied to all T frames at once in
    `forward_sequence`; `cell(gx, h)` then consumes the precomputed input projection.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input_proj = nn.Linear(input_size, 3 * hidden_size)
        self.hidden_proj = nn.Linear(hidden_size, 3 * hidden_size)

    def cell(self, gx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gh = self.hidden_proj(h)
        # Constant slices, not chunk(): the exported graph then needs no Shape/Gather nodes.
        k = self.hidden_size
        xr, xz, xn = gx[..., :k], gx[..., k : 2 * k], gx[..., 2 * k :]
        hr, hz, hn = gh[..., :k], gh[..., k : 2 * k], gh[..., 2 * k :]
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell(self.input_proj(x), h)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8/float NHWC BGR in 0..255 -> float32 NCHW, centred. Cast before the transpose."""
    x = images.to(torch.float32)
    x = (x - PIXEL_MEAN) / PIXEL_STD
    return x.permute(0, 3, 1, 2)


class AUModel(nn.Module):
    """Backbone + GRU cell + AU head. See the module docstring for shapes."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.gru = GRUCell(cfg.feature_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, len(cfg.au_names))

    def init_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.cfg.hidden_size, device=device)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame features: images [N, S, S, 3] -> [N, F]."""
        return self.backbone(normalise(images))

    def raw_readout(self, h: torch.Tensor) -> torch.Tensor:
        """Unclamped AU intensities from GRU states [..., H] -> [..., K] (the training target)."""
        return self.head(self.dropout(h))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """AU intensities 0..5 from GRU states [..., H] -> [..., K]."""
        return self.raw_readout(h).clamp(0.0, INTENSITY_MAX)

    def step(self, image: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One timestep: image [B, S, S, 3], state [B, H] -> (aus [B, K], state [B, H])."""
        h = self.gru(self.features(image), state)
        return self.readout(h), h

    def run_gru(
        self, feats: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU over per-frame features [B, T, F] -> (all states [B, T, H], last state [B, H])."""
        b, t, _ = feats.shape
        h = self.init_state(b, feats.device) if state is None else state
        gx = self.gru.input_proj(feats)
        states = []
        for i in range(t):
            h = self.gru.cell(gx[:, i], h)
            states.append(h)
        return torch.stack(states, dim=1), h

    def forward_sequence(
        self, images: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, T, S, S, 3] -> (aus [B, T, K], final state [B, H])."""
        b, t = images.shape[:2]
        feats = self.features(images.reshape(b * t, *images.shape[2:])).reshape(b, t, -1)
        states, h = self.run_gru(feats, state)
        return self.readout(states), h

    forward = forward_sequence


def count_flops_per_frame(cfg: ModelConfig) -> int:
    """Multiply-accumulates x 2 of the backbone for one frame (convs only; the rest is small)."""
    flops = 0
    size = cfg.crop_size // 2
    chans = cfg.channels
    flops += 2 * 3 * 3 * 3 * chans[0] * size * size
    cin = chans[0]
    for i, (cout, n) in enumerate(zip(chans, cfg.blocks, strict=True)):
        for j in range(n):
            stride = 2 if (j == 0 and i > 0) else 1
            size = (size + stride - 1) // stride
            flops += 2 * 9 * cin * cout * size * size + 2 * 9 * cout * cout * size * size
            if stride != 1 or cin != cout:
                flops += 2 * cin * cout * size * size
            cin = cout
    return flops


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the rebuilt model and whatever the trainer stored beside it."""

    model: AUModel
    step: int = 0
    extra: dict = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike, model: AUModel, step: int = 0, **extra) -> None:
    """Write {format, config, model weights, step, extra} atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.cfg.to_dict(),
        "model": model.state_dict(),
        "step": step,
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint from its stored config (weights_only loading)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable rtau checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an rtau checkpoint (format {CHECKPOINT_FORMAT} expected)")
    model = AUModel(ModelConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return Checkpoint(model=model, step=int(payload.get("step", 0)), extra=payload.get("extra", {}))
