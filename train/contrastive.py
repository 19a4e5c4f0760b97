"""The stage 1 objectives, as nn.Modules returning (logits, labels) for cross-entropy.

    objective = DynamicsContrast(AUModel(cfg), ContrastConfig(method="dynamics"))
    terms = objective(view_a, view_b, video, frame)    # [(name, weight, logits, labels), ...]
    loss = sum(w * F.cross_entropy(logits, labels) for _, w, logits, labels in terms)

Why not clip-vs-other-video contrast alone: with few videos the cheapest way to tell clips of
different videos apart is to recognise the video (identity, lighting, background), which AU
intensity does not need (METHOD.md, "Stage 1 objective, revised"). The dynamics objectives make
identity useless: every batch holds several clips of each video, far apart in time, and the
negatives of an anchor are frames of the *same video at other times* as well as of other
videos. A key of the same video within `margin` frames of the positive is masked (never an
accidental negative: it shows nearly the same face); beyond the margin it is a deliberate
temporal negative.

Inputs of DynamicsContrast: two augmentations of the same clips, view_a and view_b, each a
`ModelInputs` (train/data/geometry.py) of what the model takes: images float or uint8
[B, T, S, S, 3] and/or geometry float32 [B, T, G] with present [B, T] and the state [B, H]
that carries each clip's geometry baseline in; video int64[B] (clips with equal values come
from one video); frame int64[B, T] (the frame index of every frame in its video). Frame
embeddings are normalise(frame_projector(frame_features)) [B*T, D] of view_b (the keys), where
the frame features are the GRU inputs (CNN features and/or the geometry encoder's, which sees
the change from the face's running baseline). So the same objective pretrains image models
and geometry models: for geometry the two views differ by landmark noise and a small head
turn (train/augment.py, `GeometryViews`), and a frame must be told apart from the same face's
other expressions.
- "frame" (time-contrastive, TCN style): the embedding of frame (b, t) in view_a must pick the
  same frame in view_b among all frames of the batch (both directions).
- "cpc" (predictive, CPC / DPC style, the natural fit for a GRU): the GRU state after frame t of
  view_a, through one linear predictor per horizon k = 1..K, must pick the key of frame t + k
  among all frames of the batch.
- "dynamics": both terms, weighted by frame_weight and predictive_weight.
Shortcuts this guards against, and where: identical sensor noise in the two views of one frame
(each view gets its own pixel noise and its own per-frame colour jitter: train/augment.py,
`noise_std`, `per_frame_colour`), smooth pose and lighting tracks that would tell times apart
(independent geometric jitter per view; per-frame photometric jitter), and same-video
accidental negatives (the margin mask).

The clip-level objectives of the first design remain for comparison (`ClipContrast`):
- "simclr": two nearby clips of one video are a positive pair, in-batch negatives over the 2B
  embeddings of the GRU state at the clip end (gathered across ranks under torchrun);
- "moco": a momentum copy of encoder + projector embeds the keys, a queue supplies negatives.
They contrast *videos*, and identity solves them; yet "simclr" stays the default, because the
linear probe measured it best (by a small margin; README, "Which stage 1 objective").
`benchmarks/contrastive_methods.py` measures every method by the linear probe of its features
on unseen identities (results in `benchmarks/results/contrastive_methods-*.md`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from train.data.geometry import ModelInputs
from train.model import AUModel

DYNAMICS_METHODS = ("dynamics", "cpc", "frame")
CLIP_METHODS = ("simclr", "moco")
METHODS = DYNAMICS_METHODS + CLIP_METHODS
MASKED_LOGIT = -1e4  # the self-similarity of an anchor; large negative, finite in fp16 too


@dataclass(frozen=True)
class ContrastConfig:
    """method: one of METHODS; temperature of the softmax; projection: -> hidden -> dim.

    horizons (K), margin (frames), frame_weight, predictive_weight: the dynamics methods.
    queue_size and momentum are used by moco only.
    """

    method: str = "simclr"
    temperature: float = 0.1
    projection_dim: int = 128
    projection_hidden: int = 256
    queue_size: int = 4096
    momentum: float = 0.99
    horizons: int = 3
    margin: int = 3
    frame_weight: float = 1.0
    predictive_weight: float = 1.0

    @property
    def dynamics(self) -> bool:
        return self.method in DYNAMICS_METHODS

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"contrastive method must be one of {METHODS}, got {self.method!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.horizons < 1 or self.margin < 0:
            raise ValueError("horizons must be >= 1 and margin >= 0")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed gradient.

    all_reduce (supported by every backend, gloo included) instead of reduce_scatter.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(x: torch.Tensor, with_grad: bool) -> tuple[torch.Tensor, int]:
    """x [N, D] of every rank concatenated in rank order, and this rank's row offset."""
    if not distributed():
        return x, 0
    offset = dist.get_rank() * x.shape[0]
    if with_grad:
        return _GatherWithGrad.apply(x), offset
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts), offset


