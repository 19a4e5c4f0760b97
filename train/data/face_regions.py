"""Named regions of the 478-point MediaPipe face mesh that the synthetic AU templates move.

Indices are MediaPipe FaceLandmarker landmark numbers (the canonical face mesh, 468 points plus
10 iris points). "Right" and "left" are the subject's: the subject's right eye is on the image
left in an unmirrored frame. Chains run from the outer (or right) corner to the other corner.
The triangulation comes from `rtau.mesh`; this module adds only what the generator needs.
"""

from __future__ import annotations

import numpy as np

from rtau import mesh as _mesh

NUM_LANDMARKS = 478
TRIANGLES: np.ndarray = _mesh.TRIANGLES
"""int32[852, 3]: the face mesh triangles (MediaPipe tessellation)."""

RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_EYE_LOOP = RIGHT_EYE_UPPER + RIGHT_EYE_LOWER[-2:0:-1]
LEFT_EYE_LOOP = LEFT_EYE_UPPER + LEFT_EYE_LOWER[-2:0:-1]

RIGHT_BROW_INNER = (107, 55, 66, 65)
RIGHT_BROW_OUTER = (70, 46, 63, 53)
LEFT_BROW_INNER = (336, 285, 296, 295)
LEFT_BROW_OUTER = (300, 276, 293, 283)
RIGHT_BROW_LOWER_EDGE = _mesh.RIGHT_BROW_LOWER  # outer -> inner end of the brow's lower edge
LEFT_BROW_LOWER_EDGE = _mesh.LEFT_BROW_LOWER

RIGHT_NOSE_WING = (98, 64, 129, 102)
LEFT_NOSE_WING = (327, 294, 358, 331)

INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIP_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LIP_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
MOUTH_HOLE = INNER_LIP_UPPER + INNER_LIP_LOWER[-2:0:-1]
LIP_CORNER_RIGHT = 61
LIP_CORNER_LEFT = 291
LOWER_LIP_BOTTOM = 17
CHIN = 152
JAW_PIVOTS = (234, 454)  # the most lateral face-oval points, just in front of the ears

FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
"""The face outline, a closed loop (the mesh's outer boundary)."""
