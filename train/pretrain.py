"""`python -m train pretrain`: stage 1, self-supervised pretraining on unlabeled clips.

    python -m train pretrain --store stores/synth --store stores/clips --out runs/pre.pt \
        --steps 2000 --batch-size 32 --clip-len 16 [--method auto|dynamics|cpc|frame|simclr|moco] \
        [--inputs image|geometry|image+geometry] \
        [--probe-store stores/train_labeled --probe-test-store stores/test_labeled]
    torchrun --nproc-per-node 4 -m train pretrain ...      # DistributedDataParallel

--method auto (the default) runs "simclr" for image models, the objective the linear probe
measured best on the crop (README, "Which stage 1 objective": by a small margin, one seed, and
no objective beat the untrained model), and "dynamics" for geometry models (--inputs geometry |
image+geometry), which clip methods do not take.
Dynamics methods ("dynamics", "cpc", "frame"; train/contrastive.py): each step draws
`batch_size` clips of clip_len consecutive frames, `clips_per_video` of them from each video (so
the batch always holds frames of one video at other times: identity alone cannot solve the
objective), and makes two views of every clip: for the crop independent pixel noise and
per-frame colour jitter per view (train/augment.py), for the geometry independent landmark
noise (`geometry_noise`, crop sides) and head turn (`pose_jitter`, degrees of yaw and pitch)
per view. Geometry clips start from the baseline their
first frame would have live (train/data/geometry.py), as in stage 2. The objective contrasts
frames across views and predicts future frame embeddings from the GRU state. Clip methods
(simclr, moco: the first design, kept for the comparison in benchmarks/contrastive_methods.py):
two clips of one video at most `max_offset` frames apart are a positive pair, clips of other
videos the negatives.

--probe-store STORE (labeled; its labels are never used for training): at every checkpoint the
frozen model is scored by the linear probe (train/probe.py): ridge regression fitted on the
probe store, scored as ICC on --probe-test-store (other identities; without it, the probe
store's fold 0 of 3 is held out by subject). The scores go into the checkpoint's `probe`
history and the console. A probe identity that stage 1 trains on is refused.

Labels in the training stores are ignored. The checkpoint at --out (written atomically every
`checkpoint_every` steps, at the end and on Ctrl-C) holds the AUModel weights, the objective's
own state (projectors, predictors, moco queue), the optimiser state, the loss and probe
history and the identities it saw; running the same command again resumes from it (with the
same stores and settings, or it refuses). A NaN / infinite loss stops the run and keeps the last
checkpoint. With torchrun every rank draws its own batch (seeded by rank); SimCLR negatives are
gathered from all ranks, dynamics negatives stay within a rank's batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import typer
from rich.console import Console

from rtau.commands.options import config_from_options
from train import loop
from train.augment import AugmentConfig, GeometryViews, TwoViews
from train.contrastive import METHODS, ContrastConfig, build_objective
from train.data.geometry import GeometrySource, batch_inputs, geometry_prior
from train.data.splits import ALL, check_split, split_video_ids
from train.data.store import Clip, ClipStore, StoreError, common_alignment, read_clip
from train.evaluate import fold_videos, video_identities
from train.model import INPUT_KINDS, INPUTS_IMAGE, AUModel
from train.probe import linear_probe

STAGE = "pretrain"
MIN_FACE_SHARE = 0.5  # a clip with fewer frames with a face than this is redrawn
MAX_REDRAWS = 8
PROBE_HELD_OUT_FOLD, PROBE_FOLDS = 0, 3
STAGE1_NOISE_STD = 4.0  # grey levels: above the generator's sensor noise (sigma ~2-4)
GEOMETRY_NOISE_STD = 0.001  # crop sides: MediaPipe's frame-to-frame jitter (train/augment.py)
AUTO_METHOD = "auto"


@dataclass(frozen=True)
class PretrainConfig(loop.StageFields):
    """Settings of a stage 1 run; CLI flags map 1:1 to fields.

    store: clip stores to draw from (labels unused). out: the checkpoint (resumed if present).
    clip_len: frames per clip. Dynamics methods: clips_per_video clips of each video per batch;
      horizons K and margin (frames) of the objective; noise_std / per_frame_colour close the
      shortcuts of contrasting two views of one frame (train/augment.py). Clip methods:
      max_offset, the largest gap in frames between the starts of the two clips of a pair.
    Model: `tiny` (tests / smoke runs) or width + hidden_size; norm group | batch.
    lr schedule: warm-up for warmup_steps, cosine to min_lr_ratio * lr at `steps`.
    probe_store / probe_test_store: the linear probe at checkpoints (module docstring).
    """

    store: tuple[Path, ...]
    out: Path
    steps: int = 2000
    batch_size: int = 32
    clip_len: int = 16
    max_offset: int = 8
    clips_per_video: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    method: str = AUTO_METHOD  # simclr for image models, dynamics for geometry (docstring)
    temperature: float = 0.1
    projection_dim: int = 128
    horizons: int = 3
    margin: int = 3
    frame_weight: float = 1.0
    predictive_weight: float = 1.0
    noise_std: float = STAGE1_NOISE_STD
    per_frame_colour: bool = True
    geometry_noise: float = GEOMETRY_NOISE_STD
    pose_jitter: float = 0.0  # degrees of yaw and pitch between geometry views (train/augment.py)
    queue_size: int = 4096
    momentum: float = 0.99
    norm: str = field(default="group", kw_only=True)
    probe_store: Path | None = None
    probe_test_store: Path | None = None
    split: str = ALL  # train | test | all: of synthetic stores; other stores are used whole

    def check(self) -> None:
        check_split(self.split)
        if not self.store:
            raise ValueError("give at least one --store")
        for name in ("steps", "batch_size", "clip_len", "checkpoint_every", "clips_per_video"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size < 2:
            raise ValueError("--batch-size must be at least 2 (negatives come from the batch)")
        if self.inputs not in ("", *INPUT_KINDS):
            raise ValueError(f"--inputs must be one of {INPUT_KINDS}, got {self.inputs!r}")
        if self.inputs not in ("", INPUTS_IMAGE) and not self.contrast().dynamics:
            raise ValueError(f"--method {self.method} contrasts clips of image models; geometry "
                             "models take a dynamics method (dynamics | cpc | frame)")
        if self.geometry_noise < 0 or self.pose_jitter < 0:
            raise ValueError("--geometry-noise and --pose-jitter must be >= 0")
        if self.max_offset < 0:
            raise ValueError("--max-offset must be >= 0")
        if self.probe_test_store is not None and self.probe_store is None:
            raise ValueError("--probe-test-store needs --probe-store (the probe is fitted there)")

    @property
    def objective(self) -> str:
        """The method run: --method, or for "auto" simclr (image models) / dynamics (geometry)."""
        if self.method != AUTO_METHOD:
            return self.method
        return "simclr" if self.inputs in ("", INPUTS_IMAGE) else "dynamics"

    def contrast(self) -> ContrastConfig:
        return ContrastConfig(
            method=self.objective, temperature=self.temperature,
            projection_dim=self.projection_dim,
            queue_size=self.queue_size, momentum=self.momentum, horizons=self.horizons,
            margin=self.margin, frame_weight=self.frame_weight,
            predictive_weight=self.predictive_weight,
        )

    def augment(self) -> AugmentConfig:
        if self.contrast().dynamics:
            return AugmentConfig(noise_std=self.noise_std, per_frame_colour=self.per_frame_colour)
        return AugmentConfig()


def _split_ids(store: ClipStore, split: str) -> list[str]:
    """The store's video ids in `split` (synthetic stores; other stores: every video)."""
    chosen = split_video_ids(store, split, strict=False)
    return [v for v in store.video_ids if chosen is None or v in chosen]


