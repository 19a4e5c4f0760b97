"""Clips for the multi-face tests, made from real group photos and real face crops.

- `still_clip(image, n)`: a photo held in front of the camera for n frames, drifting 2 px a
  frame (so followed faces really move);
- `face_sprite(image, box)`: a real face cut out with a soft elliptical edge, to paste;
- `crossing_clip(...)`: two real faces walking through each other, one passing behind the
  other, with the true face centres per frame;
- `cover(frame, box)`: an opaque grey card in front of a face (an occlusion).
Frames are BGR uint8; boxes (x0, y0, x1, y1) frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

DRIFT_PX = 2.0
BACKGROUND = 110
SPRITE_MARGIN = 0.45
"""Sprite = face box grown by this fraction of its size on each side (hair, chin, ears)."""


def still_clip(image: np.ndarray, frames: int, drift_px: float = DRIFT_PX) -> list[np.ndarray]:
    """`frames` copies of `image`, the n-th shifted right by n * drift_px (edge replicated)."""
    h, w = image.shape[:2]
    out = []
    for n in range(frames):
        m = np.float32([[1, 0, n * drift_px], [0, 1, 0]])
        out.append(cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return out


def face_sprite(image: np.ndarray, box: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(patch uint8[h, w, 3], alpha float32[h, w, 1]) of the face in `box`, edge feathered."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * SPRITE_MARGIN, (y1 - y0) * SPRITE_MARGIN
    h, w = image.shape[:2]
    a, b = int(max(0, x0 - mx)), int(max(0, y0 - my * 1.3))
    c, d = int(min(w, x1 + mx)), int(min(h, y1 + my))
    patch = image[b:d, a:c].copy()
    ph, pw = patch.shape[:2]
    alpha = np.zeros((ph, pw), np.float32)
    cv2.ellipse(alpha, (pw // 2, ph // 2), (int(pw * 0.42), int(ph * 0.47)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(2.0, pw * 0.03))
    return patch, alpha[:, :, None]


def paste(canvas: np.ndarray, sprite: tuple[np.ndarray, np.ndarray], cx: float,
          cy: float) -> None:
    """Blend `sprite` into `canvas` (in place) centred at (cx, cy); clipped at the edges."""
    patch, alpha = sprite
    ph, pw = patch.shape[:2]
    x0, y0 = int(round(cx - pw / 2)), int(round(cy - ph / 2))
    h, w = canvas.shape[:2]
    a, b = max(0, x0), max(0, y0)
    c, d = min(w, x0 + pw), min(h, y0 + ph)
    if c <= a or d <= b:
        return
    p = patch[b - y0:d - y0, a - x0:c - x0].astype(np.float32)
    al = alpha[b - y0:d - y0, a - x0:c - x0]
    region = canvas[b:d, a:c].astype(np.float32)
    canvas[b:d, a:c] = (al * p + (1 - al) * region).astype(np.uint8)


def crossing_clip(front: tuple[np.ndarray, np.ndarray], back: tuple[np.ndarray, np.ndarray],
                  frames: int = 60, size: tuple[int, int] = (960, 400),
                  speed_px: float = 8.0) -> tuple[list[np.ndarray], np.ndarray]:
    """Two faces crossing: `front` walks left to right, `back` right to left a little lower,
    passing behind it. Returns (frames, centres float[frames, 2 (front, back), 2 (x, y)])."""
    w, h = size
    clip, centres = [], np.zeros((frames, 2, 2), np.float32)
    start_front, start_back = w * 0.15, w * 0.85
    for n in range(frames):
        canvas = np.full((h, w, 3), BACKGROUND, np.uint8)
        fx, bx = start_front + speed_px * n, start_back - speed_px * n
        fy, by = h * 0.45, h * 0.52
        paste(canvas, back, bx, by)
        paste(canvas, front, fx, fy)
        centres[n] = [[fx, fy], [bx, by]]
        clip.append(canvas)
    return clip, centres


def cover(frame: np.ndarray, box: tuple[float, ...], grow: float = 0.6) -> None:
    """Hide the face in `box` behind a grey card `grow` face sizes larger (in place)."""
    x0, y0, x1, y1 = box
    gx, gy = (x1 - x0) * grow, (y1 - y0) * grow
    h, w = frame.shape[:2]
    frame[int(max(0, y0 - gy)):int(min(h, y1 + gy)), int(max(0, x0 - gx)):int(min(w, x1 + gx))] = (
        BACKGROUND)


def nearest(centres: np.ndarray, box: tuple[float, ...]) -> tuple[int, float]:
    """(index of the centre in float[K, 2] nearest the centre of `box`, that distance)."""
    c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    dist = np.hypot(*(centres - c).T)
    return int(dist.argmin()), float(dist.min())
