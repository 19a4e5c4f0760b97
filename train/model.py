"""The rtau spatio-temporal model: a ResNet-style CNN per frame, a GRU cell over time, an AU head.

Shapes (B batch, T time, S crop side, K AUs, G geometry features, H state):
- input frames are aligned BGR crops, uint8 (or float in 0..255), channels last: [..., S, S, 3];
  geometry is `rtau.geometry.geometry_features` of each frame's landmarks, float32[..., G];
- `forward_sequence(images[B, T, S, S, 3] | None, state[B, H] | None, geometry[B, T, G] | None,
  present[B, T] | None) -> (aus[B, T, K], state[B, H])` is the training entry point;
- `step(image[B, S, S, 3] | None, state[B, H], geometry[B, G] | None) -> (aus[B, K],
  state[B, H])` is one timestep, the function exported to ONNX (`train.export`). Unrolling
  `step` equals `forward_sequence`.

`ModelConfig.inputs` says what a frame gives the model: "image" (the crop, the CNN), "geometry"
(landmarks alone, no CNN) or "image+geometry" (both, their features concatenated before the
GRU). A geometry model keeps a running baseline of the face's own geometry in its state: the
state is [GRU hidden (hidden_size), baseline mean (G), frames counted (1)], so
H = hidden_size + G + 1. Each frame the count rises by one up to `baseline_frames` and the mean
moves toward the frame's geometry by 1 / count: the mean of the first frames, then an average
that forgets with time constant `baseline_frames`. The encoder sees the frame's geometry minus
that baseline: what the face does now, against what it usually looks like. Identity lives in
the absolute shape, which a few training people cannot teach, and an expression in the change;
`geometry_absolute` adds the absolute shape as well (in a trial outside this code, a
geometry-only GRU on unseen synthetic identities scored mean ICC 0.77 from the change alone and
0.69 with the absolute shape beside it, which lets the model learn its training people).
`present` (training only: 0 where no face was found) stops a frame from moving the baseline; at
run time a face without landmarks is not stepped at all.
A baseline prior (`baseline_prior_frames` k > 0): the baseline of a new face starts at a
population neutral shape (the `baseline_prior` buffer, set from the training videos before
training: `train.data.geometry.geometry_prior`) worth k frames, so the first frames of a face
(a still photo, a video that starts mid-smile) are read against a typical neutral face instead
of against themselves. The state then holds the baseline's offset from the prior, so the zero
state is still a new face: baseline = prior + offset, and each frame moves it toward the frame
by 1 / (count + k). With k = 0 (older models) there is no prior and the rule is the one above.
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
from rtau.geometry import GEOMETRY_SIZE

PIXEL_MEAN = 127.5
PIXEL_STD = 64.0
STAGE_MULTIPLIERS = (1, 2, 4, 8)
BASE_CHANNELS = 64
CHECKPOINT_FORMAT = "rtau-checkpoint/1"
NORMS = ("batch", "group")
INPUTS_IMAGE = "image"
INPUTS_GEOMETRY = "geometry"
INPUTS_BOTH = "image+geometry"
INPUT_KINDS = (INPUTS_IMAGE, INPUTS_GEOMETRY, INPUTS_BOTH)
GEOMETRY_LAYER = 256
DELTA_SCALE = 10.0
"""Geometry minus baseline is ~+-0.05 crop sides; x10 brings it to the range of the rest."""
RAW_SCALE = 4.0
"""Geometry itself is ~+-0.5 crop sides (`rtau.geometry`)."""
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
    inputs: "image" | "geometry" | "image+geometry" (see the module docstring).
    geometry_features: width of the geometry encoder's output (the GRU input it adds).
    baseline_frames: the running geometry baseline's memory in frames (see the module docstring).
    geometry_absolute: the encoder also sees the absolute geometry, not only its change.
    baseline_prior_frames: the weight in frames of the population-neutral prior the baseline
      starts from (0: no prior; see the module docstring).
    absolute_fade_frames: F > 0 gives the encoder a second view of a new face, its geometry
      minus the population-neutral prior, weighted 1 - count / F (0 from frame F on).
    """

    crop_size: int = 112
    width: float = 0.375
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    hidden_size: int = 256
    au_names: tuple[str, ...] = DISFA_AUS
    dropout: float = 0.1
    norm: str = "batch"
    inputs: str = INPUTS_IMAGE
    geometry_features: int = 128
    baseline_frames: int = 300
    geometry_absolute: bool = False
    baseline_prior_frames: int = 0
    absolute_fade_frames: int = 0

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"inputs must be one of {INPUT_KINDS}, got {self.inputs!r}")
        if self.baseline_frames < 1:
            raise ValueError(f"baseline_frames must be at least 1, got {self.baseline_frames}")
        if self.absolute_fade_frames < 0:
            raise ValueError(f"absolute_fade_frames must be >= 0, got {self.absolute_fade_frames}")
        if self.baseline_prior_frames < 0:
            raise ValueError(
                f"baseline_prior_frames must be >= 0, got {self.baseline_prior_frames}")

    @property
    def uses_image(self) -> bool:
        return self.inputs in (INPUTS_IMAGE, INPUTS_BOTH)

    @property
    def uses_geometry(self) -> bool:
        return self.inputs in (INPUTS_GEOMETRY, INPUTS_BOTH)

    @property
    def geometry_size(self) -> int:
        """G, the geometry input width (0 for an image-only model)."""
        return GEOMETRY_SIZE if self.uses_geometry else 0

    @property
    def state_size(self) -> int:
        """H of the step contract: the GRU hidden state plus the geometry baseline, if any."""
        return self.hidden_size + (self.geometry_size + 1 if self.uses_geometry else 0)

    @property
    def gru_input_size(self) -> int:
        return (self.feature_size if self.uses_image else 0) + (
            self.geometry_features if self.uses_geometry else 0)

    @property
    def channels(self) -> tuple[int, ...]:
        base = max(8, int(round(BASE_CHANNELS * self.width)))
        return tuple(base * m for m in STAGE_MULTIPLIERS[: len(self.blocks)])

    @property
    def feature_size(self) -> int:
        return self.channels[-1]

    @classmethod
    def tiny(cls, au_names: tuple[str, ...] = DISFA_AUS, crop_size: int = 112,
             norm: str = "batch", inputs: str = INPUTS_IMAGE) -> ModelConfig:
        """A very small model for tests: same structure, a fraction of the cost."""
        return cls(crop_size=crop_size, width=0.125, blocks=(1, 1, 1, 1), hidden_size=32,
                   au_names=au_names, norm=norm, inputs=inputs, geometry_features=32)

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