def _usable_videos(
    stores: Sequence[ClipStore], span: int, split: str = ALL
) -> list[tuple[ClipStore, str, int]]:
    """(store, video id, frames) of every video of `split` with `span` frames, mostly faces."""
    sizes = {s.crop_size for s in stores}
    if len(sizes) != 1:
        raise StoreError(f"the stores have different crop sizes {sorted(sizes)}")
    chosen = {id(s): set(_split_ids(s, split)) for s in stores}
    items = [
        (store, v.id, v.num_frames)
        for store in stores
        for v in store.videos
        if v.id in chosen[id(store)]
        and v.num_frames >= span and v.faces_found >= MIN_FACE_SHARE * v.num_frames
    ]
    if not items:
        raise StoreError(
            f"no video in {', '.join(str(s.root) for s in stores)} has {span} frames "
            "with faces: use shorter clips"
        )
    return items


def _read_with_faces(store: ClipStore, video_id: str, n: int, span: int,
                     rng: np.random.Generator):
    """A clip of `span` frames at a random start, redrawn while most frames have no face."""
    for _ in range(MAX_REDRAWS):
        start = int(rng.integers(n - span + 1))
        clip = read_clip(store, video_id, start, span)
        if clip.face_found is None or clip.face_found.mean() >= MIN_FACE_SHARE:
            break
    return clip


