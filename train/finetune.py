"""`python -m train finetune`: stage 2, AU intensity regression from sparse labeled frames.

    python -m train finetune --store stores/disfa --out runs/fold0.pt --init runs/pre.pt \
        --label-fraction 0.02 --fold 0 --num-folds 3 --steps 1000 --seq-len 64

A fixed random subset of the labeled frames of the training videos (`label_fraction`, drawn
once from `label_seed` by train.data.store.sample_label_fraction) carries labels; every step
takes `batch_size` sequences of `seq_len` consecutive frames holding at least one of them, runs
the CNN per frame and the GRU over the sequence, and takes the loss (smooth-L1 or L2 on
intensities 0..5) at the labeled frames only; the gradient flows back through time from those
frames into the GRU and, unless frozen, the CNN (at `cnn_lr_scale` times the lr).

--init scratch | CKPT: a stage 1 checkpoint (or any rtau checkpoint). Its CNN and GRU weights
load; the AU head is new when the checkpoint is a pretraining one or its AUs differ. The load
names every missing, unexpected and shape-mismatched key and refuses anything but the head.
--inputs image | geometry | image+geometry (`train/model.py`): what a frame gives the model;
by default an --init checkpoint's, image from scratch. Adding geometry to an image checkpoint
keeps its CNN and GRU: the geometry encoder is new, and the GRU's input projection is widened
(the pretrained columns kept, the geometry columns newly initialised). Geometry models start
each training sequence from the baseline its first frame would have live
(`train/data/geometry.py`).
--mode linear: the frozen-feature baseline (CNN and GRU frozen, only the linear head learns).
--augment (default on): each sequence gets one draw of the stage 1 augmentations (small
crop/scale jitter, colour jitter, blur, grayscale, horizontal flip; train/augment.py) for all its
frames; the flip keeps labels valid because the AUs are intensities of both sides of the face.
For geometry models, `pose_jitter` (degrees) turns each sequence's head by its own yaw and pitch
before the alignment, and `geometry_noise` (crop sides) adds landmark noise per frame: the
stage 1 views' augmentations, one view per sequence (`train.augment.GeometryViews`).
`ccc_weight` w adds w x mean over AUs of (1 - CCC), the concordance of the batch's labeled
predictions with their labels: a penalty for predictions whose spread or mean is off, which the
per-frame loss alone lets shrink toward the mean where the signal is weak.
--fold F of --num-folds: train on the subjects outside fold F (train/evaluate.py's
subject-exclusive folds); --fold -1 trains on every video of the store.
The checkpoint at --out is written atomically (every checkpoint_every steps, at the end, on
Ctrl-C) with the optimiser state; the same command resumes it. Single process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import typer
from rich.console import Console

from rtau.commands.options import config_from_options
from train import loop
from train.augment import AugmentConfig, ClipAugment, GeometryViews
from train.data.geometry import GeometrySource, ModelInputs, batch_inputs, geometry_prior
from train.data.splits import ALL, check_split, split_video_ids
from train.data.store import (
    ClipSampler,
    ClipStore,
    StoreError,
    check_alignment,
    sample_label_fraction,
)
from train.evaluate import fold_videos, video_identities
from train.model import AUModel, load_checkpoint

STAGE = "finetune"
MODES = ("full", "linear")
LOSSES = ("smooth_l1", "l2")
SCRATCH = "scratch"
NEW_HEAD_PREFIX = "head."  # the only keys a pretrained load may leave out...
NEW_GEOMETRY_PREFIX = "geometry_encoder."  # ...besides a geometry encoder new to the model
WIDENED_KEY = "gru.input_proj.weight"  # [3 hidden, inputs]: grows when geometry is added
CCC_EPS = 1e-6  # intensity units squared: a batch's labels that vary less count as constant
PRIOR_KEY = "baseline_prior"  # new too when geometry is added: set from the training videos


@dataclass(frozen=True)
class FinetuneConfig(loop.StageFields):
    """Settings of a stage 2 run; CLI flags map 1:1 to fields (see the module docstring)."""

    store: Path
    out: Path
    init: str = SCRATCH
    label_fraction: float = 1.0
    label_seed: int = 0
    fold: int = -1
    num_folds: int = 3
    mode: str = "full"
    loss: str = "smooth_l1"
    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 64
    lr: float = 1e-3
    cnn_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    augment: bool = True
    split: str = ALL  # train | test | all: videos of one split of synthetic data
    cold_start: float = 0.0  # share of clips started from the zero state (geometry models)
    geometry_noise: float = 0.0  # geometry models, with augment: landmark noise (crop sides)
    pose_jitter: float = 0.0  # geometry models, with augment: head turn per sequence (degrees)
    ccc_weight: float = 0.0  # weight of the mean (1 - CCC) term over AUs (see the docstring)

    def check(self) -> None:
        check_split(self.split)
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {MODES}, got {self.mode!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"--label-fraction must be in (0, 1], got {self.label_fraction}")
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.cnn_lr_scale < 0:
            raise ValueError("--cnn-lr-scale must be >= 0 (0 freezes the CNN)")
        if not 0.0 <= self.cold_start <= 1.0:
            raise ValueError(f"--cold-start must be in [0, 1], got {self.cold_start}")
        if self.geometry_noise < 0 or self.pose_jitter < 0:
            raise ValueError("--geometry-noise and --pose-jitter must be >= 0")
        if self.ccc_weight < 0:
            raise ValueError(f"--ccc-weight must be >= 0, got {self.ccc_weight}")

    @property
    def cnn_frozen(self) -> bool:
        return self.mode == "linear" or self.cnn_lr_scale == 0


@dataclass(frozen=True)
class LoadReport:
    """What a pretrained load did, key by key."""

    source: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]  # in the model, not in the checkpoint (or left out: see `dropped`)
    unexpected: tuple[str, ...]  # in the checkpoint, not in the model
    mismatched: tuple[str, ...]  # in both, different shapes
    dropped: tuple[str, ...]  # in the checkpoint but not taken (an untrained stage 1 head)

    def describe(self) -> str:
        def names(keys: tuple[str, ...]) -> str:
            return ", ".join(keys) if keys else "none"

        return (
            f"loaded {len(self.loaded)} tensors from {self.source}; missing: "
            f"{names(self.missing)}; unexpected: {names(self.unexpected)}; shape mismatch: "
            f"{names(self.mismatched)}; not taken: {names(self.dropped)}"
        )

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def load_pretrained(model: AUModel, path: str | Path) -> LoadReport:
    """Load a checkpoint's weights into `model`, checking exactly which keys are missing.

    Only head keys may be missing or mismatched (a new head for new AUs, or the untrained head
    of a stage 1 checkpoint, which is never taken); any other difference is a ValueError that
    names the keys. An image checkpoint loads into an image+geometry model of the same CNN and
    GRU: the geometry encoder is missing (new) and the GRU input projection is widened, the
    checkpoint's columns (the CNN features, first in the GRU input) copied in.
    """
    ckpt = load_checkpoint(path)
    source = ckpt.model.state_dict()
    dropped: tuple[str, ...] = ()
    if ckpt.extra.get("stage") == "pretrain":
        dropped = tuple(sorted(k for k in source if k.startswith(NEW_HEAD_PREFIX)))
        source = {k: v for k, v in source.items() if k not in dropped}
    target = model.state_dict()
    missing = tuple(sorted(k for k in target if k not in source))
    unexpected = tuple(sorted(k for k in source if k not in target))
    mismatched = tuple(
        sorted(k for k in source if k in target and source[k].shape != target[k].shape)
    )
    loadable = {k: v for k, v in source.items() if k in target and k not in mismatched}
    widened = WIDENED_KEY in mismatched and _widens(source[WIDENED_KEY], target[WIDENED_KEY])
    if widened:
        grown = target[WIDENED_KEY].clone()
        grown[:, : source[WIDENED_KEY].shape[1]] = source[WIDENED_KEY]
        loadable[WIDENED_KEY] = grown
    report = LoadReport(
        str(path), tuple(sorted(loadable)), missing, unexpected, mismatched, dropped
    )
    new_parts = (NEW_HEAD_PREFIX, NEW_GEOMETRY_PREFIX, PRIOR_KEY)
    bad = [k for k in missing if not k.startswith(new_parts)] + [
        k for k in mismatched if not k.startswith(NEW_HEAD_PREFIX) and not (
            widened and k == WIDENED_KEY)] + list(unexpected)
    if bad:
        raise ValueError(f"{path} does not fit this model: {report.describe()}")
    model.load_state_dict(loadable, strict=False)
    return report


def _widens(source: torch.Tensor, target: torch.Tensor) -> bool:
    """True when `target` is `source` with more input columns (same rows)."""
    return (source.ndim == target.ndim == 2 and source.shape[0] == target.shape[0]
            and source.shape[1] < target.shape[1])


def masked_loss(
    pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, kind: str = "smooth_l1"
) -> torch.Tensor:
    """Mean of the per-element loss over labeled entries only: pred, labels [..., K], mask bool.

    Entries where mask is False contribute nothing, value or gradient (their labels are never
    read into the graph). 0 (with a graph) when nothing is labeled.
    """
    p, y = pred[mask], labels[mask]
    if kind == "l2":
        total = F.mse_loss(p, y, reduction="sum")
    else:
        total = F.smooth_l1_loss(p, y, reduction="sum")
    return total / mask.sum().clamp(min=1)


def concordance_loss(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over AUs of 1 - CCC (Lin's concordance) over the labeled entries: pred, labels
    [..., K], mask bool [..., K]. CCC_k = 2 cov / (var_p + var_y + (mean_p - mean_y)^2) over AU
    k's labeled entries; AUs with fewer than two, or with labels that do not vary, are left
    out. 0 (with a graph) when no AU counts."""
    k = pred.shape[-1]
    p, y, m = pred.reshape(-1, k), labels.reshape(-1, k), mask.reshape(-1, k).to(pred.dtype)
    n = m.sum(0)
    y = torch.where(m > 0, y, torch.zeros_like(y))  # unlabeled values never enter the graph
    mean_p, mean_y = (p * m).sum(0) / n.clamp(min=1), (y * m).sum(0) / n.clamp(min=1)
    dp, dy = (p - mean_p) * m, (y - mean_y) * m
    var_p, var_y = (dp ** 2).sum(0) / n.clamp(min=1), (dy ** 2).sum(0) / n.clamp(min=1)
    cov = (dp * dy).sum(0) / n.clamp(min=1)
    ccc = 2 * cov / (var_p + var_y + (mean_p - mean_y) ** 2 + CCC_EPS)
    counts = (n >= 2) & (var_y > CCC_EPS)
    if not bool(counts.any()):
        return pred.sum() * 0.0
    return (1.0 - ccc[counts]).mean()


