"""Tests of the FACS appearance cues (`train/data/au_shading.py`) on a real face's landmarks.

The landmarks are MediaPipe's on Grace Hopper (matplotlib's public-domain still); each cue must
darken its own region more as the intensity rises, and leave the rest of the face alone.

Run: /work/venv/bin/python -m pytest tests/train/data/test_au_shading.py -q
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from train.data.au_shading import AUShading, ShadingStyle
from train.data.au_templates import TEMPLATE_AUS, FaceFrame

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
# AU -> landmarks whose neighbourhood (face units) carries the cue, and the offset from them
REGIONS = {
    "AU01": ((151,), (0.0, 0.0)),  # centre of the forehead
    "AU04": ((55, 285, 168), (0.0, -0.03)),  # between the brows
    "AU09": ((168, 6), (0.0, 0.04)),  # nose root
    "AU12": ((129, 61), (-0.08, 0.02)),  # subject's right nasolabial fold
    "AU06": ((145,), (0.0, 0.11)),  # below the right lower lid
    "AU17": ((17, 152), (0.0, 0.02)),  # chin boss
}
RADIUS = 0.08  # IOD


@pytest.fixture(scope="module")
def face():
    from rtau.faces import FaceDetector

    image = cv2.imread(str(GRACE))
    with FaceDetector(video=False) as detector:
        (found,) = detector.detect(image)
    return image, found.landmarks[:, :2].astype(np.float64)


def _region_mask(xy: np.ndarray, au: str, box: tuple[int, int], shape) -> np.ndarray:
    frame = FaceFrame.from_landmarks(xy)
    idx, (du, dv) = REGIONS[au]
    centre = xy[list(idx)].mean(axis=0) + frame.iod * (du * frame.u_axis + dv * frame.v_axis)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    xs, ys = xs + box[0], ys + box[1]
    return np.hypot(xs - centre[0], ys - centre[1]) < RADIUS * frame.iod


@pytest.mark.parametrize("au", sorted(REGIONS))
def test_cue_darkens_its_region_more_with_intensity(face, au):
    image, xy = face
    shading = AUShading(ShadingStyle(), seed=0)
    h, w = image.shape[:2]
    zero = np.zeros(len(TEMPLATE_AUS), np.float32)
    assert shading.shade(xy, zero, (w, h)) is None  # intensity 0: nothing changes
    means, outside, peaks = [], [], []
    for value in (1.0, 2.5, 5.0):
        x = zero.copy()
        x[TEMPLATE_AUS.index(au)] = value
        shade, box = shading.shade(xy, x, (w, h))
        inside = _region_mask(xy, au, box, shade.shape)
        means.append(float(np.clip(shade[inside], 0, None).mean()))
        peaks.append(float(np.percentile(shade[inside], 98)))
        others = [a for a in REGIONS if a != au and not {a, au} <= {"AU06", "AU12"}]
        far = np.ones_like(inside)
        for other in others:
            if au == "AU09" and other == "AU04":
                continue  # the nose root wrinkles reach up toward the glabella
            far &= ~_region_mask(xy, other, box, shade.shape)
        outside.append(float(np.abs(shade[~inside & far]).mean()))
    assert means[0] < means[1] < means[2], (au, means)
    assert peaks[2] > 0.1, (au, peaks)  # a visible crease: >10% darker at its centre
    assert means[2] > 4 * outside[2], (au, means, outside)
    # painted: the region gets darker in the image too
    x = zero.copy()
    x[TEMPLATE_AUS.index(au)] = 5.0
    painted = shading.paint(image.copy(), xy, x)
    shade, box = shading.shade(xy, x, (w, h))
    inside = _region_mask(xy, au, box, shade.shape) & (shade > 0.05)  # the creases
    sh, sw = shade.shape
    before = image[box[1] : box[1] + sh, box[0] : box[0] + sw][inside].mean()
    after = painted[box[1] : box[1] + sh, box[0] : box[0] + sw][inside].mean()
    assert after < before - 2, (au, before, after)


def test_cues_vary_per_identity(face):
    image, xy = face
    h, w = image.shape[:2]
    x = np.zeros(len(TEMPLATE_AUS), np.float32)
    x[TEMPLATE_AUS.index("AU04")] = 5.0
    a, _ = AUShading(ShadingStyle.sample(np.random.default_rng(1)), 0).shade(xy, x, (w, h))
    b, _ = AUShading(ShadingStyle.sample(np.random.default_rng(2)), 0).shade(xy, x, (w, h))
    assert np.abs(a - b).max() > 0.05
