"""What the stage 1 and stage 2 training loops share: lr schedule, devices and torchrun, resumable
checkpoints, the non-finite stop, the rich progress bar, and `run_steps`, the step loop itself
(lr per step, loss -> backward -> optimiser step, history, checkpoints, Ctrl-C). Used by
train/pretrain.py and train/finetune.py; not a command of its own.

Determinism (what makes resume exact): every step draws its data and augmentation from
generators seeded by (seed, rank, step) alone, and seeds torch's global generator the same way,
so a run resumed from step k's checkpoint (weights + optimiser state + history) takes the same
steps as one that was never interrupted.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rtau.errors import RtauError
from train.model import (
    DISFA_AUS,
    INPUTS_IMAGE,
    AUModel,
    Checkpoint,
    ModelConfig,
    load_checkpoint,
    save_checkpoint,
)

SEED_STRIDE = 1_000_003  # spreads (seed, rank, step) over torch's integer seed space
# fields a resume may change: how long and where it runs, never what it learns
FREE_FIELDS = frozenset({"steps", "checkpoint_every", "device", "quiet", "out"})


@dataclass(frozen=True, kw_only=True)
class StageFields:
    """The config fields both training stages take, with flags of the same names: the model
    (`tiny`, a test-sized model, or `width` and `hidden_size`; `norm` batch | group; `inputs`
    image | geometry | image+geometry, "" for the default: an --init checkpoint's, else image;
    `baseline_prior_frames` and `absolute_fade_frames` for geometry models: train/model.py),
    `seed`,
    `checkpoint_every` (steps), `device` (auto | cpu | cuda) and `quiet` (no progress)."""

    tiny: bool = False
    width: float = 0.375
    hidden_size: int = 256
    norm: str = "batch"
    inputs: str = ""
    baseline_prior_frames: int = 0
    absolute_fade_frames: int = 0
    seed: int = 0
    checkpoint_every: int = 200
    device: str = "auto"
    quiet: bool = False

    def model_config(self, crop_size: int, au_names: tuple[str, ...] = DISFA_AUS) -> ModelConfig:
        """The architecture these fields choose, for crops of crop_size px and these AUs."""
        inputs = self.inputs or INPUTS_IMAGE
        if self.tiny:
            return replace(ModelConfig.tiny(au_names=au_names, crop_size=crop_size,
                                            norm=self.norm, inputs=inputs),
                           baseline_prior_frames=self.baseline_prior_frames,
                           absolute_fade_frames=self.absolute_fade_frames)
        return ModelConfig(crop_size=crop_size, width=self.width, hidden_size=self.hidden_size,
                           au_names=au_names, norm=self.norm, inputs=inputs,
                           baseline_prior_frames=self.baseline_prior_frames,
                           absolute_fade_frames=self.absolute_fade_frames)


class NonFiniteLoss(RtauError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def lr_at(
    step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float
) -> float:
    """Learning rate at `step` (0-based): linear warm-up, then cosine decay to min_ratio * base."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generators(seed: int, rank: int, step: int) -> tuple[np.random.Generator,
                                                              torch.Generator]:
    """(numpy generator, torch generator) for the data of one step of one rank; also seeds
    torch's global generator (dropout) the same way."""
    value = ((seed * SEED_STRIDE + rank) * SEED_STRIDE + step) % (2**63)
    torch.manual_seed(value)
    return np.random.default_rng([seed, rank, step]), torch.Generator().manual_seed(value)


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: rank, world size, device (set up by `start_runtime`)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_runtime(device: str = "auto") -> Runtime:
    """Join torchrun's process group if launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Runtime(rank, world, dev)


def stop_runtime() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def training_runtime(device: str = "auto") -> Iterator[Runtime]:
    """start_runtime for the length of a with block; the process group is left on the way out,
    on an error or Ctrl-C too."""
    runtime = start_runtime(device)
    try:
        yield runtime
    finally:
        stop_runtime()


def global_mean(value: torch.Tensor, runtime: Runtime) -> float:
    """The mean of a scalar over all ranks (the loss every rank logs and checks)."""
    value = value.detach().float().reshape(1).clone()
    if runtime.world > 1:
        dist.all_reduce(value)
        value /= runtime.world
    return float(value)


def check_finite(loss: float, step: int, out: Path) -> None:
    if not math.isfinite(loss):
        kept = f"the last checkpoint {out} is kept" if out.exists() else "no checkpoint was written"
        raise NonFiniteLoss(f"non-finite loss ({loss}) at step {step}: stopped; {kept}")


def config_dict(config) -> dict:
    """A frozen dataclass as plain JSON-able values (Path -> str, tuples -> lists)."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(v) for f, v in zip(fields(config), asdict(config).values(), strict=True)}


