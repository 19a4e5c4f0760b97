"""Tests of the synthetic generator's identity pool (`train/data/identities.py`, `morph.py`).

Real components: the real portraits from registry packages (through `rtau.media`) and the real
MediaPipe FaceLandmarker, which must find every face made and read it neutral.

Run: /work/venv/bin/python -m pytest tests/train/data/test_identities.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from train.data.identities import (
    REAL_FACES,
    SPLITS,
    TEST,
    TRAIN,
    FaceBank,
    identity_pool,
    is_neutral,
    largest_face,
    split_people,
)

KINDS = {"real", "morph", "swap", "tone", "age"}


def test_pool_sizes_and_person_disjoint_split():
    pool = identity_pool()
    counts = {s: sum(i.split == s for i in pool) for s in SPLITS}
    assert counts[TRAIN] >= 40 and counts[TEST] >= 8, counts
    assert len({i.id for i in pool}) == len(pool)
    assert {i.kind for i in pool} == KINDS
    people = split_people(pool)
    assert people[TRAIN] and people[TEST]
    assert not people[TRAIN] & people[TEST]  # no test person inside any training identity
    split_of = {f.person: f.split for f in REAL_FACES}
    for ident in pool:
        assert ident.sources and all(split_of[p] == ident.split for p in ident.sources), ident
        if ident.kind == "real":
            assert ident.sources == (ident.id,)
    # every morph really mixes two people
    assert all(len(i.sources) == 2 for i in pool if i.kind in ("morph", "swap"))


def test_pool_split_follows_the_people_given():
    faces = tuple(
        f.__class__(**{**f.__dict__, "split": TEST if f.person == "grace_hopper" else TRAIN})
        for f in REAL_FACES
    )
    pool = identity_pool(faces)
    people = split_people(pool)
    assert people[TEST] == {"grace_hopper"} and "grace_hopper" not in people[TRAIN]


@pytest.fixture(scope="module")
def bank_and_detector():
    from rtau.faces import FaceDetector

    with FaceDetector(video=False) as detector:
        yield FaceBank(detector), detector


def test_real_faces_are_usable_and_neutral(bank_and_detector):
    bank, _ = bank_and_detector
    used = {r["person"]: r for r in bank.report}
    assert all(r["used"] for r in used.values()), bank.report
    # the NASA portrait smiles; it is kept only because the relaxed mouth reads neutral
    assert used["eileen_collins"]["relaxed"]
    assert set(bank.people) == {f.person for f in REAL_FACES}


def test_rendered_identities_are_faces_mediapipe_reads_neutral(bank_and_detector):
    bank, detector = bank_and_detector
    pool = identity_pool()
    by_id = {i.id: i for i in pool}
    picks = [next(i for i in pool if i.kind == kind and i.split == TEST) for kind in KINDS]
    for ident in picks:
        image = bank.render(ident, by_id)
        assert image.dtype == np.uint8 and image.shape == (512, 512, 3)
        face = largest_face(detector, image)
        assert face is not None, ident.id
        ok, why = is_neutral(face.blendshapes)
        assert ok, (ident.id, why)
    # a morph differs from both of its sources
    morph = next(i for i in pool if i.kind == "morph" and i.split == TEST)
    a, b = (bank.people[p][0] for p in morph.sources)
    m = bank.render(morph, by_id).astype(np.float32)
    assert np.abs(m - a).mean() > 3 and np.abs(m - b).mean() > 3