def init_identities(init: str) -> list[str]:
    """The identities the --init checkpoint saw in training (its own and its init's)."""
    if init == SCRATCH:
        return []
    extra = load_checkpoint(init).extra
    seen = set(extra.get("train_identities") or []) | set(extra.get("init_identities") or [])
    return sorted(seen)


def _set_prior(model: AUModel, store: ClipStore, train_ids: Sequence[str]) -> None:
    """A model's baseline prior from the training videos (label-free)."""
    model.set_baseline_prior(torch.from_numpy(geometry_prior([(store, v) for v in train_ids])))


def build_model(config: FinetuneConfig, store: ClipStore, console: Console,
                train_ids: Sequence[str] = ()) -> tuple:
    """(model, load report or None) for --init scratch | CKPT, with the store's AUs and size; a
    new model with a baseline prior takes it from the training videos (train_ids)."""
    if config.init == SCRATCH:
        torch.manual_seed(config.seed)
        model = AUModel(config.model_config(store.crop_size, store.au_names))
        if model.has_prior:
            _set_prior(model, store, train_ids)
        return model, None
    init = load_checkpoint(config.init)
    check_alignment(config.init, init.extra, store)
    base = init.model.cfg
    if base.crop_size != store.crop_size:
        raise ValueError(
            f"{config.init} was trained on {base.crop_size} px crops, the store {store.root} "
            f"holds {store.crop_size} px"
        )
    torch.manual_seed(config.seed)
    model = AUModel(replace(base, au_names=store.au_names, inputs=config.inputs or base.inputs))
    report = load_pretrained(model, config.init)
    if model.has_prior and PRIOR_KEY in report.missing:
        _set_prior(model, store, train_ids)
    if not config.quiet:
        console.print(report.describe())
    return model, report


