"""What the synthetic generator adds to the mesh warp: mouth interior, lids, pose, light, noise.

- `MouthPainter`: where the lips part (the polygon of the inner lip contour, which the warp
  leaves unmapped) paints a dark mouth interior with an upper teeth band (and a lower one when
  the mouth opens wide), colours taken from the base face's own skin so a dim face gets dim teeth.
- `LidPainter`: as the lids close (AU45), covers the eye opening with the base face's own lid
  skin colour and draws the lash line, so no sclera shows between closed lids.
- `pose_landmarks`: a small rigid head motion (yaw / pitch / roll in degrees, shift in IOD,
  scale) applied to the 3-D landmarks, projected orthographically; the warp's outer ring stays
  fixed, so the face moves against a still background.
- `smooth_track`: smooth random 1-D trajectories (sums of slow sinusoids) for pose and light.
- `Photometric`: per-frame global gain, a left-right light gradient, a colour cast and sensor
  noise (a per-subject bank of Gaussian noise frames, randomly rolled each frame).
All images are uint8[H, W, 3] BGR; landmarks are image px.
"""

from __future__ import annotations

import cv2
import numpy as np

from train.data import face_regions as regions

MIN_OPENING_PX = 0.6  # thinner gaps are left as they are
UPPER_TEETH_HEIGHT = 0.10  # IOD: visible upper incisor height
LOWER_TEETH_HEIGHT = 0.05  # IOD
LOWER_TEETH_FROM_OPENING = 0.15  # IOD: lower teeth show only on wider openings
INTERIOR_DARKNESS = 0.16  # interior colour = skin colour times this (plus a red cast)
TEETH_WHITE = np.array([205.0, 218.0, 226.0])  # BGR of teeth under a bright, neutral light
EDGE_BLUR = 3  # px kernel: soft edges of the painted interior
NOISE_BANK = 6


