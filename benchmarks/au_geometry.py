"""How far does each synthetic AU move MediaPipe's landmarks, against a small head turn?

Run: `python -m benchmarks.au_geometry [--subjects 4] [--seed 5] [--out benchmarks/results]`.

A geometry model reads an AU from the change of MediaPipe's landmarks (`rtau.geometry`, in
crop sides after the rigid fit); a head that turns a little also changes them. For `--subjects`
subjects of *test* identities, rendered frontal and neutral exactly as `python -m train synth`
renders them (no light changes or noise), this renders each AU alone at intensities 2 and 4,
and the neutral face turned by a few degrees of pitch and yaw (the generator's pose tracks go
to 5 and 7), runs MediaPipe's FaceLandmarker (image mode) on each frame, and reports per case:

- the features' change from the neutral frame over the points the AU moves most (the 12
  points of largest rendered displacement at intensity 4; for a head turn, the AU's points),
  as the mean length of the per-point change, in 1e-3 crop sides;
- the share of the rendered displacement MediaPipe reports (its landmarks' change projected on
  the rendered one, over the same points);
- the change of the AU's MediaPipe blendshape (a network trained on real faces, which reads
  the same landmarks).

So it says, per AU, whether its landmark signal stands out against a head turn of a few
degrees, the nuisance a per-face baseline does not remove. Writes `au_geometry-<host>.json` and
`.md` under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.real_faces import BLENDSHAPES as REAL_FACE_BLENDSHAPES
from benchmarks.results_io import markdown_table, write_results
from rtau.geometry import GEOMETRY_FRAME_SIZE, geometry_features
from train.data.au_templates import TEMPLATE_AUS
from train.data.synth import SubjectRenderer, SynthConfig, prepare_subjects

# AU -> the MediaPipe blendshapes that move with it (their mean): real_faces.py's, plus AU25,
# whose parted lips only jawOpen reads
BLENDSHAPES: dict[str, tuple[str, ...]] = {**REAL_FACE_BLENDSHAPES, "AU25": ("jawOpen",)}
LEVELS = (2.0, 4.0)
TURNS = (("pitch", 4.0), ("pitch", -4.0), ("yaw", 6.0))  # degrees; the tracks reach 5 / 7
TOP_POINTS = 12
MILLI = 1000.0


def _render(renderer: SubjectRenderer, au: str | None = None, level: float = 0.0,
            yaw: float = 0.0, pitch: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros(len(TEMPLATE_AUS), np.float32)
    if au is not None:
        x[TEMPLATE_AUS.index(au)] = level
    return renderer.render(x, (yaw, pitch, 0.0, 0.0, 0.0, 1.0))


def _rendered_features(xy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The rendered landmarks (frame px, float[478, 2]) as features, with the reference face's
    z (the rigid fit uses x and y only)."""
    lm = np.concatenate([xy[:, :2], reference[:, 2:3]], 1)
    return geometry_features(lm).reshape(-1, 2)