class PairSampler:
    """Clip methods: positive pairs of nearby clips from one or more stores (one crop size)."""

    def __init__(
        self, stores: Sequence[ClipStore], clip_len: int, max_offset: int, split: str = ALL
    ):
        self.clip_len, self.span = clip_len, clip_len + max_offset
        self.items = _usable_videos(stores, self.span, split)
        self.crop_size = self.items[0][0].crop_size
        starts = np.array([n - self.span + 1 for _, _, n in self.items], float)
        self.weights = starts / starts.sum()

    def batch(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two uint8[size, T, S, S, 3] arrays; row i of both is one pair, rows from distinct
        videos when there are at least `size` videos."""
        replace_ = size > len(self.items)
        picks = rng.choice(len(self.items), size=size, replace=replace_, p=self.weights)
        a, b = [], []
        for pick in picks:
            store, video_id, n = self.items[int(pick)]
            clip = _read_with_faces(store, video_id, n, self.span, rng)
            offset = int(rng.integers(self.span - self.clip_len + 1))
            a.append(clip.images[: self.clip_len])
            b.append(clip.images[offset : offset + self.clip_len])
        return np.stack(a), np.stack(b)


class VideoClipSampler:
    """Dynamics methods: batches of clips, `clips_per_video` of each video drawn."""

    def __init__(self, stores: Sequence[ClipStore], clip_len: int, clips_per_video: int,
                 split: str = ALL):
        self.clip_len, self.clips_per_video = clip_len, clips_per_video
        self.items = _usable_videos(stores, clip_len, split)
        self.crop_size = self.items[0][0].crop_size
        frames = np.array([n for _, _, n in self.items], float)
        self.weights = frames / frames.sum()

    def batch(self, size: int, rng: np.random.Generator
              ) -> tuple[list[tuple[ClipStore, Clip]], np.ndarray, np.ndarray]:
        """([(store, clip)] * size, video int64[size], frame int64[size, T]).

        ceil(size / clips_per_video) videos (distinct when there are enough), each giving
        clips_per_video clips at independent random starts (overlaps are fine: the objective
        masks same-video keys near the positive by their frame index).
        """
        groups = -(-size // self.clips_per_video)
        replace_ = groups > len(self.items)
        picks = rng.choice(len(self.items), size=groups, replace=replace_, p=self.weights)
        clips, video, frame = [], [], []
        for pick in np.repeat(picks, self.clips_per_video)[:size]:
            store, video_id, n = self.items[int(pick)]
            clip = _read_with_faces(store, video_id, n, self.clip_len, rng)
            clips.append((store, clip))
            video.append(int(pick))
            frame.append(np.arange(clip.start, clip.start + self.clip_len))
        return clips, np.array(video, np.int64), np.stack(frame).astype(np.int64)


def stage1_identities(stores: Sequence[ClipStore], split: str = ALL) -> list[str]:
    """Every identity (person) of the videos stage 1 trains on."""
    return sorted({p for s in stores for p in video_identities(s, _split_ids(s, split)).values()})


class Prober:
    """The linear probe of --probe-store at checkpoints (None-safe: does nothing without one)."""

    def __init__(self, config: PretrainConfig, trained_on: Sequence[str]):
        self.fit = self.test = None
        if config.probe_store is None:
            return
        self.fit = ClipStore(config.probe_store)
        if config.probe_test_store is None:
            self.test = self.fit
            self.fit_ids, self.test_ids = fold_videos(self.fit, PROBE_HELD_OUT_FOLD, PROBE_FOLDS)
        else:
            self.test = ClipStore(config.probe_test_store)
            self.fit_ids, self.test_ids = self.fit.video_ids, self.test.video_ids
        seen = set(video_identities(self.test, self.test_ids).values()) & set(trained_on)
        if seen:
            raise ValueError(
                f"the probe's test identities are in the stage 1 stores: {', '.join(sorted(seen))}"
                " (the probe must score people stage 1 never saw)"
            )

    def __call__(self, model: AUModel, step: int, device) -> dict | None:
        if self.fit is None:
            return None
        scores = linear_probe(model, self.fit, self.test, self.fit_ids, self.test_ids,
                              device=device)
        return {"step": step, **{f"{k}_{m}": v[m] for k, v in scores.items() for m in v}}


def pretrain(
    config: PretrainConfig,
    console: Console | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Run (or resume) stage 1; returns the checkpoint path. on_step(step, loss) after each step."""
    config.check()
    config.contrast().check()
    with loop.training_runtime(config.device) as runtime:
        return _run(config, runtime, console or Console(stderr=True), on_step)


def _run(config: PretrainConfig, runtime: loop.Runtime, console: Console, on_step) -> Path:
    stores = [ClipStore(p) for p in config.store]
    alignment = common_alignment(stores)
    contrast = config.contrast()
    if contrast.dynamics:
        sampler = VideoClipSampler(stores, config.clip_len, config.clips_per_video, config.split)
    else:
        sampler = PairSampler(stores, config.clip_len, config.max_offset, config.split)
    identities = stage1_identities(stores, config.split)
    prober = Prober(config, identities)
    out = Path(config.out)
    resumed = loop.load_for_resume(out, STAGE, config, loop.FREE_FIELDS)
    torch.manual_seed(config.seed)
    model = resumed.model if resumed else AUModel(config.model_config(sampler.crop_size))
    if not resumed and model.has_prior:
        videos = [(store, video_id) for store, video_id, _ in sampler.items]
        model.set_baseline_prior(torch.from_numpy(geometry_prior(videos)))
    objective = build_objective(model, contrast)
    if resumed:
        state = {f"encoder.{k}": v for k, v in model.state_dict().items()}
        objective.load_state_dict({**state, **resumed.extra["objective"]})
    objective.to(runtime.device).train()
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    start, history, probes = 0, [], []
    if resumed:
        optimizer.load_state_dict(resumed.extra["optimizer"])
        start, history = resumed.step, list(resumed.extra.get("history", []))
        probes = list(resumed.extra.get("probe", []))
    wrapped = objective
    if runtime.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            find_unused_parameters=config.objective == "frame",  # the GRU has no gradient there
        )
    views = TwoViews(config.augment())
    geometry_views = GeometryViews(config.geometry_noise, config.pose_jitter)
    sources = {id(s): GeometrySource.for_model(s, model) for s in stores}

    def save(step: int) -> None:
        if not runtime.main:
            return
        if prober.fit is not None and not any(p["step"] == step for p in probes):
            scores = prober(model, step, runtime.device)
            objective.train()
            probes.append(scores)
            if not config.quiet:
                console.print(f"step {step}: linear probe ICC frame {scores['frame_icc']:.3f}, "
                              f"gru {scores['gru_icc']:.3f} (unseen identities)")
        loop.save_training_state(
            out, model, step, STAGE, config, optimizer, history,
            objective=objective.objective_state(), probe=probes, train_identities=identities,
            alignment=alignment,
        )

    def step_loss(step: int) -> torch.Tensor:
        rng, generator = loop.step_generators(config.seed, runtime.rank, step)
        device = runtime.device
        if contrast.dynamics:
            items, video, frame = sampler.batch(config.batch_size, rng)
            clips = [clip for _, clip in items]
            # built on the CPU, where the views draw their randomness, then moved
            inputs = batch_inputs(model.cfg, clips, [sources[id(s)] for s, _ in items])
            view_a = view_b = inputs
            if inputs.images is not None:
                a, b = views(inputs.images, inputs.images, generator)
                view_a, view_b = replace(view_a, images=a), replace(view_b, images=b)
            if inputs.geometry is not None:
                landmarks = found = None
                if config.pose_jitter > 0:
                    pairs = [sources[id(s)].landmarks(c) for s, c in items]
                    landmarks, found = [p[0] for p in pairs], [p[1] for p in pairs]
                a, b = geometry_views(inputs.geometry, generator, landmarks, found)
                view_a, view_b = replace(view_a, geometry=a), replace(view_b, geometry=b)
            terms = wrapped(view_a.to(device), view_b.to(device), torch.from_numpy(video),
                            torch.from_numpy(frame))
            return sum(w * F.cross_entropy(logits, labels) for _, w, logits, labels in terms)
        a, b = sampler.batch(config.batch_size, rng)
        view_a, view_b = views(torch.from_numpy(a), torch.from_numpy(b), generator)
        logits, labels = wrapped(view_a.to(device), view_b.to(device))
        return F.cross_entropy(logits, labels)

    loop.run_steps(
        stage=STAGE, schedule=loop.Schedule.of(config), start=start, optimizer=optimizer,
        lr_scales=[1.0], step_loss=step_loss, save=save, history=history, runtime=runtime,
        out=out, console=console, quiet=config.quiet, items_per_step=config.batch_size,
        unit="clips", on_step=on_step,
    )
    return out