class GeometryEncoder(nn.Module):
    """geometry [N, G] and its baseline [N, G] -> features [N, geometry_features]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.absolute = cfg.geometry_absolute
        self.faded = cfg.absolute_fade_frames > 0
        inputs = cfg.geometry_size * (1 + self.absolute + self.faded)
        self.net = nn.Sequential(
            nn.Linear(inputs, GEOMETRY_LAYER), nn.ReLU(),
            nn.Linear(GEOMETRY_LAYER, cfg.geometry_features), nn.ReLU(),
        )

    def forward(self, geometry: torch.Tensor, baseline: torch.Tensor,
                faded: torch.Tensor | None = None) -> torch.Tensor:
        """faded [N, G]: the fading difference from the prior (absolute_fade_frames models)."""
        parts = [(geometry - baseline) * DELTA_SCALE]
        if self.absolute:
            parts.append(geometry * RAW_SCALE)
        if self.faded:
            parts.append(faded * DELTA_SCALE)
        return self.net(parts[0] if len(parts) == 1 else torch.cat(parts, -1))


class AUModel(nn.Module):
    """Backbone and/or geometry encoder + GRU cell + AU head. See the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg) if cfg.uses_image else None
        self.geometry_encoder = GeometryEncoder(cfg) if cfg.uses_geometry else None
        self.gru = GRUCell(cfg.gru_input_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, len(cfg.au_names))
        if cfg.uses_geometry and (cfg.baseline_prior_frames > 0 or cfg.absolute_fade_frames > 0):
            self.register_buffer("baseline_prior", torch.zeros(cfg.geometry_size))
        else:
            self.baseline_prior = None

    @property
    def prior_in_baseline(self) -> bool:
        """Whether the running baseline itself starts at the prior (baseline_prior_frames)."""
        return self.has_prior and self.cfg.baseline_prior_frames > 0

    def faded_absolute(self, geometry: torch.Tensor, count: torch.Tensor) -> torch.Tensor | None:
        """(geometry - prior) * clamp(1 - count / F, 0, 1) [N, G], count [N, 1] the frames seen
        including this one; None without absolute_fade_frames."""
        if self.cfg.absolute_fade_frames <= 0:
            return None
        weight = torch.clamp(1.0 - count / float(self.cfg.absolute_fade_frames), 0.0, 1.0)
        return (geometry - self.baseline_prior) * weight

    @property
    def has_prior(self) -> bool:
        return self.baseline_prior is not None

    def set_baseline_prior(self, prior: torch.Tensor) -> None:
        """Set the population-neutral geometry float32[G] (models with baseline_prior_frames)."""
        if not self.has_prior:
            raise ValueError("this model has no baseline prior (baseline_prior_frames and "
                             "absolute_fade_frames are 0)")
        self.baseline_prior.copy_(torch.as_tensor(prior, dtype=torch.float32))

    def effective_baseline(self, offset: torch.Tensor) -> torch.Tensor:
        """The baseline the encoder compares against, from the state's baseline part [..., G]."""
        return offset + self.baseline_prior if self.prior_in_baseline else offset

    def init_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """The zero state of `batch` new faces, [B, H] (H = cfg.state_size)."""
        return torch.zeros(batch, self.cfg.state_size, device=device)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame CNN features: images [N, S, S, 3] -> [N, F] (image models only). A frozen
        CNN (no parameter needs a gradient) runs without an autograd graph."""
        if not any(p.requires_grad for p in self.backbone.parameters()):
            with torch.no_grad():
                return self.backbone(normalise(images))
        return self.backbone(normalise(images))

    def split_state(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """state [..., H] -> (GRU hidden [..., hidden], baseline mean [..., G], count [..., 1]);
        the last two are empty for an image-only model."""
        k, g = self.cfg.hidden_size, self.cfg.geometry_size
        return state[..., :k], state[..., k : k + g], state[..., k + g :]

    def update_baseline(
        self, geometry: torch.Tensor, mean: torch.Tensor, count: torch.Tensor,
        present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame of the running baseline: geometry [N, G], mean [N, G] (the state's part: the
        offset from the prior in a model with one), count [N, 1], present [N, 1] (1: the frame
        counts) -> (mean, count)."""
        # plain scalars, so the exported step is Add / Clip / Div (no Shape or Min nodes)
        step = 1.0 if present is None else present
        count = torch.clamp(count + step, max=float(self.cfg.baseline_frames))
        if self.prior_in_baseline:
            k = float(self.cfg.baseline_prior_frames)
            target = geometry - self.baseline_prior
            return mean + step * (target - mean) / (count + k), count
        mean = mean + step * (geometry - mean) / torch.clamp(count, min=1.0)
        return mean, count

    def frame_features(self, images: torch.Tensor | None, geometry: torch.Tensor | None,
                       baseline: torch.Tensor | None, count: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """GRU inputs of N frames [N, gru_input_size] from images [N, S, S, 3] and geometry and
        its baseline [N, G] (and the frames counted, [N, 1], for absolute_fade_frames), each
        given when the model uses it."""
        parts = []
        if self.cfg.uses_image:
            parts.append(self.features(images))
        if self.cfg.uses_geometry:
            faded = None if count is None else self.faded_absolute(geometry, count)
            parts.append(self.geometry_encoder(geometry, baseline, faded))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def baselines(
        self, geometry: torch.Tensor, state: torch.Tensor | None, present: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The baseline after each of T frames: geometry [B, T, G], state [B, H] | None, present
        [B, T] | None -> (means [B, T, G], last mean [B, G], last count [B, 1]), each mean the
        state's part (the offset from the prior where the model has one)."""
        b, t, _ = geometry.shape
        if state is None:
            state = self.init_state(b, geometry.device)
        means, _, mean, count = self._baseline_track(geometry, state, present)
        return means, mean, count

    def _baseline_track(
        self, geometry: torch.Tensor, state: torch.Tensor | None, present: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`baselines` plus the count after each frame: (means [B, T, G], counts [B, T, 1],
        last mean, last count)."""
        b, t, _ = geometry.shape
        if state is None:
            state = self.init_state(b, geometry.device)
        _, mean, count = self.split_state(state)
        means, counts = [], []
        for i in range(t):
            p = None if present is None else present[:, i : i + 1].to(geometry.dtype)
            mean, count = self.update_baseline(geometry[:, i], mean, count, p)
            means.append(mean)
            counts.append(count)
        return torch.stack(means, 1), torch.stack(counts, 1), mean, count

    def encode_sequence(
        self, images: torch.Tensor | None, state: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None, present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame GRU inputs of a sequence: images [B, T, S, S, 3] and/or geometry [B, T, G]
        (state [B, H] carries the geometry baseline in) -> (features [B, T, F'], baseline part
        of the final state [B, G + 1] or None for an image-only model)."""
        ref = images if images is not None else geometry
        b, t = ref.shape[:2]
        flat_images = None if images is None else images.reshape(b * t, *images.shape[2:])
        flat_geometry = flat_base = flat_count = tail = None
        if self.cfg.uses_geometry:
            means, counts, mean, count = self._baseline_track(geometry, state, present)
            flat_geometry = geometry.reshape(b * t, -1)
            flat_base = self.effective_baseline(means.reshape(b * t, -1))
            flat_count = counts.reshape(b * t, 1)
            tail = torch.cat([mean, count], -1)
        feats = self.frame_features(flat_images, flat_geometry, flat_base, flat_count)
        return feats.reshape(b, t, -1), tail

    def raw_readout(self, h: torch.Tensor) -> torch.Tensor:
        """Unclamped AU intensities from GRU states [..., H] -> [..., K] (the training target)."""
        return self.head(self.dropout(h))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """AU intensities 0..5 from GRU states [..., H] -> [..., K]."""
        return self.raw_readout(h).clamp(0.0, INTENSITY_MAX)

    def step(self, image: torch.Tensor | None, state: torch.Tensor,
             geometry: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One timestep: image [B, S, S, 3] and/or geometry [B, G], state [B, H] -> (aus [B, K],
        state [B, H])."""
        h, mean, count = self.split_state(state)
        if not self.cfg.uses_geometry:
            h = self.gru(self.features(image), h)
            return self.readout(h), h
        mean, count = self.update_baseline(geometry, mean, count)
        h = self.gru(self.frame_features(image, geometry, self.effective_baseline(mean), count), h)
        return self.readout(h), torch.cat([h, mean, count], -1)

    def run_gru(
        self, feats: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU over per-frame features [B, T, F] -> (all hidden states [B, T, hidden], last
        hidden [B, hidden]); state: [B, hidden] or a full step state [B, H] (its hidden part)."""
        b, t, _ = feats.shape
        k = self.cfg.hidden_size
        h = torch.zeros(b, k, device=feats.device) if state is None else state[..., :k]
        gx = self.gru.input_proj(feats)
        states = []
        for i in range(t):
            h = self.gru.cell(gx[:, i], h)
            states.append(h)
        return torch.stack(states, dim=1), h

    def sequence_outputs(
        self, images: torch.Tensor | None, state: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None, present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(unclamped AU outputs [B, T, K], final state [B, H]) of a sequence (see
        forward_sequence); training takes its loss on these."""
        feats, tail = self.encode_sequence(images, state, geometry, present)
        states, h = self.run_gru(feats, state)
        final = h if tail is None else torch.cat([h, tail], -1)
        return self.raw_readout(states), final

    def forward_sequence(
        self, images: torch.Tensor | None, state: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None, present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, T, S, S, 3] and/or geometry [B, T, G] -> (aus [B, T, K], final state
        [B, H]); present [B, T]: 0 where no face was found (the baseline skips the frame)."""
        raw, final = self.sequence_outputs(images, state, geometry, present)
        return raw.clamp(0.0, INTENSITY_MAX), final

    forward = forward_sequence


def count_flops_per_frame(cfg: ModelConfig) -> int:
    """Multiply-accumulates x 2 of the backbone for one frame (convs only; the rest is small).
    0 for a geometry-only model (no CNN)."""
    if not cfg.uses_image:
        return 0
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
