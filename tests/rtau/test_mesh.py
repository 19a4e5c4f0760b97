"""The face mesh: MediaPipe's triangulation and the named landmark groups.

Every named chain must follow MediaPipe's own contour edges (`FaceLandmarksConnections`), and
the named points must sit where their names say on a real face.
"""

from __future__ import annotations

import numpy as np
import pytest
from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

from rtau import mesh
from rtau.mesh import NUM_LANDMARKS, TRIANGLES, triangles


def _edges(connections) -> set[frozenset[int]]:
    return {frozenset((c.start, c.end)) for c in connections}


def test_triangulation_covers_the_mesh():
    assert TRIANGLES.shape == (852, 3) and TRIANGLES.dtype == np.int32
    assert TRIANGLES.min() == 0 and TRIANGLES.max() < mesh.NUM_MESH_LANDMARKS < NUM_LANDMARKS
    assert len({tuple(sorted(t)) for t in TRIANGLES.tolist()}) == 852
    # every triangle's three sides are edges of MediaPipe's tessellation
    tess = _edges(C.FACE_LANDMARKS_TESSELATION)
    for a, b, c in TRIANGLES.tolist():
        assert {frozenset((a, b)), frozenset((b, c)), frozenset((c, a))} <= tess
    assert len(np.unique(TRIANGLES)) == mesh.NUM_MESH_LANDMARKS  # no mesh point left out
    copy = triangles()
    copy[0, 0] = -1
    assert TRIANGLES[0, 0] != -1


@pytest.mark.parametrize(("chains", "connections"), [
    ((mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER), C.FACE_LANDMARKS_RIGHT_EYE),
    ((mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER), C.FACE_LANDMARKS_LEFT_EYE),
    ((mesh.RIGHT_BROW_UPPER, mesh.RIGHT_BROW_LOWER), C.FACE_LANDMARKS_RIGHT_EYEBROW),
    ((mesh.LEFT_BROW_UPPER, mesh.LEFT_BROW_LOWER), C.FACE_LANDMARKS_LEFT_EYEBROW),
    ((mesh.OUTER_LIP_UPPER, mesh.OUTER_LIP_LOWER, mesh.INNER_LIP_UPPER, mesh.INNER_LIP_LOWER),
     C.FACE_LANDMARKS_LIPS),
    ((mesh.NOSE_BRIDGE, mesh.RIGHT_NOSE_WING, mesh.LEFT_NOSE_WING), C.FACE_LANDMARKS_NOSE),
    ((mesh.FACE_OVAL + mesh.FACE_OVAL[:1],), C.FACE_LANDMARKS_FACE_OVAL),
    ((mesh.RIGHT_IRIS[1:] + mesh.RIGHT_IRIS[1:2],), C.FACE_LANDMARKS_RIGHT_IRIS),
    ((mesh.LEFT_IRIS[1:] + mesh.LEFT_IRIS[1:2],), C.FACE_LANDMARKS_LEFT_IRIS),
])
def test_chains_follow_mediapipe_contours(chains, connections):
    edges = _edges(connections)
    for chain in chains:
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            assert frozenset((a, b)) in edges, f"{a}-{b} is not a MediaPipe contour edge"
    assert len(mesh.FACE_OVAL) == len(_edges(C.FACE_LANDMARKS_FACE_OVAL))


def test_named_points_sit_where_their_names_say(single_face_landmarks):
    _, lm = single_face_landmarks
    x, y = lm[:, 0], lm[:, 1]
    # subject's right on the image left (unmirrored photo)
    assert x[mesh.RIGHT_EYE_OUTER] < x[mesh.RIGHT_EYE_INNER] < x[mesh.NOSE_TIP]
    assert x[mesh.NOSE_TIP] < x[mesh.LEFT_EYE_INNER] < x[mesh.LEFT_EYE_OUTER]
    assert x[mesh.MOUTH_RIGHT] < x[mesh.UPPER_LIP_INNER] < x[mesh.MOUTH_LEFT]
    assert x[mesh.RIGHT_BROW_OUTER] < x[mesh.RIGHT_BROW_INNER] < x[mesh.LEFT_BROW_INNER]
    assert x[mesh.LEFT_BROW_INNER] < x[mesh.LEFT_BROW_OUTER]
    assert x[list(mesh.RIGHT_NOSE_WING)].max() < x[mesh.NOSE_TIP]
    assert x[list(mesh.LEFT_NOSE_WING)].min() > x[mesh.NOSE_TIP]
    assert x[mesh.RIGHT_CHEEK] < x[mesh.NOSE_TIP] < x[mesh.LEFT_CHEEK]
    # top to bottom: forehead, brows, lids, irises, nose tip, lips, chin
    for side in ("RIGHT", "LEFT"):
        brow = y[list(getattr(mesh, f"{side}_BROW_UPPER"))].max()
        upper = y[getattr(mesh, f"{side}_UPPER_LID_MID")]
        lower = y[getattr(mesh, f"{side}_LOWER_LID_MID")]
        iris = y[getattr(mesh, f"{side}_IRIS_CENTRE")]
        cheek = y[getattr(mesh, f"{side}_CHEEK")]
        assert y[mesh.FOREHEAD_TOP] < brow < upper < iris < lower < cheek < y[mesh.MOUTH_RIGHT]
    assert y[mesh.NOSE_TIP] < y[mesh.UPPER_LIP_TOP] < y[mesh.UPPER_LIP_INNER]
    assert y[mesh.LOWER_LIP_INNER] < y[mesh.LOWER_LIP_BOTTOM] < y[mesh.CHIN]
    assert y[mesh.CHIN] == y[:NUM_LANDMARKS].max()
    height = y[mesh.CHIN] - y[mesh.FOREHEAD_TOP]
    assert y[mesh.FOREHEAD_TOP] < y[list(mesh.FACE_OVAL)].min() + 0.02 * height  # top, up to tilt
    # iris centres lie inside their eye's lid contour
    for iris, upper, lower in ((mesh.RIGHT_IRIS_CENTRE, mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER),
                               (mesh.LEFT_IRIS_CENTRE, mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER)):
        assert x[list(upper)].min() < x[iris] < x[list(upper)].max()
        assert y[list(upper)].min() < y[iris] < y[list(lower)].max()


def test_shared_triangles_are_read_only():
    with pytest.raises(ValueError, match="read-only"):
        TRIANGLES[0, 0] = 0