def pretrain_command(
    store: Annotated[list[Path], typer.Option(help="clip store to draw from (repeatable)")],
    out: Annotated[Path, typer.Option(help="checkpoint to write (resumed if it exists)")],
    steps: Annotated[int, typer.Option(help="optimiser steps in all")] = 2000,
    batch_size: Annotated[int, typer.Option(help="clips (pairs for clip methods) per step")] = 32,
    clip_len: Annotated[int, typer.Option(help="frames per clip")] = 16,
    max_offset: Annotated[int, typer.Option(help="clip methods: max frames between the two clips")
                          ] = 8,
    clips_per_video: Annotated[int, typer.Option(help="dynamics: clips of each video per batch")
                               ] = 4,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW)")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = 1e-4,
    warmup_steps: Annotated[int, typer.Option(help="linear warm-up steps")] = 100,
    min_lr_ratio: Annotated[float, typer.Option(help="final lr / peak lr (cosine)")] = 0.05,
    method: Annotated[str, typer.Option(
        help=f"objective: {' | '.join(METHODS)} | auto (simclr; geometry models: dynamics)")
    ] = AUTO_METHOD,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature")] = 0.1,
    projection_dim: Annotated[int, typer.Option(help="embedding size")] = 128,
    horizons: Annotated[int, typer.Option(help="dynamics: predicted horizons K")] = 3,
    margin: Annotated[int, typer.Option(help="dynamics: same-video frames masked (+-)")] = 3,
    frame_weight: Annotated[float, typer.Option(help="dynamics: frame term weight")] = 1.0,
    predictive_weight: Annotated[float, typer.Option(help="dynamics: CPC term weight")] = 1.0,
    noise_std: Annotated[float, typer.Option(help="dynamics: per-view pixel noise")
                         ] = STAGE1_NOISE_STD,
    geometry_noise: Annotated[float, typer.Option(
        help="dynamics, geometry models: per-view landmark noise (crop sides)")
    ] = GEOMETRY_NOISE_STD,
    pose_jitter: Annotated[float, typer.Option(
        help="dynamics, geometry models: yaw / pitch degrees between the two views")] = 0.0,
    per_frame_colour: Annotated[bool, typer.Option(help="dynamics: colour jitter per frame")
                                ] = True,
    queue_size: Annotated[int, typer.Option(help="moco: negatives in the queue")] = 4096,
    momentum: Annotated[float, typer.Option(help="moco: key encoder momentum")] = 0.99,
    tiny: Annotated[bool, typer.Option(help="tiny model (tests, smoke runs)")] = False,
    width: Annotated[float, typer.Option(help="CNN width multiplier")] = 0.375,
    hidden_size: Annotated[int, typer.Option(help="GRU state size H")] = 256,
    norm: Annotated[str, typer.Option(help="CNN norm: group | batch")] = "group",
    inputs: Annotated[str, typer.Option(
        help="image | geometry | image+geometry (geometry: a dynamics method)")] = "",
    baseline_prior_frames: Annotated[int, typer.Option(
        help="geometry: weight in frames of the neutral prior the baseline starts from")] = 0,
    absolute_fade_frames: Annotated[int, typer.Option(
        help="geometry, new models: frames over which a new face's difference from the neutral "
             "prior fades out of the encoder's input (0: none)")] = 0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints")] = 200,
    probe_store: Annotated[Path | None, typer.Option(help="labeled store: linear probe at "
                                                          "checkpoints")] = None,
    probe_test_store: Annotated[Path | None, typer.Option(help="store of unseen identities the "
                                                               "probe is scored on")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    split: Annotated[
        str, typer.Option(help="train | test | all: of synthetic stores (others whole)")
    ] = ALL,
) -> None:
    """Stage 1: self-supervised pretraining (CNN and/or geometry encoder + GRU), unlabeled clips."""
    config = config_from_options(PretrainConfig, locals(), store=tuple(store))
    path = pretrain(config, Console(stderr=True))
    print(path, flush=True)