def save_training_state(
    path: Path, model: AUModel, step: int, stage: str, config, optimizer, history: list, **extra
) -> None:
    """Atomic checkpoint of weights, optimiser state, config and loss history (rank 0 only)."""
    save_checkpoint(
        path,
        model,
        step,
        stage=stage,
        train_config=config_dict(config),
        optimizer=optimizer.state_dict(),
        history=history,
        **extra,
    )


def load_for_resume(path: Path, stage: str, config, free: frozenset[str]) -> Checkpoint | None:
    """The checkpoint to resume from, or None if there is none; ValueError if it is another run.

    free: config fields that may change between the runs (step count, logging, device).
    """
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    if ckpt.extra.get("stage") != stage:
        raise ValueError(
            f"{path} is a {ckpt.extra.get('stage', 'model')} checkpoint, not a {stage} run to "
            "resume: choose another --out"
        )
    saved, now = ckpt.extra.get("train_config", {}), config_dict(config)
    changed = sorted(k for k in now if k not in free and saved.get(k) != now[k])
    if changed:
        raise ValueError(
            f"{path} was written with other settings ({', '.join(changed)}): resume with the "
            "same settings, or choose another --out"
        )
    return ckpt


def progress_bar(console: Console | None, disable: bool) -> Progress:
    """Bar + step count + loss / lr / throughput fields, updated by the loops."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("lr {task.fields[lr]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=disable,
    )


@dataclass(frozen=True)
class Schedule:
    """What `run_steps` needs of a trainer's config (every trainer config has these fields)."""

    steps: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    checkpoint_every: int

    @classmethod
    def of(cls, config) -> Schedule:
        return cls(config.steps, config.lr, config.warmup_steps, config.min_lr_ratio,
                   config.checkpoint_every)


def run_steps(
    *,
    stage: str,
    schedule: Schedule,
    start: int,
    optimizer: torch.optim.Optimizer,
    lr_scales: Sequence[float],
    step_loss: Callable[[int], torch.Tensor],
    save: Callable[[int], None],
    history: list,
    runtime: Runtime,
    out: Path,
    console: Console,
    quiet: bool,
    items_per_step: int,
    unit: str,
    on_step: Callable[[int, float], None] | None = None,
) -> None:
    """The step loop of both stages, from `start` to schedule.steps.

    step_loss(step) -> scalar loss tensor with its graph (the trainer draws the step's data from
    generators seeded by the step). lr_scales: one lr multiplier per optimiser param group.
    save(step) writes the checkpoint of `step` completed steps (rank 0 decides whether to write);
    it runs every checkpoint_every steps, at the end, and on Ctrl-C (with the last completed
    step, then KeyboardInterrupt propagates). A non-finite loss raises NonFiniteLoss before the
    optimiser step, so the last checkpoint stays good.
    """
    if start >= schedule.steps:
        if runtime.main and not quiet:
            console.print(f"{out}: already at step {start}; nothing to do")
        return
    started = time.perf_counter()
    with progress_bar(console, disable=quiet or not runtime.main) as progress:
        task = progress.add_task(stage, total=schedule.steps, completed=start, loss="-", lr="-",
                                 rate="-")
        try:
            for step in range(start, schedule.steps):
                lr = lr_at(step, schedule.lr, schedule.warmup_steps, schedule.steps,
                           schedule.min_lr_ratio)
                for group, scale in zip(optimizer.param_groups, lr_scales, strict=True):
                    group["lr"] = lr * scale
                loss = step_loss(step)
                value = global_mean(loss, runtime)
                check_finite(value, step, out)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append([step, value])
                if on_step is not None:
                    on_step(step, value)
                done = step + 1 - start
                rate = done * items_per_step * runtime.world / (time.perf_counter() - started)
                progress.update(task, completed=step + 1, loss=f"{value:.4f}", lr=f"{lr:.2e}",
                                rate=f"{rate:.1f} {unit}/s")
                if (step + 1) % schedule.checkpoint_every == 0 or step + 1 == schedule.steps:
                    save(step + 1)
        except KeyboardInterrupt:
            # the step in flight did not finish: keep what the last completed step left
            save(len(history) and history[-1][0] + 1)
            raise
