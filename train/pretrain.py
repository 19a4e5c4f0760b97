"""`python -m train pretrain`: stage 1, contrastive pretraining of the CNN + GRU on unlabeled clips.

    python -m train pretrain --store stores/synth --store stores/clips --out runs/pre.pt \
        --steps 2000 --batch-size 32 --clip-len 16
    torchrun --nproc-per-node 4 -m train pretrain ...      # DistributedDataParallel

Each step draws `batch_size` clips of distinct videos (when the stores hold that many), reads
clip_len + max_offset consecutive frames of each, and makes the positive pair from two clips of
clip_len frames starting at most `max_offset` frames apart; each clip gets its own augmentation
(train/augment.py) and the objective (train/contrastive.py) contrasts the GRU state at the clip
ends. Labels in the stores are ignored. The checkpoint at --out (written atomically every
`checkpoint_every` steps, at the end and on Ctrl-C) holds the AUModel weights, the objective's
own state (projector, moco queue), the optimiser state and the loss history; running the same
command again resumes from it. A NaN / infinite loss stops the run and keeps the last checkpoint.
With torchrun every rank draws its own batch (seeded by rank) and the SimCLR negatives are
gathered from all ranks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import typer
from rich.console import Console

from train.augment import AugmentConfig, TwoViews
from train.contrastive import METHODS, ClipContrast, ContrastConfig
from train.data.splits import ALL, check_split, split_video_ids
from train.data.store import ClipStore, StoreError, common_alignment, read_clip
from train.loop import (
    Runtime,
    check_finite,
    global_mean,
    load_for_resume,
    lr_at,
    progress_bar,
    save_training_state,
    seed_torch,
    start_runtime,
    step_seed,
    stop_runtime,
)
from train.model import AUModel, ModelConfig

STAGE = "pretrain"
MIN_FACE_SHARE = 0.5  # a clip with fewer frames with a face than this is redrawn
MAX_REDRAWS = 8
FREE_FIELDS = frozenset({"steps", "checkpoint_every", "device", "quiet", "out", "store"})


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of a stage 1 run; CLI flags map 1:1 to fields.

    store: clip stores to draw from (labels unused). out: the checkpoint (resumed if present).
    clip_len: frames per clip; max_offset: largest gap in frames between the starts of the two
      clips of a positive pair. Model: `tiny` (tests / smoke runs) or width + hidden_size.
    lr schedule: warm-up for warmup_steps, cosine to min_lr_ratio * lr at `steps`.
    """

    store: tuple[Path, ...]
    out: Path
    steps: int = 2000
    batch_size: int = 32
    clip_len: int = 16
    max_offset: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    method: str = "simclr"
    temperature: float = 0.1
    projection_dim: int = 128
    queue_size: int = 4096
    momentum: float = 0.99
    tiny: bool = False
    width: float = 0.375
    hidden_size: int = 256
    seed: int = 0
    checkpoint_every: int = 200
    device: str = "auto"
    quiet: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: str = ALL  # train | test | all: of synthetic stores; other stores are used whole

    def check(self) -> None:
        check_split(self.split)
        if not self.store:
            raise ValueError("give at least one --store")
        for name in ("steps", "batch_size", "clip_len", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size < 2:
            raise ValueError("--batch-size must be at least 2 (negatives come from the batch)")
        if self.max_offset < 0:
            raise ValueError("--max-offset must be >= 0")

    def contrast(self) -> ContrastConfig:
        return ContrastConfig(
            method=self.method,
            temperature=self.temperature,
            projection_dim=self.projection_dim,
            queue_size=self.queue_size,
            momentum=self.momentum,
        )

    def model_config(self, crop_size: int) -> ModelConfig:
        if self.tiny:
            return ModelConfig.tiny(crop_size=crop_size)
        return ModelConfig(crop_size=crop_size, width=self.width, hidden_size=self.hidden_size)


class PairSampler:
    """Positive pairs of nearby clips from one or more stores (all of one crop size)."""

    def __init__(
        self, stores: Sequence[ClipStore], clip_len: int, max_offset: int, split: str = ALL
    ):
        sizes = {s.crop_size for s in stores}
        if len(sizes) != 1:
            raise StoreError(f"the stores have different crop sizes {sorted(sizes)}")
        self.crop_size = sizes.pop()
        self.clip_len, self.span = clip_len, clip_len + max_offset
        chosen = {id(s): split_video_ids(s, split, strict=False) for s in stores}
        self.items = [
            (store, v.id, v.num_frames)
            for store in stores
            for v in store.videos
            if (chosen[id(store)] is None or v.id in chosen[id(store)])
            and v.num_frames >= self.span and v.faces_found >= MIN_FACE_SHARE * v.num_frames
        ]
        if not self.items:
            raise StoreError(
                f"no video in {', '.join(str(s.root) for s in stores)} has {self.span} frames "
                "(clip_len + max_offset) with faces: use shorter clips"
            )
        starts = np.array([n - self.span + 1 for _, _, n in self.items], float)
        self.weights = starts / starts.sum()

    def batch(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two uint8[size, T, S, S, 3] arrays; row i of both is one pair, rows from distinct
        videos when there are at least `size` videos."""
        replace = size > len(self.items)
        picks = rng.choice(len(self.items), size=size, replace=replace, p=self.weights)
        a, b = [], []
        for pick in picks:
            store, video_id, n = self.items[int(pick)]
            for _ in range(MAX_REDRAWS):
                start = int(rng.integers(n - self.span + 1))
                clip = read_clip(store, video_id, start, self.span)
                if clip.face_found is None or clip.face_found.mean() >= MIN_FACE_SHARE:
                    break
            offset = int(rng.integers(self.span - self.clip_len + 1))
            a.append(clip.images[: self.clip_len])
            b.append(clip.images[offset : offset + self.clip_len])
        return np.stack(a), np.stack(b)


def pretrain(
    config: PretrainConfig,
    console: Console | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Run (or resume) stage 1; returns the checkpoint path. on_step(step, loss) after each step."""
    config.check()
    config.contrast().check()
    runtime = start_runtime(config.device)
    try:
        return _run(config, runtime, console, on_step)
    finally:
        stop_runtime()


def _run(config: PretrainConfig, runtime: Runtime, console, on_step) -> Path:
    stores = [ClipStore(p) for p in config.store]
    alignment = common_alignment(stores)
    sampler = PairSampler(stores, config.clip_len, config.max_offset, config.split)
    out = Path(config.out)
    resumed = load_for_resume(out, STAGE, config, FREE_FIELDS)
    torch.manual_seed(config.seed)
    model = resumed.model if resumed else AUModel(config.model_config(sampler.crop_size))
    objective = ClipContrast(model, config.contrast())
    if resumed:
        state = {f"encoder.{k}": v for k, v in model.state_dict().items()}
        objective.load_state_dict({**state, **resumed.extra["objective"]})
    objective.to(runtime.device).train()
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    start, history = 0, []
    if resumed:
        optimizer.load_state_dict(resumed.extra["optimizer"])
        start, history = resumed.step, list(resumed.extra.get("history", []))
    wrapped = objective
    if runtime.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    views = TwoViews(config.augment)

    def save(step: int) -> None:
        if runtime.main:
            save_training_state(
                out, model, step, STAGE, config, optimizer, history,
                objective=objective.objective_state(), alignment=alignment,
            )

    if start >= config.steps:
        if runtime.main and not config.quiet:
            (console or Console(stderr=True)).print(
                f"{out}: already at step {start}; nothing to do"
            )
        return out
    step = start
    started = time.perf_counter()
    with progress_bar(console, disable=config.quiet or not runtime.main) as progress:
        task = progress.add_task(STAGE, total=config.steps, completed=start, loss="-", lr="-",
                                 rate="-")
        try:
            for step in range(start, config.steps):
                lr = lr_at(step, config.lr, config.warmup_steps, config.steps, config.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                rng = np.random.default_rng(step_seed(config.seed, runtime.rank, step))
                generator = seed_torch(config.seed, runtime.rank, step)
                a, b = sampler.batch(config.batch_size, rng)
                view_a, view_b = views(torch.from_numpy(a), torch.from_numpy(b), generator)
                logits, labels = wrapped(view_a.to(runtime.device), view_b.to(runtime.device))
                loss = F.cross_entropy(logits, labels)
                value = global_mean(loss, runtime)
                check_finite(value, step, out)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append([step, value])
                if on_step is not None:
                    on_step(step, value)
                done = step + 1 - start
                rate = done * config.batch_size * runtime.world / (time.perf_counter() - started)
                progress.update(task, completed=step + 1, loss=f"{value:.4f}", lr=f"{lr:.2e}",
                                rate=f"{rate:.1f} pairs/s")
                if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                    save(step + 1)
        except KeyboardInterrupt:
            # the step in flight did not finish: keep what the last completed step left
            save(len(history) and history[-1][0] + 1)
            raise
    return out


def pretrain_command(
    store: Annotated[list[Path], typer.Option(help="clip store to draw from (repeatable)")],
    out: Annotated[Path, typer.Option(help="checkpoint to write (resumed if it exists)")],
    steps: Annotated[int, typer.Option(help="optimiser steps in all")] = 2000,
    batch_size: Annotated[int, typer.Option(help="positive pairs per step (per process)")] = 32,
    clip_len: Annotated[int, typer.Option(help="frames per clip")] = 16,
    max_offset: Annotated[int, typer.Option(help="max frames between the two clips")] = 8,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW)")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = 1e-4,
    warmup_steps: Annotated[int, typer.Option(help="linear warm-up steps")] = 100,
    min_lr_ratio: Annotated[float, typer.Option(help="final lr / peak lr (cosine)")] = 0.05,
    method: Annotated[str, typer.Option(help=f"objective: {' | '.join(METHODS)}")] = "simclr",
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature")] = 0.1,
    projection_dim: Annotated[int, typer.Option(help="embedding size")] = 128,
    queue_size: Annotated[int, typer.Option(help="moco: negatives in the queue")] = 4096,
    momentum: Annotated[float, typer.Option(help="moco: key encoder momentum")] = 0.99,
    tiny: Annotated[bool, typer.Option(help="tiny model (tests, smoke runs)")] = False,
    width: Annotated[float, typer.Option(help="CNN width multiplier")] = 0.375,
    hidden_size: Annotated[int, typer.Option(help="GRU state size H")] = 256,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 200,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    split: Annotated[
        str, typer.Option(help="train | test | all: of synthetic stores (others whole)")
    ] = ALL,
) -> None:
    """Stage 1: contrastive pretraining of the CNN + GRU on unlabeled face clips."""
    config = PretrainConfig(
        store=tuple(store), out=out, steps=steps, batch_size=batch_size, clip_len=clip_len,
        max_offset=max_offset, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
        min_lr_ratio=min_lr_ratio, method=method, temperature=temperature,
        projection_dim=projection_dim, queue_size=queue_size, momentum=momentum, tiny=tiny,
        width=width, hidden_size=hidden_size, seed=seed, checkpoint_every=checkpoint_every,
        device=device, quiet=quiet, split=split,
    )
    path = pretrain(config, Console(stderr=True))
    print(path, flush=True)
