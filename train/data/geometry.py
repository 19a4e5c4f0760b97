"""Model inputs of clips: crops, and for geometry models the landmark features and the baseline.

A clip store keeps each frame's MediaPipe landmarks (frame pixels) beside the crop. A geometry
model (`train/model.py`, `ModelConfig.inputs`) takes `rtau.geometry.geometry_features` of them,
the function live use applies, and keeps a running baseline of them in its state. A training
clip starts in the middle of a video, where a live face would have been seen for `start` frames
already: `GeometrySource.start_state` is the baseline part of the state after frames
0..start-1 (the model's own update rule, replayed in numpy), so the baseline a clip sees in
training is the one the same frame would see live. The GRU hidden part starts at zero, as in
every stage-2 clip.

Run: `source = GeometrySource.for_model(store, model)`, `inputs = batch_inputs(model.cfg, clips,
source, device)`, then
`model.sequence_outputs(inputs.images, inputs.state, inputs.geometry, inputs.present)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rtau.geometry import GEOMETRY_SIZE, geometry_batch
from train.data.store import Clip, ClipStore
from train.model import AUModel, ModelConfig


def video_geometry(store: ClipStore, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32[N, G] geometry features, bool[N] face found) of a video; zeros where no face."""
    found = np.asarray(store.face_found(video_id), bool)
    features = np.zeros((len(found), GEOMETRY_SIZE), np.float32)
    features[found] = geometry_batch(np.asarray(store.landmarks(video_id))[found])
    return features, found


def running_baseline(features: np.ndarray, found: np.ndarray, baseline_frames: int,
                     prior: np.ndarray | None = None, prior_frames: int = 0) -> np.ndarray:
    """float32[N + 1, G + 1]: row t is the state's (mean, count) of the model's baseline after
    frames 0..t-1 (row 0: the zero state), by `AUModel.update_baseline`'s rule; with a prior
    float32[G] worth prior_frames frames, the mean is the offset from it."""
    n, g = features.shape
    out = np.zeros((n + 1, g + 1), np.float32)
    mean = np.zeros(g, np.float32)
    count = np.float32(0.0)
    for t in range(n):
        if found[t]:
            count = np.float32(min(count + 1.0, baseline_frames))
            if prior is None:
                mean = mean + (features[t] - mean) / count
            else:
                mean = mean + (features[t] - prior - mean) / np.float32(count + prior_frames)
        out[t + 1, :g] = mean
        out[t + 1, g] = count
    return out


def geometry_prior(videos: Sequence[tuple[ClipStore, str]]) -> np.ndarray:
    """float32[G]: a population-neutral face of the (store, video id) videos, label-free: the
    mean over videos of each video's median geometry (faces rest more than they act, so the
    median is near neutral). Raises ValueError when no video has a face."""
    medians = []
    for store, video_id in videos:
        features, found = video_geometry(store, video_id)
        if found.any():
            medians.append(np.median(features[found], axis=0))
    if not medians:
        raise ValueError("no face in the training videos to make a baseline prior from")
    return np.mean(medians, axis=0).astype(np.float32)


class GeometrySource:
    """Geometry features and baselines of a store's videos, computed once per video and kept."""

    def __init__(self, store: ClipStore, baseline_frames: int, prior: np.ndarray | None = None,
                 prior_frames: int = 0) -> None:
        self.store, self.baseline_frames = store, baseline_frames
        self.prior, self.prior_frames = prior, prior_frames
        self._videos: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def for_model(cls, store: ClipStore, model: AUModel) -> GeometrySource:
        """The source of `model`'s baseline rule (its memory, and its prior if it has one)."""
        prior = None
        if model.prior_in_baseline:
            prior = model.baseline_prior.detach().cpu().numpy().astype(np.float32)
        return cls(store, model.cfg.baseline_frames, prior, model.cfg.baseline_prior_frames)

    def _video(self, video_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if video_id not in self._videos:
            features, found = video_geometry(self.store, video_id)
            self._videos[video_id] = (
                features, found, running_baseline(features, found, self.baseline_frames,
                                                  self.prior, self.prior_frames))
        return self._videos[video_id]

    def clip(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """(geometry float32[T, G], present float32[T]) of a clip's frames."""
        features, found, _ = self._video(clip.video_id)
        stop = clip.start + len(clip.labels)
        return features[clip.start:stop], found[clip.start:stop].astype(np.float32)

    def landmarks(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """(float32[T, 478, 3] landmarks in frame pixels, bool[T] face found) of a clip."""
        stop = clip.start + len(clip.labels)
        found = np.asarray(self.store.face_found(clip.video_id)[clip.start:stop], bool)
        return np.asarray(self.store.landmarks(clip.video_id)[clip.start:stop], np.float32), found

    def start_state(self, clip: Clip) -> np.ndarray:
        """float32[G + 1]: the baseline part of the state before the clip's first frame."""
        return self._video(clip.video_id)[2][clip.start]


@dataclass(frozen=True)
class ModelInputs:
    """A batch of clips as model inputs: images uint8[B, T, S, S, 3] | None, geometry
    float32[B, T, G] | None, present float32[B, T] | None, state float32[B, H] | None (None:
    the zero state)."""

    images: torch.Tensor | None
    geometry: torch.Tensor | None
    present: torch.Tensor | None
    state: torch.Tensor | None

    def to(self, device: str | torch.device) -> ModelInputs:
        """The same inputs on `device`."""
        def moved(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return ModelInputs(moved(self.images), moved(self.geometry), moved(self.present),
                           moved(self.state))


def batch_inputs(cfg: ModelConfig, clips: Sequence[Clip],
                 source: GeometrySource | Sequence[GeometrySource] | None,
                 device: str | torch.device = "cpu", warm_start: bool = True,
                 cold: Sequence[bool] | None = None) -> ModelInputs:
    """The inputs `cfg`'s model takes for `clips` (equal lengths); `source`: the clips' store's,
    or one per clip (clips of several stores). warm_start: geometry models start from the
    baseline each clip's first frame would have live (else the zero state); `cold` (one per
    clip) starts the marked clips from the zero state anyway: a face first seen mid-video."""
    images = geometry = present = state = None
    if cfg.uses_image:
        images = torch.from_numpy(np.stack([c.images for c in clips])).to(device)
    if cfg.uses_geometry:
        if source is None:
            raise ValueError("a geometry model needs a GeometrySource")
        sources = [source] * len(clips) if isinstance(source, GeometrySource) else list(source)
        pairs = [src.clip(c) for src, c in zip(sources, clips, strict=True)]
        geometry = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
        present = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
        if warm_start:
            tails = np.stack([src.start_state(c) for src, c in zip(sources, clips, strict=True)])
            if cold is not None:
                tails[np.asarray(cold, bool)] = 0.0
            hidden = np.zeros((len(clips), cfg.hidden_size), np.float32)
            state = torch.from_numpy(np.concatenate([hidden, tails], 1)).to(device)
    return ModelInputs(images, geometry, present, state)
