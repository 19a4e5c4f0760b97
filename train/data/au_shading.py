"""Appearance cues of action units that a mesh warp cannot make, rendered as shading.

FACS describes skin changes beside the landmark motion: horizontal forehead wrinkles in the
centre (AU1) and at the sides (AU2), vertical furrows between the brows (AU4), wrinkles across
the nose root (AU9), the nasolabial fold deepening and the cheek and lower-lid bulge with
crow's feet (AU6, AU12), a dimpled, wrinkled chin boss (AU17). `AUShading` draws each as dark
creases with a light edge beside them, placed on the *displaced* landmarks (so they travel
with the face) and scaled by intensity / 5 times a per-identity gain; width and
depth vary per identity (`ShadingStyle.sample`). At intensity 0 nothing changes.

    shading = AUShading(ShadingStyle.sample(rng), seed=7)
    shading.paint(frame, xy, intensities)   # uint8[H, W, 3] BGR, in place; xy float[478, 2] px

Intensities are float[K] in `TEMPLATE_AUS` order, 0..5. Shading multiplies the image by
(1 - shade): positive shade darkens, negative lightens. Run `python -m train synth --preview`
to see every cue at 0, 2.5 and 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from train.data import face_regions as regions
from train.data.au_templates import MAX_INTENSITY, TEMPLATE_AUS, FaceFrame

# depth of each cue at intensity 5, gain 1 (fraction of the image darkened at a crease centre)
FOREHEAD_DEPTH = 0.32  # AU1 (centre) / AU2 (sides)
FURROW_DEPTH = 0.30  # AU4
NOSE_WRINKLE_DEPTH = 0.40  # AU9
NASOLABIAL_DEPTH = 0.32  # AU12 (AU6 adds NASOLABIAL_FROM_AU6 of it, AU9 NASOLABIAL_FROM_AU9)
NASOLABIAL_FROM_AU6 = 0.4
NASOLABIAL_FROM_AU9 = 0.5
LID_BULGE_DEPTH = 0.28  # AU6: crease under the lower-lid bulge, and crow's feet
CHEEK_HIGHLIGHT = 0.10  # AU6 / AU12: light on the raised cheek
CHIN_TEXTURE_DEPTH = 0.32  # AU17
HIGHLIGHT_RATIO = 0.35  # light edge beside a crease, relative to its depth
LINE_SIGMA = 0.010  # IOD: softness of a crease
BROAD_SIGMA = 0.045  # IOD: softness of bulges and highlights
CHIN_GRID = 48  # cells of the chin texture per side
SUBPIXEL = 16
_AU = {au: k for k, au in enumerate(TEMPLATE_AUS)}


@dataclass(frozen=True)
class ShadingStyle:
    """How deep and wide one identity's cues are: per-cue gains and a crease width factor."""

    forehead: float = 1.0
    furrow: float = 1.0
    nose: float = 1.0
    nasolabial: float = 1.0
    lid: float = 1.0
    cheek: float = 1.0
    chin: float = 1.0
    width: float = 1.0
    furrow_spread: float = 0.07  # IOD: half the gap between the two glabella furrows

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ShadingStyle:
        g = rng.uniform(0.6, 1.4, 7)
        return cls(*(float(v) for v in g), float(rng.uniform(0.8, 1.35)),
                   float(rng.uniform(0.05, 0.09)))


