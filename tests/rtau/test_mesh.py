"""The face mesh triangulation from MediaPipe."""

from rtau.mesh import NUM_LANDMARKS, TRIANGLES, triangles


def test_triangulation_covers_the_mesh():
    assert TRIANGLES.shape == (852, 3)
    assert TRIANGLES.min() == 0 and TRIANGLES.max() < NUM_LANDMARKS
    assert len({tuple(sorted(t)) for t in TRIANGLES.tolist()}) == 852
    copy = triangles()
    copy[0, 0] = -1
    assert TRIANGLES[0, 0] != -1
