"""Clip augmentations for contrastive pretraining: callables that turn clips into two views.

    views = TwoViews(AugmentConfig())
    view_a, view_b = views(clips_a, clips_b, generator)   # uint8[B, T, S, S, 3] -> float32 0..255

Every parameter is drawn once per clip and applied to all T frames of it, so an augmentation
never looks like motion inside a clip (the temporal module would otherwise learn from fake
movement). The two views of a pair get independent crop/scale jitter, colour jitter, blur and
grayscale; the horizontal flip is drawn once per pair and applied to both views, so the two
views keep the same left/right sides of the face (AU asymmetry stays a positive, not noise).

Crop/scale jitter stays below the AU displacements it must not wash out: the smallest FACS
templates of train/data/au_templates.py move landmarks ~0.04-0.07 inter-ocular distances
(IOD) at full intensity, 1.2-2.2 px at 112 px where the aligned IOD is ~31 px (rtau.align); the
default jitter is at most 0.8% of the crop side (0.9 px) and 1.5% scale (0.5 px at the eyes),
below those and about the size of 5-point alignment jitter itself (~0.03 IOD).
Stage 1's dynamics objectives contrast two views of the *same* frame, so two shortcuts must be
closed there (PretrainConfig turns these on): `noise_std` adds independent Gaussian pixel noise
to every frame of every view (otherwise the identical sensor noise of a frame's two views
identifies it), and `per_frame_colour` draws brightness / contrast / saturation per frame
instead of per clip (otherwise a slow lighting track tells times apart). Both are photometric:
they do not move anything, so they do not look like motion.
Images stay BGR, channels last, floats in 0..255 (what `AUModel` accepts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rtau.geometry import GEOMETRY_SIZE, geometry_batch

GRAY_WEIGHTS_BGR = (0.114, 0.587, 0.299)
BLUR_RADIUS_PER_SIGMA = 2  # kernel half-width in sigmas (covers 95% of the Gaussian)
PIXEL_MAX = 255.0


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths. Shift and scale are fractions of the crop side.

    max_shift: translation, uniform in +-max_shift * S per axis.
    max_scale: zoom, uniform in 1 +- max_scale.
    brightness, contrast, saturation: multiplicative factors, uniform in 1 +- value.
    blur_probability, blur_sigma: Gaussian blur, sigma in px uniform in blur_sigma.
    gray_probability: convert to grayscale (kept 3 channels).
    flip_probability: horizontal flip of both views of a pair.
    noise_std: Gaussian pixel noise (grey levels), drawn independently per frame and view.
    per_frame_colour: colour factors drawn per frame instead of per clip.
    """

    max_shift: float = 0.008
    max_scale: float = 0.015
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    blur_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    gray_probability: float = 0.2
    flip_probability: float = 0.5
    noise_std: float = 0.0
    per_frame_colour: bool = False


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _bernoulli(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of float NCHW images (reflect padding)."""
    radius = max(1, int(round(BLUR_RADIUS_PER_SIGMA * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class ClipAugment:
    """One view: clips uint8/float [B, T, S, S, 3] BGR + flip bool[B] -> float32 [B, T, S, S, 3]."""

    def __init__(self, config: AugmentConfig = AugmentConfig()):
        self.config = config

    def __call__(
        self, clips: torch.Tensor, flip: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        cfg = self.config
        b, t, s = clips.shape[0], clips.shape[1], clips.shape[2]
        x = clips.to(torch.float32).reshape(b * t, s, s, 3).permute(0, 3, 1, 2)
        # geometry: one affine per clip (theta maps output to input coordinates in [-1, 1])
        scale = _uniform(b, 1 - cfg.max_scale, 1 + cfg.max_scale, generator)
        shift = _uniform(2 * b, -2 * cfg.max_shift, 2 * cfg.max_shift, generator).view(b, 2)
        sign = torch.where(flip, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = sign / scale
        theta[:, 1, 1] = 1.0 / scale
        theta[:, :, 2] = shift
        theta = theta.to(x.device).repeat_interleave(t, dim=0)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # colour: brightness, contrast about the clip-frame mean, saturation about the gray
        weights = torch.tensor(GRAY_WEIGHTS_BGR, device=x.device).view(1, 3, 1, 1)

        def per_frame(v: torch.Tensor) -> torch.Tensor:
            return v.to(x.device).repeat_interleave(t).view(b * t, 1, 1, 1)

        def colour(spread: float) -> torch.Tensor:
            if cfg.per_frame_colour:
                return _uniform(b * t, 1 - spread, 1 + spread, generator).to(x.device).view(
                    b * t, 1, 1, 1)
            return per_frame(_uniform(b, 1 - spread, 1 + spread, generator))

        x = x * colour(cfg.brightness)
        gray = (x * weights).sum(1, keepdim=True)
        contrast = colour(cfg.contrast)
        x = (x - gray.mean((2, 3), keepdim=True)) * contrast + gray.mean((2, 3), keepdim=True)
        gray = (x * weights).sum(1, keepdim=True)
        saturation = colour(cfg.saturation)
        x = gray + (x - gray) * saturation
        to_gray = per_frame(_bernoulli(b, cfg.gray_probability, generator).float())
        x = to_gray * (x * weights).sum(1, keepdim=True) + (1 - to_gray) * x
        blur = _bernoulli(b, cfg.blur_probability, generator)
        sigmas = _uniform(b, *cfg.blur_sigma, generator)
        x = x.clamp(0, PIXEL_MAX).view(b, t, 3, s, s)
        for i in torch.nonzero(blur).flatten().tolist():
            x[i] = gaussian_blur(x[i], float(sigmas[i]))
        if cfg.noise_std > 0:
            noise = torch.randn(x.shape, generator=generator).to(x.device)
            x = (x + cfg.noise_std * noise).clamp(0, PIXEL_MAX)
        return x.permute(0, 1, 3, 4, 2).contiguous()


class TwoViews:
    """The two views of positive pairs: (clips_a, clips_b) -> (view_a, view_b), shared flips."""

    def __init__(self, config: AugmentConfig = AugmentConfig()):
        self.config = config
        self.augment = ClipAugment(config)

    def __call__(
        self, clips_a: torch.Tensor, clips_b: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flip = _bernoulli(clips_a.shape[0], self.config.flip_probability, generator)
        return self.augment(clips_a, flip, generator), self.augment(clips_b, flip, generator)


def rotate_landmarks(landmarks: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """float32[T, 478, 3] landmarks (frame pixels, MediaPipe's z) turned by yaw (about the
    vertical axis) and pitch (about the horizontal axis), about each frame's centroid: the same
    face and expression, seen from a slightly different head pose."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(yaw), 0.0, np.sin(yaw)], [0.0, 1.0, 0.0],
                   [-np.sin(yaw), 0.0, np.cos(yaw)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), -np.sin(pitch)],
                   [0.0, np.sin(pitch), np.cos(pitch)]])
    centre = landmarks.mean(axis=-2, keepdims=True)
    return ((landmarks - centre) @ (ry @ rx).T + centre).astype(np.float32)