class AUShading:
    """Shading for the appearance cues of AU1, AU2, AU4, AU6, AU9, AU12, AU17 (see module)."""

    def __init__(self, style: ShadingStyle, seed: int):
        self.style = style
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, 1.0, (CHIN_GRID, CHIN_GRID)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), 1.2)
        self.chin_noise = noise / (np.abs(noise).max() + 1e-6)

    def shade(self, xy: np.ndarray, intensities: np.ndarray, size: tuple[int, int]):
        """(shade float32[h, w], (x0, y0)) for the face's box, or None when no cue is active."""
        x = np.asarray(intensities, np.float64) / MAX_INTENSITY
        s = self.style
        au1, au2 = x[_AU["AU01"]], x[_AU["AU02"]]
        au4, au6, au9 = x[_AU["AU04"]], x[_AU["AU06"]], x[_AU["AU09"]]
        au12, au17 = x[_AU["AU12"]], x[_AU["AU17"]]
        if max(au1, au2, au4, au6, au9, au12, au17) <= 0:
            return None
        xy = np.asarray(xy, np.float64)[:, :2]
        frame = FaceFrame.from_landmarks(xy)
        iod = frame.iod
        w, h = size
        oval = xy[list(regions.FACE_OVAL)]
        pad = int(0.1 * iod) + 2
        x0, y0 = np.floor(oval.min(axis=0)).astype(int) - pad
        x1, y1 = np.ceil(oval.max(axis=0)).astype(int) + pad
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return None
        off = np.array([x0, y0], np.float64)
        lines = np.zeros((y1 - y0, x1 - x0), np.float32)
        broad = np.zeros_like(lines)
        p = frame.to_face(xy)
        thick = max(1, int(round(0.014 * iod * s.width)))

        def px(uv) -> np.ndarray:
            uv = np.asarray(uv, np.float64).reshape(-1, 2)
            pts = frame.origin + iod * (uv[:, :1] * frame.u_axis + uv[:, 1:2] * frame.v_axis)
            return np.round((pts - off) * SUBPIXEL).astype(np.int32)

        def crease(layer, uv, depth, lateral=(0.0, 0.0), width=thick):
            """A dark line along uv (face units) and a light one offset by `lateral`."""
            if depth <= 0:
                return
            cv2.polylines(layer, [px(uv)], False, float(depth), width, cv2.LINE_AA,
                          shift=4)
            if lateral != (0.0, 0.0):
                cv2.polylines(layer, [px(np.asarray(uv) + lateral)], False,
                              float(-depth * HIGHLIGHT_RATIO), width + 1, cv2.LINE_AA, shift=4)

        def blob(layer, centre_uv, radii, value):
            if value == 0:
                return
            c = px(centre_uv)[0]
            axes = (max(1, int(radii[0] * iod * SUBPIXEL)), max(1, int(radii[1] * iod * SUBPIXEL)))
            angle = float(np.degrees(np.arctan2(frame.u_axis[1], frame.u_axis[0])))
            cv2.ellipse(layer, (int(c[0]), int(c[1])), axes, angle, 0, 360, float(value), -1,
                        cv2.LINE_AA, shift=4)

        # AU1 / AU2: horizontal forehead lines, in the centre / at the sides, above the brows
        inner = (p[55] + p[285]) / 2.0
        brow_top = p[list(regions.RIGHT_BROW_INNER + regions.LEFT_BROW_INNER)][:, 1].min()
        hair = p[10, 1]
        for k in range(3):
            v = brow_top + (hair - brow_top) * (0.22 + 0.2 * k)
            for lo, hi, depth in ((-0.28, 0.28, au1), (0.22, 0.62, au2), (-0.62, -0.22, au2)):
                us = np.linspace(lo, hi, 6)
                vs = v + 0.12 * (us / 0.6) ** 2
                crease(lines, np.stack([inner[0] + us, vs], 1),
                       FOREHEAD_DEPTH * s.forehead * depth * (1.0 - 0.15 * k), (0.0, 0.025))
        # AU4: two vertical furrows between the brows, from above the brows to the nose root
        root = p[168]
        for side in (-1.0, 1.0):
            u = inner[0] + side * s.furrow_spread
            uv = np.array([[u + side * 0.01, inner[1] - 0.07], [u, (inner[1] + root[1]) / 2],
                           [u - side * 0.012, root[1]]])
            crease(lines, uv, FURROW_DEPTH * s.furrow * au4, (side * 0.025, 0.0))
        # AU9: wrinkles across the nose root, slightly arched
        for k, dv in enumerate((0.02, 0.07, 0.12)):
            half = 0.09 - 0.015 * k
            us = np.linspace(-half, half, 7)
            vs = root[1] + dv + 0.25 * us**2
            crease(lines, np.stack([root[0] + us, vs], 1), NOSE_WRINKLE_DEPTH * s.nose * au9,
                   (0.0, 0.02))
        # AU12 (+AU6, AU9): nasolabial folds from above the nose wing to beside the lip corner
        fold = NASOLABIAL_DEPTH * s.nasolabial * min(
            1.0, au12 + NASOLABIAL_FROM_AU6 * au6 + NASOLABIAL_FROM_AU9 * au9)
        for side, wing, corner in ((-1.0, 129, 61), (1.0, 358, 291)):
            top = p[wing] + [side * 0.03, -0.04]
            end = p[corner] + [side * 0.06, 0.06]
            mid = (top + end) / 2 + [side * 0.05, 0.0]
            t = np.linspace(0, 1, 9)[:, None]
            uv = (1 - t) ** 2 * top + 2 * (1 - t) * t * mid + t**2 * end
            crease(lines, uv, fold, (side * 0.035, 0.0), thick + 1)
            # the raised cheek above the fold catches light
            cheek = CHEEK_HIGHLIGHT * s.cheek * min(1.0, au6 + 0.6 * au12)
            blob(broad, p[50 if side < 0 else 280] + [side * 0.02, -0.02], (0.16, 0.1), -cheek)
        # AU6: bulge under the lower lid (light) with a crease below it, and crow's feet
        lid = LID_BULGE_DEPTH * s.lid * au6
        for side, lower, corner in ((-1.0, regions.RIGHT_EYE_LOWER, 33),
                                    (1.0, regions.LEFT_EYE_LOWER, 263)):
            low = p[list(lower)]
            crease(lines, low + [0.0, 0.11], lid, (0.0, -0.04))
            for angle in (-0.4, 0.0, 0.4):
                d = np.array([side * np.cos(angle), np.sin(angle)])
                crease(lines, p[corner] + np.outer(np.linspace(0.05, 0.17, 4), d), 0.8 * lid)
        # AU17: a dimpled chin boss (a fixed per-identity texture, travelling with the chin)
        chin_depth = CHIN_TEXTURE_DEPTH * s.chin * au17
        if chin_depth > 0:
            lip, chin = p[regions.LOWER_LIP_BOTTOM], p[regions.CHIN]
            centre = (lip + chin) / 2 + [0.0, 0.02]
            half_u, half_v = 0.22, max(0.05, (chin[1] - lip[1]) / 2)
            # texture grid -> ROI px: (i, j) -> centre + ((i/G - .5) 2 half_u, (j/G - .5) 2 half_v)
            a = np.stack([frame.u_axis * (2 * half_u * iod / CHIN_GRID),
                          frame.v_axis * (2 * half_v * iod / CHIN_GRID)], axis=1)
            c0 = (frame.origin + iod * ((centre[0] - half_u) * frame.u_axis
                                        + (centre[1] - half_v) * frame.v_axis)) - off
            m = np.concatenate([a, c0[:, None]], axis=1)
            tex = cv2.warpAffine(self.chin_noise, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
            mask = np.zeros_like(lines)
            blob(mask, centre, (half_u * 0.9, half_v * 0.9), 1.0)
            mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.03 * iod))
            lines += tex * mask * chin_depth
            # the chin boss pushed up leaves a crease below the lower lip
            crease(lines, np.stack([lip[0] + np.linspace(-0.12, 0.12, 5),
                                    np.full(5, lip[1] + 0.05)], 1), 0.6 * chin_depth,
                   (0.0, 0.03))
        lines = cv2.GaussianBlur(lines, (0, 0), max(0.6, LINE_SIGMA * iod * s.width))
        broad = cv2.GaussianBlur(broad, (0, 0), max(1.0, BROAD_SIGMA * iod))
        return lines + broad, (x0, y0)

    def paint(self, image: np.ndarray, xy: np.ndarray, intensities: np.ndarray) -> np.ndarray:
        """Multiply the face of `image` (uint8[H, W, 3], in place) by 1 - shade."""
        h, w = image.shape[:2]
        out = self.shade(xy, intensities, (w, h))
        if out is None:
            return image
        shade, (x0, y0) = out
        sh, sw = shade.shape
        roi = image[y0 : y0 + sh, x0 : x0 + sw].astype(np.float32)
        roi *= np.clip(1.0 - shade, 0.0, 2.0)[..., None]
        image[y0 : y0 + sh, x0 : x0 + sw] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
        return image
