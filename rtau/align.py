"""Landmarks -> 5-point similarity transform -> fixed-size face crop. Pure numpy/OpenCV.

Coordinate frames: *frame* pixels (x right, y down, origin at the top-left pixel's corner as
OpenCV uses) and *crop* pixels of the S x S output. `align_face` estimates the similarity
(rotation, uniform scale, translation; never a reflection) that maps five landmarks (iris
centres, nose tip, mouth corners) onto `CANONICAL_TEMPLATE`, then warps the frame with it.

The template is the widely used 112 px ArcFace 5-point template shrunk by `TEMPLATE_SCALE`
about the crop's horizontal centre and raised by `TEMPLATE_SHIFT_Y`, so that on real faces the
top of the face mesh (forehead line) sits near y = 14 and the chin near y = 98 at S = 112:
brows (AU1/2/4), chin (AU17) and an open jaw (AU26) stay inside the crop. For other sizes it
scales with S.
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

    src, dst: float[N, 2], N >= 2 points in their own frames.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need matching [N>=2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0  # forbid a reflection: the best proper rotation instead
    rot = u @ sign @ vt
    scale = float((sig * np.diag(sign)).sum() / var_s)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to float[N, 2] points."""
    pts = np.asarray(points, np.float64)[:, :2]
    return pts @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (crop -> frame for an alignment matrix)."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def align_face(frame_bgr: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> AlignedFace:
    """Crop the face of `landmarks` (frame pixels) to a canonical uint8[S, S, 3] BGR crop."""
    matrix = similarity_transform(five_points(landmarks), template(size))
    crop = cv2.warpAffine(frame_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(crop=crop, matrix=matrix.astype(np.float32))
