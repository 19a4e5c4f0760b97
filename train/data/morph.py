"""New faces from real ones over the MediaPipe mesh: canonical placement, relaxing a smile,
shape / texture morphs between two people, skin tone and age-like texture.

Every function takes and returns uint8[H, W, 3] BGR images with float[478, 2] landmarks in
image px; the canvas is `CANVAS` (eyes level, eye midpoint at `EYE_MID`, inter-ocular
distance `CANVAS_IOD`). All warps are the piecewise-affine `train.data.warp.WarpMesh`. The
landmarks returned are where the mesh was moved to; callers re-detect with MediaPipe before
using a result (the synthetic generator does), so a morph is judged by the same detector.

    canvas, xy = to_canvas(image, landmarks)
    relaxed, xy_r = relax_mouth(canvas, xy, neutral_mouth)   # closes and un-smiles the lips
    face, xy_m = morph(a_img, a_xy, b_img, b_xy, shape=0.5, texture=0.5)
    darker = skin_tone(face, xy_m, lightness=0.75, warmth=6.0)
    older = age_texture(face, xy_m, np.random.default_rng(0), strength=1.0)
"""

from __future__ import annotations

import cv2
import numpy as np

from train.data import face_regions as regions
from train.data.au_templates import FaceFrame
from train.data.warp import WarpMesh

CANVAS = (512, 512)  # width, height
CANVAS_IOD = 112.0  # px
EYE_MID = (256.0, 226.0)  # px
# lip landmarks (both contours) and the lower-face region a smile reshapes
LIP_POINTS = tuple(
    sorted(
        set(regions.INNER_LIP_UPPER)
        | set(regions.INNER_LIP_LOWER)
        | set(regions.OUTER_LIP_UPPER)
        | set(regions.OUTER_LIP_LOWER)
    )
)
RELAX_RADIUS = 0.55  # IOD: how far from the lips the relaxation fades out
FACE_MASK_FEATHER = 0.10  # IOD: sigma of the soft edge of a face mask
MASK_SHRINK = 0.92  # face masks: the outline scaled about its centre (keeps the jaw edge)


def canvas_matrix(xy: np.ndarray) -> np.ndarray:
    """float64[2, 3] similarity taking image px to the canvas (eyes level, `CANVAS_IOD` apart)."""
    frame = FaceFrame.from_landmarks(np.asarray(xy, np.float64)[:, :2])
    s = CANVAS_IOD / frame.iod
    u, v = frame.u_axis, frame.v_axis
    rot = np.stack([u, v]) * s  # rows: canvas x along u, canvas y along v
    shift = np.asarray(EYE_MID) - rot @ frame.origin
    return np.concatenate([rot, shift[:, None]], axis=1)