def param_groups(model: AUModel, config: FinetuneConfig) -> list[dict]:
    """Optimiser groups with an lr scale each; frozen parts get requires_grad False."""
    head = list(model.head.parameters())
    encoder = model.geometry_encoder
    if config.mode == "linear":
        for part in (model.backbone, encoder, model.gru):
            if part is not None:
                part.requires_grad_(False)
        return [{"params": head, "scale": 1.0}]
    geometry = [] if encoder is None else list(encoder.parameters())
    groups = [{"params": head + list(model.gru.parameters()) + geometry, "scale": 1.0}]
    if model.backbone is None:
        return groups
    if config.cnn_frozen:
        model.backbone.requires_grad_(False)
    else:
        groups.append({"params": list(model.backbone.parameters()), "scale": config.cnn_lr_scale})
    return groups


def sequence_outputs(model: AUModel, inputs: ModelInputs) -> torch.Tensor:
    """Unclamped AU outputs [B, T, K] of a batch (the loss needs the gradient below 0 and above
    5 too); a frozen CNN runs without a graph (`AUModel.features`)."""
    raw, _ = model.sequence_outputs(inputs.images, inputs.state, inputs.geometry, inputs.present)
    return raw


def freeze_batch_norm_statistics(model: AUModel) -> None:
    """Put every BatchNorm layer of the CNN in eval mode (running statistics, no updates).

    In train mode BatchNorm normalises each frame with the statistics of the whole batch, so the
    loss at a labeled frame would depend on (and send gradient to) unlabeled frames and other
    sequences. finetune() freezes them when a batch can hold unlabeled frames (sequences longer
    than 1 frame and not every training frame labeled); single labeled frames (seq_len 1) or
    fully labeled data keep batch statistics. A BatchNorm model from scratch then trains with
    its initial statistics, i.e. unnormalised: for sparse labels use `--norm group` (statistics
    of each frame alone, nothing to freeze), as the experiment does.
    """
    for module in model.backbone.modules() if model.backbone is not None else ():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune(
    config: FinetuneConfig,
    console: Console | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Run (or resume) stage 2; returns the checkpoint path. on_step(step, loss) after each step."""
    config.check()
    console = console or Console(stderr=True)
    with loop.training_runtime(config.device) as runtime:
        return _run(config, runtime, console, on_step)


def _run(config: FinetuneConfig, runtime: loop.Runtime, console: Console, on_step) -> Path:
    store = ClipStore(config.store)
    train_ids, _ = fold_videos(store, config.fold, config.num_folds)
    in_split = split_video_ids(store, config.split)
    if in_split is not None:
        train_ids = [v for v in train_ids if v in in_split]
        if not train_ids:
            raise StoreError(f"{store.root}: no training video in split {config.split}")
    frames = sample_label_fraction(store, config.label_fraction, config.label_seed, train_ids)
    out = Path(config.out)
    resumed = loop.load_for_resume(out, STAGE, config, loop.FREE_FIELDS)
    report = None
    if resumed:
        model = resumed.model
    else:
        model, report = build_model(config, store, console, train_ids)
    groups = param_groups(model, config)
    model.to(runtime.device).train()
    if config.cnn_frozen and model.backbone is not None:
        model.backbone.eval()  # frozen BN statistics too
    elif config.seq_len > 1 and not all(frames[v].all() for v in train_ids):
        freeze_batch_norm_statistics(model)  # sequences hold unlabeled frames
    if config.mode == "linear":
        model.gru.eval()
    optimizer = torch.optim.AdamW(
        [{"params": g["params"]} for g in groups], lr=config.lr, weight_decay=config.weight_decay
    )
    start, history = 0, []
    if resumed:
        optimizer.load_state_dict(resumed.extra["optimizer"])
        start, history = resumed.step, list(resumed.extra.get("history", []))
        report_json = resumed.extra.get("init_report")
    else:
        report_json = report.to_json() if report else None
    extra = {
        "fold": config.fold,
        "num_folds": config.num_folds,
        "train_videos": list(train_ids),
        "train_identities": sorted(set(video_identities(store, train_ids).values())),
        "init_identities": init_identities(config.init),
        "labeled_frames": int(sum(int(m.sum()) for m in frames.values())),
        "init_report": report_json,
        "alignment": store.alignment,
    }

    def save(step: int) -> None:
        loop.save_training_state(out, model, step, STAGE, config, optimizer, history, **extra)

    augment = ClipAugment(AugmentConfig())
    geometry_views = GeometryViews(config.geometry_noise, config.pose_jitter)
    augment_geometry = config.augment and (config.geometry_noise > 0 or config.pose_jitter > 0)
    # built once: its index of labeled clip positions costs a pass over every label mask
    sampler = ClipSampler(store, config.seq_len, train_ids, frames, seed=config.seed,
                          labeled_only=True)
    geometry = GeometrySource.for_model(store, model) if model.cfg.uses_geometry \
        else None
    device = runtime.device

    def step_loss(step: int) -> torch.Tensor:
        rng, generator = loop.step_generators(config.seed, runtime.rank, step)
        clips = [sampler.sample(rng) for _ in range(config.batch_size)]
        # a share of clips starts from the zero state: a face first seen mid-expression
        cold = rng.random(len(clips)) < config.cold_start if config.cold_start > 0 else None
        inputs = batch_inputs(model.cfg, clips, geometry, device, cold=cold)
        labels = torch.from_numpy(np.stack([c.labels for c in clips])).to(device)
        mask = torch.from_numpy(np.stack([c.mask for c in clips])).to(device)
        if config.augment and inputs.images is not None:  # on the training device: it costs a
            # grid_sample per frame
            flip = torch.rand(len(clips), generator=generator) < augment.config.flip_probability
            inputs = replace(inputs, images=augment(inputs.images, flip, generator))
        if augment_geometry and inputs.geometry is not None:
            landmarks = found = None
            if config.pose_jitter > 0:
                pairs = [geometry.landmarks(c) for c in clips]
                landmarks, found = [p[0] for p in pairs], [p[1] for p in pairs]
            inputs = replace(inputs, geometry=geometry_views.view(
                inputs.geometry, generator, landmarks, found))
        pred = sequence_outputs(model, inputs)
        loss = masked_loss(pred, labels, mask, config.loss)
        if config.ccc_weight > 0:
            loss = loss + config.ccc_weight * concordance_loss(pred, labels, mask)
        return loss

    loop.run_steps(
        stage=STAGE, schedule=loop.Schedule.of(config), start=start, optimizer=optimizer,
        lr_scales=[g["scale"] for g in groups], step_loss=step_loss, save=save, history=history,
        runtime=runtime, out=out, console=console, quiet=config.quiet,
        items_per_step=config.batch_size, unit="seq", on_step=on_step,
    )
    return out


def finetune_command(
    store: Annotated[Path, typer.Option(help="labeled clip store")],
    out: Annotated[Path, typer.Option(help="checkpoint to write (resumed if it exists)")],
    init: Annotated[str, typer.Option(help="'scratch' or a checkpoint (stage 1)")] = SCRATCH,
    label_fraction: Annotated[float, typer.Option(help="share of labeled frames used")] = 1.0,
    label_seed: Annotated[int, typer.Option(help="seed of the labeled-frame draw")] = 0,
    fold: Annotated[int, typer.Option(help="held-out fold; -1: train on all videos")] = -1,
    num_folds: Annotated[int, typer.Option(help="subject-exclusive folds")] = 3,
    mode: Annotated[str, typer.Option(help="full | linear (frozen features)")] = "full",
    loss: Annotated[str, typer.Option(help="smooth_l1 | l2")] = "smooth_l1",
    steps: Annotated[int, typer.Option(help="optimiser steps in all")] = 1000,
    batch_size: Annotated[int, typer.Option(help="sequences per step")] = 8,
    seq_len: Annotated[int, typer.Option(help="frames per sequence (BPTT length)")] = 64,
    lr: Annotated[float, typer.Option(help="peak learning rate (head and GRU)")] = 1e-3,
    cnn_lr_scale: Annotated[float, typer.Option(help="CNN lr / lr; 0 freezes the CNN")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = 1e-4,
    warmup_steps: Annotated[int, typer.Option(help="linear warm-up steps")] = 50,
    min_lr_ratio: Annotated[float, typer.Option(help="final lr / peak lr (cosine)")] = 0.05,
    tiny: Annotated[bool, typer.Option(help="tiny model (scratch only)")] = False,
    width: Annotated[float, typer.Option(help="CNN width multiplier (scratch only)")] = 0.375,
    hidden_size: Annotated[int, typer.Option(help="GRU state size (scratch only)")] = 256,
    norm: Annotated[str, typer.Option(help="CNN norm, scratch only: batch | group")] = "batch",
    inputs: Annotated[str, typer.Option(
        help="image | geometry | image+geometry; default: --init's, else image")] = "",
    seed: Annotated[int, typer.Option(help="random seed of init and batches")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 200,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    augment: Annotated[bool, typer.Option(help="per-sequence augmentation")] = True,
    split: Annotated[str, typer.Option(help="train | test | all (synthetic data)")] = ALL,
    baseline_prior_frames: Annotated[int, typer.Option(
        help="geometry, scratch only: weight in frames of the neutral prior the baseline starts "
             "from (0: none)")] = 0,
    absolute_fade_frames: Annotated[int, typer.Option(
        help="geometry, new models: frames over which a new face's difference from the neutral "
             "prior fades out of the encoder's input (0: none)")] = 0,
    cold_start: Annotated[float, typer.Option(
        help="geometry: share of clips started from the zero state (a face first seen "
             "mid-expression)")] = 0.0,
    geometry_noise: Annotated[float, typer.Option(
        help="geometry, with --augment: per-frame landmark noise (crop sides)")] = 0.0,
    pose_jitter: Annotated[float, typer.Option(
        help="geometry, with --augment: head turn per sequence, yaw / pitch up to +-degrees")
    ] = 0.0,
    ccc_weight: Annotated[float, typer.Option(
        help="weight of the mean (1 - CCC) term over AUs, beside --loss (0: none)")] = 0.0,
) -> None:
    """Stage 2: regress AU intensities from sparse labeled frames, BPTT through the GRU."""
    config = config_from_options(FinetuneConfig, locals())
    print(finetune(config, Console(stderr=True)), flush=True)