def measure(subjects: int, seed: int, size=(640, 480)) -> dict:
    """Render and judge; returns the JSON-able result."""
    from rtau.faces import FaceDetector

    config = SynthConfig(out=Path(tempfile.gettempdir()), subjects=subjects, frames=1,
                         seed=seed, size=size, test_subjects=subjects)
    subs, _, _ = prepare_subjects(config)
    rows: dict[str, dict[str, list]] = {}
    judged = 0

    def record(key: str, change: float, share: float | None, blend: float) -> None:
        row = rows.setdefault(key, {"change": [], "share": [], "blendshape": []})
        row["change"].append(change)
        row["blendshape"].append(blend)
        if share is not None:
            row["share"].append(share)

    with FaceDetector(video=False) as detector:
        def judge(frame: np.ndarray):
            faces = detector.detect(frame, 0)
            return (geometry_features(faces[0].landmarks).reshape(-1, 2),
                    faces[0].blendshapes or {}) if faces else (None, None)

        for subject in subs:
            renderer = SubjectRenderer(subject)
            frame0, xy0 = _render(renderer)
            g0, b0 = judge(frame0)
            if g0 is None:
                continue
            judged += 1
            r0 = _rendered_features(xy0, subject.landmarks)
            for au in TEMPLATE_AUS:
                names = BLENDSHAPES[au]
                base = float(np.mean([b0.get(n, 0.0) for n in names]))
                renders = {level: _render(renderer, au, level) for level in LEVELS}
                rendered = _rendered_features(renders[max(LEVELS)][1], subject.landmarks) - r0
                top = np.argsort(-np.linalg.norm(rendered, axis=1))[:TOP_POINTS]
                for level in LEVELS:
                    frame, xy = renders[level]
                    g, b = judge(frame)
                    if g is None:
                        continue
                    moved = (g - g0)[top]
                    want = (_rendered_features(xy, subject.landmarks) - r0)[top]
                    share = float((moved * want).sum() / max((want * want).sum(), 1e-12))
                    blend = float(np.mean([b.get(n, 0.0) for n in names])) - base
                    record(f"{au}={level:g}", float(np.linalg.norm(moved, axis=1).mean()),
                           share, blend)
                for axis, degrees in TURNS:
                    frame, _ = _render(renderer, yaw=degrees if axis == "yaw" else 0.0,
                                       pitch=degrees if axis == "pitch" else 0.0)
                    g, b = judge(frame)
                    if g is None:
                        continue
                    blend = float(np.mean([b.get(n, 0.0) for n in names])) - base
                    record(f"{au}@{axis}{degrees:+g}",
                           float(np.linalg.norm((g - g0)[top], axis=1).mean()), None, blend)
    cases = []
    for au in TEMPLATE_AUS:
        signal = rows.get(f"{au}={max(LEVELS):g}")
        turns = [rows.get(f"{au}@{axis}{degrees:+g}") for axis, degrees in TURNS]
        if signal is None or any(t is None for t in turns):
            continue
        change = float(np.mean(signal["change"])) * MILLI
        worst_turn = max(float(np.mean(t["change"])) for t in turns) * MILLI
        cases.append({
            "au": au,
            "blendshapes": list(BLENDSHAPES[au]),
            "change_milli": {f"{level:g}": round(float(np.mean(
                rows[f"{au}={level:g}"]["change"])) * MILLI, 2) for level in LEVELS},
            "mediapipe_share": round(float(np.mean(signal["share"])), 2),
            "turn_change_milli": {f"{axis}{degrees:+g}": round(float(np.mean(
                t["change"])) * MILLI, 2) for (axis, degrees), t in zip(TURNS, turns,
                                                                       strict=True)},
            "signal_over_turn": round(change / max(worst_turn, 1e-9), 2),
            "blendshape_change": round(float(np.mean(signal["blendshape"])), 3),
            "blendshape_turn_change": round(max(abs(float(np.mean(t["blendshape"])))
                                                for t in turns), 3),
        })
    return {
        "what": "MediaPipe landmark change per synthetic AU vs a small head turn, test "
                "identities, frontal neutral reference",
        "subjects": [{"id": s.id, "identity": s.identity} for s in subs],
        "subjects_judged": judged,
        "levels": list(LEVELS),
        "turns": [f"{axis}{degrees:+g}" for axis, degrees in TURNS],
        "top_points": TOP_POINTS,
        "units": f"1e-3 crop sides of the {GEOMETRY_FRAME_SIZE} px rigid frame",
        "aus": cases,
        "machine": {"host": socket.gethostname(), "cores": os.cpu_count()},
    }


def markdown(result: dict) -> str:
    """The result as a markdown table."""
    turns = result["turns"]
    head = ["AU", "landmark change at 2", "at 4", "MediaPipe share of the rendered change"]
    head += [f"change under {t}" for t in turns]
    head += ["AU at 4 / largest turn", "blendshape", "its change at 4", "its largest under a turn"]
    rows = []
    for c in result["aus"]:
        rows.append([c["au"], f"{c['change_milli']['2']:.2f}", f"{c['change_milli']['4']:.2f}",
                     f"{c['mediapipe_share']:.2f}",
                     *[f"{c['turn_change_milli'][t]:.2f}" for t in turns],
                     f"{c['signal_over_turn']:.2f}", " + ".join(c["blendshapes"]),
                     f"{c['blendshape_change']:+.3f}", f"{c['blendshape_turn_change']:.3f}"])
    lines = [f"Landmark change from the neutral frontal frame over each AU's "
             f"{result['top_points']} most-moved points, {result['units']}; "
             f"{result['subjects_judged']} test-identity subjects, MediaPipe image mode.", ""]
    lines += markdown_table(head, rows, numeric_from=1)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    result = measure(args.subjects, args.seed)
    tag = "cpu2" if os.cpu_count() == 2 else socket.gethostname()
    text = markdown(result)
    write_results(args.out, f"au_geometry-{tag}", result, text)
    print(text)
    print(json.dumps({c["au"]: c["signal_over_turn"] for c in result["aus"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