class ProjectionHead(nn.Module):
    """Features [N, C] -> embedding [N, D] (not normalised): Linear, ReLU, Linear."""

    def __init__(self, in_size: int, inner: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_size, inner), nn.ReLU(), nn.Linear(inner, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def embed_clips(encoder: AUModel, projector: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """clips [B, T, S, S, 3] -> unit embeddings [B, D] of the GRU state after the last frame."""
    b, t = clips.shape[:2]
    feats = encoder.features(clips.reshape(b * t, *clips.shape[2:])).reshape(b, t, -1)
    _, h = encoder.run_gru(feats, None)
    return F.normalize(projector(h), dim=1)


class ClipContrast(nn.Module):
    """encoder + projector (+ momentum copies and queue for moco); forward -> (logits, labels)."""

    def __init__(self, encoder: AUModel, config: ContrastConfig = ContrastConfig("simclr")):
        super().__init__()
        config.check()
        if config.method not in CLIP_METHODS:
            raise ValueError(f"ClipContrast runs {CLIP_METHODS}, not {config.method!r}")
        self.config = config
        self.encoder = encoder
        self.encoder.head.requires_grad_(False)  # the AU head is stage 2's; unused here
        self.projector = ProjectionHead(
            encoder.cfg.hidden_size, config.projection_hidden, config.projection_dim
        )
        if config.method == "moco":
            self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
            queue = F.normalize(torch.randn(config.queue_size, config.projection_dim), dim=1)
            self.register_buffer("queue", queue)
            self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor):
        if self.config.method == "moco":
            return self._moco(view_a, view_b)
        return self._simclr(view_a, view_b)

    def _simclr(self, view_a: torch.Tensor, view_b: torch.Tensor):
        b = view_a.shape[0]
        z = embed_clips(self.encoder, self.projector, torch.cat([view_a, view_b]))
        keys, offset = gather(z, with_grad=True)  # [W * 2B, D], rank r at rows r*2B...
        logits = z @ keys.T / self.config.temperature
        rows = torch.arange(2 * b, device=z.device)
        logits[rows, offset + rows] = MASKED_LOGIT
        labels = offset + (rows + b) % (2 * b)  # a_i <-> b_i
        return logits, labels

    @torch.no_grad()
    def _momentum_update(self) -> None:
        m = self.config.momentum
        pairs = [(self.key_encoder, self.encoder), (self.key_projector, self.projector)]
        for key_module, module in pairs:
            for pk, pq in zip(key_module.parameters(), module.parameters(), strict=True):
                pk.mul_(m).add_(pq.detach(), alpha=1 - m)

    def _moco(self, view_a: torch.Tensor, view_b: torch.Tensor):
        q = embed_clips(self.encoder, self.projector, view_a)
        with torch.no_grad():
            self._momentum_update()
            k = embed_clips(self.key_encoder, self.key_projector, view_b)
        positive = (q * k).sum(dim=1, keepdim=True)
        negative = q @ self.queue.clone().T
        logits = torch.cat([positive, negative], dim=1) / self.config.temperature
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        self._enqueue(gather(k, with_grad=False)[0])
        return logits, labels

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[0]
        keys = keys[-size:]
        start = int(self.queue_pointer)
        index = (start + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[index] = keys
        self.queue_pointer.fill_((start + keys.shape[0]) % size)

    def objective_state(self) -> dict:
        """Everything but the encoder (saved beside the model weights in a checkpoint)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}


def stack_views(view_a: ModelInputs, view_b: ModelInputs) -> ModelInputs:
    """The two views as one batch of 2B clips (view_a's rows first)."""

    def cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        return None if a is None else torch.cat([a, b])

    return ModelInputs(cat(view_a.images, view_b.images), cat(view_a.geometry, view_b.geometry),
                       cat(view_a.present, view_b.present), cat(view_a.state, view_b.state))


def same_video_near(video: torch.Tensor, frame: torch.Tensor, margin: int) -> torch.Tensor:
    """bool[N, N]: keys i, j of one video within `margin` frames (the diagonal included).

    video int64[N], frame int64[N] per flattened frame.
    """
    same = video[:, None] == video[None, :]
    return same & ((frame[:, None] - frame[None, :]).abs() <= margin)


class DynamicsContrast(nn.Module):
    """Frame-level time contrast + predictive contrast (see the module docstring)."""

    def __init__(self, encoder: AUModel, config: ContrastConfig = ContrastConfig("dynamics")):
        super().__init__()
        config.check()
        if not config.dynamics:
            raise ValueError(f"DynamicsContrast runs {DYNAMICS_METHODS}, not {config.method!r}")
        self.config = config
        self.encoder = encoder
        self.encoder.head.requires_grad_(False)  # the AU head is stage 2's; unused here
        cfg = encoder.cfg
        self.frame_projector = ProjectionHead(
            cfg.gru_input_size, config.projection_hidden, config.projection_dim
        )
        use_cpc = self._terms()[1]
        # only the terms in use own parameters (DDP refuses parameters without a gradient)
        self.predictors = nn.ModuleList(
            nn.Linear(cfg.hidden_size, config.projection_dim)
            for _ in range(config.horizons if use_cpc else 0)
        )

    def _terms(self) -> tuple[bool, bool]:
        m = self.config.method
        return m in ("dynamics", "frame"), m in ("dynamics", "cpc")

    def forward(self, view_a: ModelInputs, view_b: ModelInputs, video: torch.Tensor,
                frame: torch.Tensor) -> list[tuple[str, float, torch.Tensor, torch.Tensor]]:
        cfg = self.config
        both = stack_views(view_a, view_b)
        # one batch: BN (if any) sees both views
        feats, _ = self.encoder.encode_sequence(both.images, both.state, both.geometry,
                                                both.present)
        b, t = feats.shape[0] // 2, feats.shape[1]
        n = b * t
        feats = feats.reshape(2 * n, -1)
        feats_a, feats_b = feats[:n], feats[n:]
        keys = F.normalize(self.frame_projector(feats_b), dim=1)  # [N, D], row b * T + t
        vid = video.to(keys.device).repeat_interleave(t)
        frm = frame.to(keys.device).reshape(n)
        near = same_video_near(vid, frm, cfg.margin)
        rows = torch.arange(n, device=keys.device)
        use_frame, use_cpc = self._terms()
        terms = []
        if use_frame:
            anchors = F.normalize(self.frame_projector(feats_a), dim=1)
            blocked = near & ~torch.eye(n, dtype=torch.bool, device=keys.device)
            logits = torch.cat([anchors @ keys.T, keys @ anchors.T]) / cfg.temperature
            logits = logits.masked_fill(torch.cat([blocked, blocked]), MASKED_LOGIT)
            terms.append(("frame", cfg.frame_weight, logits, torch.cat([rows, rows])))
        if use_cpc:
            states, _ = self.encoder.run_gru(feats_a.reshape(b, t, -1), None)  # hidden: zero
            logit_rows, label_rows = [], []
            for k, predictor in enumerate(self.predictors, start=1):
                if k >= t:
                    break
                q = F.normalize(predictor(states[:, : t - k].reshape(-1, states.shape[-1])), dim=1)
                target = (rows.view(b, t)[:, k:]).reshape(-1)
                block = near[target] & (rows[None, :] != target[:, None])
                logit_rows.append((q @ keys.T / cfg.temperature).masked_fill(block, MASKED_LOGIT))
                label_rows.append(target)
            if not logit_rows:
                raise ValueError(f"clips of {t} frames are too short for predictive contrast")
            terms.append(("cpc", cfg.predictive_weight, torch.cat(logit_rows),
                          torch.cat(label_rows)))
        return terms

    def objective_state(self) -> dict:
        """Everything but the encoder (saved beside the model weights in a checkpoint)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}


def build_objective(encoder: AUModel, config: ContrastConfig) -> nn.Module:
    """The objective module of config.method (DynamicsContrast or ClipContrast)."""
    config.check()
    return DynamicsContrast(encoder, config) if config.dynamics else ClipContrast(encoder, config)