class MouthPainter:
    """Paints the mouth opening of a warped frame (see module docstring)."""

    def __init__(self, base_image: np.ndarray, base_xy: np.ndarray, iod: float):
        skin_idx = [50, 280, 101, 330, 205, 425, 151, 9]  # cheeks, forehead: plain skin
        pts = np.round(base_xy[skin_idx]).astype(int)
        h, w = base_image.shape[:2]
        pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        skin = base_image[pts[:, 1], pts[:, 0]].astype(np.float64).mean(axis=0)
        luma = float(skin @ [0.114, 0.587, 0.299])
        self.interior = skin * INTERIOR_DARKNESS + np.array([4.0, 4.0, 14.0])
        light = np.clip(luma / 150.0, 0.45, 1.15)
        self.teeth = np.clip(TEETH_WHITE * light * 0.8 + skin * 0.2 * light, 0, 255)
        self.iod = iod

    def paint(self, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Paint the lip opening of `xy` (float[478, 2]) into `image`, in place."""
        upper = xy[list(regions.INNER_LIP_UPPER)].astype(np.float64)
        lower = xy[list(regions.INNER_LIP_LOWER)].astype(np.float64)
        opening = float(np.max(lower[1:-1, 1] - upper[1:-1, 1]))
        if opening < MIN_OPENING_PX:
            return image
        hole = np.concatenate([upper, lower[-2:0:-1]])
        x0, y0 = np.floor(hole.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(hole.max(axis=0)).astype(int) + 4
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return image
        off = np.array([x0, y0])
        size = (y1 - y0, x1 - x0)

        def poly_mask(poly: np.ndarray) -> np.ndarray:
            mask = np.zeros(size, np.float32)
            fixed = np.round((poly - off) * 16).astype(np.int32)
            cv2.fillPoly(mask, [fixed], 1.0, lineType=cv2.LINE_AA, shift=4)
            return mask

        m_hole = poly_mask(hole)
        # teeth follow the upper lip: a band below the upper inner contour, thinner at the corners
        half = max((upper[-1, 0] - upper[0, 0]) / 2.0, 1.0)
        s = (upper[:, 0] - (upper[0, 0] + upper[-1, 0]) / 2.0) / half
        taper = np.sqrt(np.clip(1.0 - s**2, 0.0, 1.0))
        band = upper + np.stack([np.zeros_like(s), UPPER_TEETH_HEIGHT * self.iod * taper], 1)
        m_teeth = poly_mask(np.concatenate([upper, band[::-1]])) * m_hole
        if opening > LOWER_TEETH_FROM_OPENING * self.iod:
            s_low = (lower[:, 0] - (lower[0, 0] + lower[-1, 0]) / 2.0) / half
            t_low = np.sqrt(np.clip(1.0 - s_low**2, 0.0, 1.0))
            band_low = lower - np.stack(
                [np.zeros_like(s_low), LOWER_TEETH_HEIGHT * self.iod * t_low], 1
            )
            m_teeth = np.maximum(
                m_teeth, poly_mask(np.concatenate([lower, band_low[::-1]])) * m_hole
            )
        k = (EDGE_BLUR, EDGE_BLUR)
        m_hole = cv2.GaussianBlur(m_hole, k, 0)
        m_teeth = cv2.GaussianBlur(m_teeth, k, 0)
        # shade: teeth darker towards the mouth corners (inside the cheeks' shadow)
        xs = (np.arange(x0, x1) - (upper[0, 0] + upper[-1, 0]) / 2.0) / half
        shade = np.clip(1.0 - 0.55 * xs**2, 0.35, 1.0).astype(np.float32)[None, :, None]
        roi = image[y0:y1, x0:x1].astype(np.float32)
        colour = self.interior + (self.teeth - self.interior) * (m_teeth[..., None] * shade)
        alpha = m_hole[..., None]
        roi = roi * (1.0 - alpha) + colour.astype(np.float32) * alpha
        image[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
        return image


LID_SKIN_ABOVE = 0.06  # IOD above the upper lid margin where the lid skin colour is sampled
LID_COVER_FROM, LID_COVER_FULL = 0.35, 0.9  # closure fraction: start / full lid-skin cover
LASH_DARKNESS = 0.45


class LidPainter:
    """Lid skin over closing eyes (see module docstring)."""

    def __init__(self, base_image: np.ndarray, base_xy: np.ndarray, frame):
        self.eyes = []
        h, w = base_image.shape[:2]
        for upper, lower, loop in (
            (regions.RIGHT_EYE_UPPER, regions.RIGHT_EYE_LOWER, regions.RIGHT_EYE_LOOP),
            (regions.LEFT_EYE_UPPER, regions.LEFT_EYE_LOWER, regions.LEFT_EYE_LOOP),
        ):
            up = base_xy[list(upper[1:-1])].astype(np.float64)
            low = base_xy[list(lower[1:-1])].astype(np.float64)
            above = up - frame.v_axis * LID_SKIN_ABOVE * frame.iod
            xs = np.clip(np.round(above[:, 0]).astype(int), 0, w - 1)
            ys = np.clip(np.round(above[:, 1]).astype(int), 0, h - 1)
            colour = base_image[ys, xs].astype(np.float64).mean(axis=0)
            aperture = float(np.linalg.norm(low - up, axis=1).mean())
            self.eyes.append((upper, lower, loop, colour, max(aperture, 1e-3)))
        self.iod = frame.iod

    def paint(self, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Cover the eye openings of `xy` (float[478, 2]) in `image` (in place) as lids close."""
        h, w = image.shape[:2]
        for upper, lower, loop, colour, aperture in self.eyes:
            up = xy[list(upper[1:-1])].astype(np.float64)
            low = xy[list(lower[1:-1])].astype(np.float64)
            closure = 1.0 - float(np.linalg.norm(low - up, axis=1).mean()) / aperture
            t = np.clip((closure - LID_COVER_FROM) / (LID_COVER_FULL - LID_COVER_FROM), 0, 1)
            if t <= 0:
                continue
            poly = xy[list(loop)].astype(np.float64)
            pad = max(2, int(0.04 * self.iod))
            x0, y0 = np.floor(poly.min(axis=0)).astype(int) - pad
            x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + pad + 1
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if x1 <= x0 or y1 <= y0:
                continue
            off = np.array([x0, y0])
            mask = np.zeros((y1 - y0, x1 - x0), np.float32)
            fixed = np.round((poly - off) * 16).astype(np.int32)
            cv2.fillPoly(mask, [fixed], 1.0, lineType=cv2.LINE_AA, shift=4)
            # the covered band reaches a little beyond the landmark contour, then fades
            grow = 2 * max(1, int(0.012 * self.iod)) + 1
            mask = cv2.dilate(mask, np.ones((grow, grow), np.uint8))
            mask = cv2.GaussianBlur(mask, (0, 0), max(0.8, 0.006 * self.iod)) * t
            lash = np.zeros_like(mask)
            line = np.round((xy[list(upper)] - off) * 16).astype(np.int32)
            thick = max(1, int(round(0.012 * self.iod)))
            cv2.polylines(lash, [line], False, 1.0, thick, cv2.LINE_AA, shift=4)
            lash *= t
            roi = image[y0:y1, x0:x1].astype(np.float32)
            skin = colour.astype(np.float32)
            roi = roi * (1 - mask[..., None]) + skin * mask[..., None]
            roi = roi * (1 - lash[..., None] * (1 - LASH_DARKNESS))
            image[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
        return image


def smooth_track(
    rng: np.random.Generator,
    n: int,
    fps: float,
    amplitude: float,
    min_hz: float = 0.03,
    max_hz: float = 0.4,
    parts: int = 3,
) -> np.ndarray:
    """float64[n]: a smooth random trajectory within about +-amplitude (sum of sinusoids)."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(parts):
        f = rng.uniform(min_hz, max_hz)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.3, 1.0)
    return out * (amplitude / np.sqrt(parts))


def pose_landmarks(
    xyz: np.ndarray,
    xy: np.ndarray,
    iod: float,
    yaw: float,
    pitch: float,
    roll: float,
    shift: tuple[float, float],
    scale: float,
) -> np.ndarray:
    """Rotate the face (angles in degrees) about its centre, shift (IOD units) and scale it.

    xyz: float[478, 3] base landmarks (for depth); xy: float[478, 2] the displaced landmarks.
    Returns float32[478, 2] image px (orthographic projection).
    """
    pts = np.concatenate([np.asarray(xy, np.float64), np.asarray(xyz, np.float64)[:, 2:3]], 1)
    centre = pts[:468].mean(axis=0)
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    moved = (pts - centre) @ (rz @ rx @ ry).T * scale + centre
    return (moved[:, :2] + np.asarray(shift) * iod).astype(np.float32)


class Photometric:
    """Per-frame light and sensor noise for one subject (see module docstring)."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], noise_sigma: float):
        w, h = size
        self.noise = [
            np.clip(rng.normal(0.0, noise_sigma, (h, w, 3)), -127, 127).astype(np.int16)
            for _ in range(NOISE_BANK)
        ]
        self.ramp = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :, None]

    def apply(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        gain: float,
        gradient: float,
        cast: np.ndarray,
    ) -> np.ndarray:
        """uint8 image * (gain * (1 + gradient * x) * cast) + noise; x in -0.5..0.5 across."""
        factor = (gain * (1.0 + gradient * self.ramp)) * cast.astype(np.float32)[None, None, :]
        out = image.astype(np.float32) * factor
        noise = self.noise[int(rng.integers(NOISE_BANK))]
        dy, dx = (int(v) for v in rng.integers(0, 64, 2))
        out += np.roll(noise, (dy, dx), axis=(0, 1))
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