class GeometryViews:
    """Two views of geometry clips: independent Gaussian landmark noise per frame and view, and
    (pose_jitter_deg > 0) an independent small head turn per clip and view.

    The noise (std in geometry-feature units: crop sides, see rtau.geometry) stands for
    MediaPipe's own frame-to-frame jitter (~0.001 in the synthetic stores, where the median
    coordinate moves ~0.003 over a video), so two views of one frame stay closer than the same
    face's other expressions. The head turn (yaw and pitch uniform in +-pose_jitter_deg, the
    landmarks rotated in 3D before the 2D alignment) makes the pose residual the rigid
    alignment leaves a nuisance: the two views of a frame then differ in pose, not expression.
    Only the geometry changes; the baseline state is shared.
    """

    def __init__(self, noise_std: float, pose_jitter_deg: float = 0.0):
        if noise_std < 0 or pose_jitter_deg < 0:
            raise ValueError("geometry noise and pose jitter must be >= 0")
        self.noise_std, self.pose_jitter_deg = noise_std, pose_jitter_deg

    def _posed(self, landmarks: list[np.ndarray], found: list[np.ndarray],
               generator: torch.Generator) -> torch.Tensor:
        clips = []
        for lm, ok in zip(landmarks, found, strict=True):
            yaw, pitch = (self.pose_jitter_deg * (2 * torch.rand(2, generator=generator) - 1)
                          ).tolist()
            features = np.zeros((len(ok), GEOMETRY_SIZE), np.float32)
            if ok.any():
                features[ok] = geometry_batch(rotate_landmarks(lm[ok], yaw, pitch))
            clips.append(features)
        return torch.from_numpy(np.stack(clips))

    def view(self, geometry: torch.Tensor, generator: torch.Generator,
             landmarks: list[np.ndarray] | None = None,
             found: list[np.ndarray] | None = None) -> torch.Tensor:
        """One view of geometry float32[B, T, G] (same shape). With pose jitter it is made from
        the clips' landmarks (B x float[T, 478, 3], found B x bool[T]) instead."""
        base = geometry
        if self.pose_jitter_deg > 0:
            if landmarks is None or found is None:
                raise ValueError("pose jitter needs the clips' landmarks")
            base = self._posed(landmarks, found, generator).to(geometry.device)
        noise = torch.randn(geometry.shape, generator=generator).to(geometry.device)
        return base + self.noise_std * noise

    def __call__(self, geometry: torch.Tensor, generator: torch.Generator,
                 landmarks: list[np.ndarray] | None = None,
                 found: list[np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """geometry float32[B, T, G] -> (view_a, view_b), two independent `view`s."""
        return (self.view(geometry, generator, landmarks, found),
                self.view(geometry, generator, landmarks, found))
