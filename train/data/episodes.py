"""AU intensity trajectories for the synthetic generator: episodes with realistic co-occurrence.

`sample_intensities(rng, n_frames, fps, config)` returns float32[n_frames, len(TEMPLATE_AUS)],
intensities 0..5 per frame in `rtau.aus`-style names order (`TEMPLATE_AUS`). An *event* starts
at random times (a Poisson process): either one AU alone (so every AU is also seen on its own)
or an expression that moves several AUs together (smile 6+12(+25), surprise 1+2(+5)(+25+26),
frown 4(+9)(+15)(+17), sadness 1+4+15(+17), fear 1+2+4+5+20+25, talking 25+26, ...), each
member with its own apex and small onset lag. Each AU's episode is onset / apex hold / offset
(smooth ramps), 0.3-3 s long, apex uniform in 1..5 (times a member factor). Blinks (AU45) are
separate, short (0.15-0.4 s) and frequent. Overlapping episodes of one AU take the maximum.
Rule kept for label consistency: a jaw drop parts the lips, so AU25 >= AU26 * JAW_LIP_RATIO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.data.au_templates import MAX_INTENSITY, TEMPLATE_AUS

# expressions: (name, [(AU, probability of taking part, apex factor)])
EXPRESSIONS: tuple[tuple[str, tuple[tuple[str, float, float], ...]], ...] = (
    ("smile", (("AU12", 1.0, 1.0), ("AU06", 0.7, 0.8), ("AU25", 0.5, 0.7))),
    ("laugh", (("AU12", 1.0, 1.0), ("AU06", 1.0, 0.9), ("AU25", 1.0, 0.9), ("AU26", 0.7, 0.7))),
    ("surprise", (("AU01", 1.0, 1.0), ("AU02", 1.0, 1.0), ("AU05", 0.6, 0.7), ("AU25", 0.5, 0.8),
                  ("AU26", 0.4, 0.8))),
    ("brow_raise", (("AU01", 1.0, 1.0), ("AU02", 0.9, 0.9))),
    ("frown", (("AU04", 1.0, 1.0), ("AU09", 0.2, 0.6), ("AU15", 0.3, 0.7), ("AU17", 0.4, 0.7))),
    ("sadness", (("AU01", 1.0, 0.8), ("AU04", 0.8, 0.7), ("AU15", 1.0, 0.9), ("AU17", 0.5, 0.7))),
    ("disgust", (("AU09", 1.0, 1.0), ("AU04", 0.4, 0.6), ("AU15", 0.3, 0.6), ("AU25", 0.3, 0.5))),
    ("fear", (("AU01", 1.0, 0.9), ("AU02", 0.8, 0.8), ("AU04", 0.8, 0.7), ("AU05", 0.8, 0.8),
              ("AU20", 1.0, 1.0), ("AU25", 0.8, 0.7))),
    ("talk", (("AU25", 1.0, 1.0), ("AU26", 0.6, 0.8))),
    ("lip_stretch", (("AU20", 1.0, 1.0), ("AU25", 0.3, 0.5))),
    ("doubt", (("AU15", 1.0, 1.0), ("AU17", 1.0, 1.0))),
)
JAW_LIP_RATIO = 0.6


@dataclass(frozen=True)
class EpisodeConfig:
    """Rates and shapes of the AU episodes (times in seconds, intensities 0..5)."""

    events_per_minute: float = 24.0  # expressions + single-AU events together
    single_au_fraction: float = 0.45  # share of events that move one AU alone
    blinks_per_minute: float = 12.0
    min_duration: float = 0.3
    max_duration: float = 3.0
    min_apex: float = 1.0
    max_apex: float = MAX_INTENSITY
    max_lag: float = 0.25  # members of an expression start up to this late
    blink_duration: tuple[float, float] = (0.15, 0.4)


def _envelope(
    n: int, fps: float, start: float, duration: float, apex: float, rng: np.random.Generator
) -> tuple[slice, np.ndarray]:
    """Frames and values of one onset / hold / offset episode (smoothstep ramps)."""
    onset_frac, offset_frac = rng.uniform(0.15, 0.4), rng.uniform(0.15, 0.4)
    t = np.arange(int(np.floor(start * fps)), int(np.ceil((start + duration) * fps)) + 1) / fps
    t = t[(t >= 0) & (t < n / fps)]
    if len(t) == 0:
        return slice(0, 0), np.zeros(0)
    x = (t - start) / duration
    up = np.clip(x / onset_frac, 0, 1)
    down = np.clip((1 - x) / offset_frac, 0, 1)
    ramp = np.minimum(up, down)
    value = apex * ramp * ramp * (3 - 2 * ramp)
    first = int(round(t[0] * fps))
    return slice(first, first + len(t)), value


def sample_intensities(
    rng: np.random.Generator, n_frames: int, fps: float, config: EpisodeConfig = EpisodeConfig()
) -> np.ndarray:
    """float32[n_frames, len(TEMPLATE_AUS)]: AU intensities per frame (see module docstring)."""
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"need at least one frame and a positive fps, got {n_frames}, {fps}")
    col = {au: k for k, au in enumerate(TEMPLATE_AUS)}
    out = np.zeros((n_frames, len(TEMPLATE_AUS)), np.float64)
    seconds = n_frames / fps
    singles = [au for au in TEMPLATE_AUS if au != "AU45"]

    def add(au: str, start: float, duration: float, apex: float) -> None:
        where, value = _envelope(n_frames, fps, start, duration, min(apex, config.max_apex), rng)
        k = col[au]
        out[where, k] = np.maximum(out[where, k], value)

    n_events = rng.poisson(config.events_per_minute * seconds / 60.0)
    for start in np.sort(rng.uniform(-1.0, seconds, n_events)):
        duration = rng.uniform(config.min_duration, config.max_duration)
        apex = rng.uniform(config.min_apex, config.max_apex)
        if rng.random() < config.single_au_fraction:
            add(singles[int(rng.integers(len(singles)))], start, duration, apex)
            continue
        _, members = EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))]
        for au, prob, factor in members:
            if rng.random() < prob:
                lag = rng.uniform(0.0, config.max_lag)
                add(
                    au,
                    start + lag,
                    max(duration - lag, config.min_duration),
                    max(config.min_apex, apex * factor * rng.uniform(0.85, 1.15)),
                )
    n_blinks = rng.poisson(config.blinks_per_minute * seconds / 60.0)
    for start in rng.uniform(-0.2, seconds, n_blinks):
        add("AU45", start, rng.uniform(*config.blink_duration), rng.uniform(3.5, 5.0))

    jaw, lips = col["AU26"], col["AU25"]
    out[:, lips] = np.maximum(out[:, lips], JAW_LIP_RATIO * out[:, jaw])
    return np.clip(out, 0.0, MAX_INTENSITY).astype(np.float32)
