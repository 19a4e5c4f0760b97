"""The MediaPipe face mesh: its triangulation and named landmark indices.

Indices are FaceLandmarker landmark numbers (478: the 468-point canonical mesh plus 10 iris
points). "Right"/"left" are the subject's: the subject's right eye is on the image left in an
unmirrored frame.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
CHIN = 152
FOREHEAD_TOP = 10
RIGHT_BROW = (70, 63, 105, 66, 107)
LEFT_BROW = (300, 293, 334, 296, 336)


def _triangles() -> np.ndarray:
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    edges = FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION
    # The tessellation is listed as consecutive edge triples, one triple per triangle.
    return np.asarray([[e.start for e in edges[i : i + 3]] for i in range(0, len(edges), 3)],
                      np.int32)


TRIANGLES: np.ndarray = _triangles()
"""int32[M, 3]: the face mesh triangles (MediaPipe tessellation, M = 852)."""


def triangles() -> np.ndarray:
    """A copy of the mesh triangles, int32[M, 3]."""
    return TRIANGLES.copy()
