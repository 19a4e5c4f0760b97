"""The stage 1 objective: clip-level InfoNCE on a projection of the GRU state at the clip end.

    objective = ClipContrast(AUModel(cfg), ContrastConfig(method="simclr"))
    logits, labels = objective(view_a, view_b)       # views float/uint8 [B, T, S, S, 3]
    loss = torch.nn.functional.cross_entropy(logits, labels)

A clip embeds as normalise(projector(h_T)), where h_T is the GRU state after the clip's last
frame, so the CNN *and* the temporal module learn. Row i of view_a and row i of view_b are the
two views of one positive pair (two nearby clips of one video, train/pretrain.py); every other
clip in the batch is a negative. Two variants (`ContrastConfig.method`):

- "simclr" (default): in-batch negatives, NT-Xent over the 2B embeddings of both views (2B - 2
  negatives per anchor; with torchrun, the embeddings of all ranks, gathered with gradients).
  Both views pass the encoder in one batch, so BatchNorm sees them together.
- "moco": a momentum copy of encoder + projector embeds the keys (view_b), a queue of
  `queue_size` past keys supplies the negatives (MoCo v2). Many negatives at a small batch, but
  a second encoder in memory and no shuffled BN (keys of one batch share BN statistics, a known
  shortcut MoCo fixes by shuffling across GPUs; not done here).
Why SimCLR is the default: it needs no second encoder and no queue state to checkpoint and
resume, and with torchrun its negatives grow with the number of ranks; the two are compared on
the same data, steps and downstream probe by `benchmarks/contrastive_methods.py` (results in
`benchmarks/results/contrastive_methods-*.md`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from train.model import AUModel

METHODS = ("simclr", "moco")
MASKED_LOGIT = -1e4  # the self-similarity of an anchor; large negative, finite in fp16 too


@dataclass(frozen=True)
class ContrastConfig:
    """method: simclr | moco; temperature of the softmax; projection: H -> hidden -> dim.

    queue_size and momentum are used by moco only.
    """

    method: str = "simclr"
    temperature: float = 0.1
    projection_dim: int = 128
    projection_hidden: int = 256
    queue_size: int = 4096
    momentum: float = 0.99

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"contrastive method must be one of {METHODS}, got {self.method!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


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
    """GRU state [N, H] -> embedding [N, D] (not normalised): Linear, ReLU, Linear."""

    def __init__(self, hidden_size: int, inner: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, inner), nn.ReLU(), nn.Linear(inner, dim))

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

    def __init__(self, encoder: AUModel, config: ContrastConfig = ContrastConfig()):
        super().__init__()
        config.check()
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
