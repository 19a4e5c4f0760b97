"""The MediaPipe face mesh: its triangulation and named landmark indices.

Indices are FaceLandmarker landmark numbers (478: the 468-point canonical mesh plus 10 iris
points). "Right"/"left" are the subject's: the subject's right eye is on the image left in an
unmirrored frame. Chains run from one end to the other along MediaPipe's own contour edges
(`FaceLandmarksConnections`; tests/rtau/test_mesh.py checks every chain against them): eye lids
and lips from the outer (or right) corner to the other corner, brows from the outer end to the
inner end, the face oval clockwise in the image from the forehead top (10).

Use: `mesh.triangles()` -> int32[852, 3] for piecewise-affine warps; `mesh.CHIN` etc. to index
a float[478, 2|3] landmark array.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478
NUM_MESH_LANDMARKS = 468

# Eyes: corners, lids (9 points each, corner to corner), irises (centre + 4 on the rim).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_UPPER_LID_MID, RIGHT_LOWER_LID_MID = 159, 145
LEFT_UPPER_LID_MID, LEFT_LOWER_LID_MID = 386, 374
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)

# Brows: upper and lower edges, outer end -> inner end (AU1 inner, AU2 outer, AU4 both).
RIGHT_BROW_UPPER = (70, 63, 105, 66, 107)
RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)
LEFT_BROW_UPPER = (300, 293, 334, 296, 336)
LEFT_BROW_LOWER = (276, 283, 282, 295, 285)
RIGHT_BROW = RIGHT_BROW_UPPER
LEFT_BROW = LEFT_BROW_UPPER
RIGHT_BROW_INNER, RIGHT_BROW_OUTER = 107, 70
LEFT_BROW_INNER, LEFT_BROW_OUTER = 336, 300

# Nose: bridge from between the eyes down to the tip; the alar wings (AU9); the top of the
# philtrum, on the midline just below the nose (between the nose base 2 and the lip top 0).
NOSE_TIP = 1
PHILTRUM_TOP = 164
NOSE_ROOT = 168
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1)
RIGHT_NOSE_WING = (48, 64, 98)
LEFT_NOSE_WING = (278, 294, 327)

# Mouth: corners, outer and inner lip lines (11 points each, right corner -> left corner).
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
INNER_MOUTH_RIGHT, INNER_MOUTH_LEFT = 78, 308
OUTER_LIP_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LIP_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17

# Cheeks (AU6), chin (AU17), jaw (AU26), outline.
RIGHT_CHEEK, LEFT_CHEEK = 50, 280
CHIN = 152
FOREHEAD_TOP = 10
RIGHT_JAW_ANGLE, LEFT_JAW_ANGLE = 172, 397
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)


# Points no facial action moves, for alignment (rtau.align): the four eye corners, where the lids
# meet on ligaments fixed to the bone, and the top of the philtrum below the nose, which gives the
# fit a vertical extent (with the eye corners alone, on one line, MediaPipe's per-frame noise in
# their heights tilts and scales the crop: 0.373 px of frame-to-frame jitter on single_face.mp4
# against 0.330 px with the philtrum point). The AU templates (train/data/au_templates.py) move
# the eye corners under no AU and the philtrum top by at most 0.0125 IOD (AU6 = 5; AU9 0.004,
# AU12 0.002). Not the mouth, brows, nose tip or wings (AU9, AU12), the nose root and bridge, or
# the temples: MediaPipe's estimates of those follow brow raises (AU1/AU2/AU4), smiles or the jaw
# (measured with benchmarks/alignment.py).
RIGID_POINTS = (RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER, PHILTRUM_TOP)
MIRROR_PARTNER = {RIGHT_EYE_OUTER: LEFT_EYE_OUTER, RIGHT_EYE_INNER: LEFT_EYE_INNER,
                  LEFT_EYE_INNER: RIGHT_EYE_INNER, LEFT_EYE_OUTER: RIGHT_EYE_OUTER,
                  PHILTRUM_TOP: PHILTRUM_TOP, **{i: i for i in NOSE_BRIDGE}}
"""The point's mirror image across the face midline, for the rigid points and the nose bridge."""


_TRIANGLES: np.ndarray | None = None


def _triangles() -> np.ndarray:
    global _TRIANGLES
    if _TRIANGLES is None:
        # Imported on first use only: MediaPipe takes seconds to import, and rtau.align (which
        # needs only the indices above) must stay a light numpy/OpenCV module.
        from mediapipe.tasks.python.vision import FaceLandmarksConnections

        edges = FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION
        # The tessellation is listed as consecutive edge triples, one triple per triangle.
        tris = np.asarray([[e.start for e in edges[i : i + 3]] for i in range(0, len(edges), 3)],
                          np.int32)
        tris.setflags(write=False)
        _TRIANGLES = tris
    return _TRIANGLES


def __getattr__(name: str) -> np.ndarray:
    # `mesh.TRIANGLES`: int32[M, 3], the face mesh triangles (MediaPipe tessellation, M = 852),
    # indices < 468; read-only, built on first access.
    if name == "TRIANGLES":
        return _triangles()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def triangles() -> np.ndarray:
    """A writable copy of the mesh triangles, int32[M, 3]."""
    return _triangles().copy()