def to_canvas(image: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face moved onto the canvas: (uint8[512, 512, 3], float32[478, 2] canvas px)."""
    m = canvas_matrix(xy)
    scale = float(np.hypot(*m[:, 0]))
    out = cv2.warpAffine(
        image,
        m,
        CANVAS,
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    pts = np.asarray(xy, np.float64)[:, :2] @ m[:, :2].T + m[:, 2]
    return out, pts.astype(np.float32)


def _face_units(xy: np.ndarray) -> tuple[FaceFrame, np.ndarray]:
    frame = FaceFrame.from_landmarks(np.asarray(xy, np.float64))
    return frame, frame.to_face(xy)


def mouth_shape(xy: np.ndarray) -> np.ndarray:
    """float64[L, 2]: the lip landmarks (`LIP_POINTS`) in face units about the lips' centre."""
    _, p = _face_units(xy)
    lips = p[list(LIP_POINTS)]
    return lips - lips.mean(axis=0)


def relax_mouth(
    image: np.ndarray, xy: np.ndarray, neutral_mouth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a smiling mouth toward a neutral one (closed lips, corners level).

    neutral_mouth: float[L, 2] from `mouth_shape` of neutral faces (their mean). The lips take
    that shape about their own centre; the skin around them follows with a weight that fades
    over `RELAX_RADIUS`. Closing the inner lips hides teeth: the warp leaves the mouth opening
    unmapped, so what lay between the lips is no longer shown.
    """
    frame, p = _face_units(xy)
    lips = list(LIP_POINTS)
    centre = p[lips].mean(axis=0)
    target = centre + np.asarray(neutral_mouth, np.float64)
    delta_lips = target - p[lips]
    # every other point moves by the motion of its nearest lip points, fading with distance
    d = np.linalg.norm(p[:, None, :] - p[lips][None, :, :], axis=2)  # [478, L]
    w_near = np.exp(-((d / 0.08) ** 2)) + 1e-9
    moved = (w_near @ delta_lips) / w_near.sum(axis=1, keepdims=True)
    fade = np.clip(1.0 - d.min(axis=1) / RELAX_RADIUS, 0.0, 1.0) ** 2
    delta = moved * fade[:, None]
    delta[lips] = delta_lips
    # the eyes, brows and face outline stay where they are
    keep = list(regions.RIGHT_EYE_LOOP + regions.LEFT_EYE_LOOP) + list(range(468, 478))
    delta[keep] = 0.0
    new_p = p + delta
    dst = frame.origin + frame.iod * (
        new_p[:, :1] * frame.u_axis + new_p[:, 1:2] * frame.v_axis
    )
    out = WarpMesh(xy, (image.shape[1], image.shape[0])).warp(image, dst)
    return out, dst.astype(np.float32)


def face_mask(xy: np.ndarray, size: tuple[int, int], grow: float = MASK_SHRINK) -> np.ndarray:
    """float32[H, W] in 0..1: the face outline of `xy` scaled by `grow`, with a soft edge."""
    w, h = size
    oval = np.asarray(xy, np.float64)[list(regions.FACE_OVAL)]
    centre = oval.mean(axis=0)
    poly = centre + grow * (oval - centre)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    iod = FaceFrame.from_landmarks(np.asarray(xy, np.float64)).iod
    return cv2.GaussianBlur(mask, (0, 0), FACE_MASK_FEATHER * iod)


def morph(
    a_image: np.ndarray,
    a_xy: np.ndarray,
    b_image: np.ndarray,
    b_xy: np.ndarray,
    shape: float,
    texture: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A face between two canvas faces: geometry (1-shape)*A + shape*B, face texture likewise.

    Both images are warped onto the blended mesh; inside the (soft) face outline the textures
    are mixed by `texture`, outside it (hair, neck, background) the person whose shape weighs
    more is kept, so no double outline appears. shape=0, texture=1 is B's skin on A's face.
    """
    size = (a_image.shape[1], a_image.shape[0])
    a_xy = np.asarray(a_xy, np.float64)
    b_xy = np.asarray(b_xy, np.float64)
    dst = (1.0 - shape) * a_xy + shape * b_xy
    wa = WarpMesh(a_xy, size).warp(a_image, dst).astype(np.float32)
    wb = WarpMesh(b_xy, size).warp(b_image, dst).astype(np.float32)
    mask = face_mask(dst, size)[..., None]
    outside = wa if shape <= 0.5 else wb
    face = (1.0 - texture) * wa + texture * wb
    # match the mixed face's mean colour to the kept surround at the seam
    out = outside * (1.0 - mask) + face * mask
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), dst.astype(np.float32)


def skin_tone(
    image: np.ndarray, xy: np.ndarray, lightness: float, warmth: float
) -> np.ndarray:
    """Face and neck lightness scaled by `lightness`, b* (yellow-blue) shifted by `warmth`.

    Applied in CIE Lab inside a wide soft mask (1.5 x the face outline), so the neck changes
    with the face; the background mostly keeps its colours.
    """
    size = (image.shape[1], image.shape[0])
    mask = face_mask(xy, size, grow=1.5)[..., None]
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    toned = lab.copy()
    toned[..., 0] *= lightness
    toned[..., 1] += warmth * 0.4
    toned[..., 2] += warmth
    lab = lab * (1.0 - mask) + toned * mask
    return cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


AGE_LINE_DARKNESS = 0.22  # fractional darkening at the centre of a wrinkle at strength 1
AGE_DESATURATE = 0.25


def age_texture(
    image: np.ndarray, xy: np.ndarray, rng: np.random.Generator, strength: float
) -> np.ndarray:
    """Age-like skin: forehead lines, crow's feet, lower-lid bags, a faint nasolabial line,
    blotchy pigment and less saturation, all inside the face (strength 0..1.5)."""
    h, w = image.shape[:2]
    frame, p = _face_units(xy)

    def to_px(uv: np.ndarray) -> np.ndarray:
        uv = np.asarray(uv, np.float64)
        return frame.origin + frame.iod * (uv[:, :1] * frame.u_axis + uv[:, 1:2] * frame.v_axis)

    shade = np.zeros((h, w), np.float32)
    thick = max(1, int(round(0.012 * frame.iod)))
    brow_v = p[list(regions.RIGHT_BROW_INNER + regions.LEFT_BROW_INNER), 1].mean()
    top_v = p[10, 1]
    for k in range(3):  # forehead lines between the brows and the hairline
        v = brow_v + (top_v - brow_v) * (0.25 + 0.2 * k) + rng.uniform(-0.02, 0.02)
        us = np.linspace(-0.55, 0.55, 12)
        vs = v + 0.04 * (us**2) * 2 + rng.normal(0, 0.006, us.size)
        cv2.polylines(shade, [np.round(to_px(np.stack([us, vs], 1)) * 16).astype(np.int32)],
                      False, 1.0, thick, cv2.LINE_AA, shift=4)
    for side in (-1.0, 1.0):  # crow's feet at the outer eye corners
        corner = p[33] if side < 0 else p[263]
        for angle in (-0.45, 0.0, 0.45):
            d = np.array([side * np.cos(angle), np.sin(angle)])
            pts = corner + np.outer(np.linspace(0.06, 0.2, 5), d)
            cv2.polylines(shade, [np.round(to_px(pts) * 16).astype(np.int32)], False, 0.8,
                          thick, cv2.LINE_AA, shift=4)
        lower = regions.RIGHT_EYE_LOWER if side < 0 else regions.LEFT_EYE_LOWER
        bag = p[list(lower)] + [0.0, 0.09]
        cv2.polylines(shade, [np.round(to_px(bag) * 16).astype(np.int32)], False, 0.9,
                      thick + 1, cv2.LINE_AA, shift=4)
    shade = cv2.GaussianBlur(shade, (0, 0), max(0.8, 0.01 * frame.iod))
    blotch = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0),
                              0.05 * frame.iod)
    blotch *= 0.6 / (np.abs(blotch).max() + 1e-6)
    mask = face_mask(xy, (w, h))
    dark = (shade * AGE_LINE_DARKNESS + np.clip(blotch, 0, None) * 0.08) * strength * mask
    img = image.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = img + (grey - img) * (AGE_DESATURATE * strength * mask[..., None])
    img *= 1.0 - dark[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
