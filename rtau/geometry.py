"""Face geometry for the step's optional `geometry` input: MediaPipe landmarks in the crop frame.

The FaceLandmarker pass that places the crop already gives 478 landmarks from a network trained
on real faces. A model whose contract lists the `geometry` input (`rtau.contract`) takes them
beside (or instead of) the crop pixels, as `geometry_features(landmarks)`:

- each frame's landmarks are mapped into the canonical crop frame with the *unfiltered*
  `rigid/1` fit of that frame alone (eye corners + philtrum top; the points facial actions do not
  move), so the features are a pure function of one frame's landmarks, the same in training
  (`train/data/store.py`, from a clip store's landmarks) and live (`rtau.estimator`);
- x and y of every landmark, in units of the crop side, centred: (p / S) - 0.5, about -0.5..0.5
  (S = `GEOMETRY_FRAME_SIZE`); z is left out (MediaPipe's depth is relative and noisy);
- float32[G], G = 2 x 478 = 956, ordered x0, y0, x1, y1, ...

Identity lives in the absolute shape; expression in the change from the person's own neutral
shape. The model keeps a running per-face baseline of these features inside its recurrent state
(see `train/model.py`), so the host sends the frame's features alone.
Pure numpy; no MediaPipe import (the landmarks come from `rtau.faces`).
"""

from __future__ import annotations

import numpy as np

from rtau import mesh
from rtau.align import RIGID, get_alignment, similarity_transforms
from rtau.contract import GEOMETRY_LANDMARKS_XY, KNOWN_GEOMETRY

GEOMETRY_LAYOUT = GEOMETRY_LANDMARKS_XY
"""The feature layout above; a model names it (`rtau.geometry` metadata) so a future layout is
refused by an rtau that does not know it."""
GEOMETRY_SIZE = 2 * mesh.NUM_LANDMARKS
assert KNOWN_GEOMETRY[GEOMETRY_LAYOUT] == GEOMETRY_SIZE
GEOMETRY_FRAME_SIZE = 112
GEOMETRY_ALIGNMENT = RIGID


def geometry_features(landmarks: np.ndarray) -> np.ndarray:
    """float32[G] features of one face: landmarks float[478, 2|3] in frame pixels (any frame)."""
    return geometry_batch(np.asarray(landmarks)[None])[0]


def geometry_batch(landmarks: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """float32[B, G] of B faces' landmarks (each float[478, 2|3], frame pixels), the B
    similarity fits solved at once (training turns and re-aligns thousands of faces a step)."""
    if len(landmarks) == 0:
        return np.zeros((0, GEOMETRY_SIZE), np.float32)
    lm = np.asarray(landmarks if isinstance(landmarks, np.ndarray) else np.stack(landmarks))
    if lm.ndim != 3 or lm.shape[1] != mesh.NUM_LANDMARKS or lm.shape[2] < 2:
        raise ValueError(f"expected landmarks of shape [B, {mesh.NUM_LANDMARKS}, 2|3], got "
                         f"{lm.shape}")
    alignment = get_alignment(GEOMETRY_ALIGNMENT)
    # the float32 points of Alignment.points, as the live crop's fit takes them
    src = lm[:, list(alignment.indices), :2].astype(np.float32)
    matrices = similarity_transforms(src, alignment.template(GEOMETRY_FRAME_SIZE))
    x, y = lm[..., 0].astype(np.float64), lm[..., 1].astype(np.float64)
    m = matrices[:, :, :, None]  # [B, 2, 3, 1]: each face's affine against its N points
    points = np.stack([m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2],
                       m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2]], -1)
    return (points / GEOMETRY_FRAME_SIZE - 0.5).reshape(len(lm), -1).astype(np.float32)
