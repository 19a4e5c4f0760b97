"""`python -m train synth`: synthetic AU videos with exact labels, in the DISFA layout.

    python -m train synth --out data/synth --subjects 12 --frames 1200 --seed 0 \
        [--test-subjects 2] [--faces DIR|default] [--fps 20] [--size 640x480] \
        [--preview sheet.png] [--workers 2]

Each subject is one identity (default: the pool of `train/data/identities.py`: real people from
registry packages, morphs between them, skin-tone and age variants, split by person into train
and test; with `--faces DIR`: every image and video there is one person), placed at a random
size and position in the frame and optionally mirrored. `--test-subjects M` (default
max(1, N // 6); 0 with --faces DIR) of the N subjects are dealt test identities, the others
train identities.
Per frame, AU intensities follow episodes with co-occurrence (`train/data/episodes.py`); the
base landmarks (found once by `rtau.faces.FaceDetector`) move by the per-AU templates
(`au_templates.py`), a small head motion is added, the image is warped piecewise-affinely over
the mesh (`warp.py`), the FACS appearance cues are shaded in (`au_shading.py`: forehead
lines, brow furrows, nose wrinkles, nasolabial folds, lid and cheek bulge, chin boss), the mouth
interior and teeth are painted, light and sensor noise applied.

Output (what `train/data/disfa.py` reads):
    OUT/Videos_LeftCamera/LeftVideoSYN001_comp.avi      MJPG (intra-frame, ~38 dB PSNR against
                                                         the rendered frames, ~23 MB/min at
                                                         640x480, 20 fps), --fps, --size
    OUT/ActionUnit_Labels/SYN001/SYN001_au1.txt ...      `frame,intensity`, frames from 1,
        one file per AU (DISFA's 12 plus au45); intensities are the exact values rendered,
        written with 2 decimals (DISFA itself writes integers 0..5)
    OUT/synth.json                                       settings, seed, real faces, the
        identity pool {"id", "kind", "sources", "split"}, subjects (each names its "identity"
        and "split")
Deterministic for a seed (independent of --workers).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from rtau.aus import au_number
from rtau.capture import read_frame
from rtau.commands.options import config_from_options
from rtau.errors import RtauError
from train.data.appearance import (
    LidPainter,
    MouthPainter,
    Photometric,
    pose_landmarks,
    smooth_track,
)
from train.data.au_shading import AUShading, ShadingStyle
from train.data.au_templates import MAX_INTENSITY, TEMPLATE_AUS, FaceTemplates
from train.data.episodes import EpisodeConfig, sample_intensities
from train.data.identities import TEST, TRAIN, is_neutral, largest_face
from train.data.warp import WarpMesh

GENERATOR_VERSION = 3  # 3: AU4 sized by the brow-lid gap, AU1 + AU4 oblique brow
VIDEO_DIR = "Videos_LeftCamera"
LABEL_DIR = "ActionUnit_Labels"
SUBJECT_PREFIX = "SYN"
FOURCC = "MJPG"
LABEL_DECIMALS = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
LIMITS = (
    "mesh warps plus drawn shading: the FACS appearance cues (forehead lines, brow furrows, "
    "nose wrinkles, nasolabial folds, lid and cheek bulge, chin boss) are painted creases and "
    "highlights, not rendered skin; no lighting of the 3-D shape, no hair or occlusion; "
    "identities come from 5 real people (3 train, 2 test), the rest are morphs and tone / age "
    "variants of them"
)
SHADING_SEED = 52_361  # + subject index: the per-subject chin texture
PROGRESS_EVERY = 10  # frames between progress messages from a worker


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one `synth` run; CLI flags map 1:1 to fields."""

    out: Path
    subjects: int = 8
    frames: int = 1200
    seed: int = 0
    faces: str = "default"
    fps: float = 20.0
    size: tuple[int, int] = (640, 480)
    preview: Path | None = None
    workers: int = 0  # 0: one per CPU core, at most one per subject
    test_subjects: int = -1  # subjects dealt test identities; -1: max(1, subjects // 6)
    # appearance ranges (drawn per subject)
    iod_fraction: tuple[float, float] = (0.13, 0.19)  # inter-ocular distance / frame width
    mirror_probability: float = 0.5
    max_yaw_deg: float = 7.0
    max_pitch_deg: float = 5.0
    max_roll_deg: float = 4.0
    max_shift_iod: float = 0.12
    max_scale_change: float = 0.04
    gain_range: tuple[float, float] = (0.75, 1.15)
    max_gradient: float = 0.35
    noise_sigma: tuple[float, float] = (1.0, 3.5)
    gain_jitter: tuple[float, float] = (0.85, 1.2)  # per-subject, per-AU template gain
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)


@dataclass(frozen=True)
class BaseFace:
    """One candidate base face: where it came from and the image (uint8[H, W, 3] BGR).

    identity: the identity id it shows; split: "train" or "test".
    """

    name: str
    path: str
    frame: int | None
    sha256: str
    image: np.ndarray
    identity: str = ""
    split: str = TRAIN


@dataclass(frozen=True)
class Subject:
    """A prepared subject: the base frame at output size and its landmarks (float32[478, 3])."""

    id: str
    index: int
    base: str
    mirrored: bool
    iod: float
    image: np.ndarray
    landmarks: np.ndarray
    gains: dict[str, float]
    identity: str = ""
    split: str = TRAIN
    shading: ShadingStyle = field(default_factory=ShadingStyle)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x480, got {text!r}") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise ValueError(f"--size {text} is outside 64..4096 px per side")
    return w, h


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_folder_faces(faces: str) -> list[BaseFace]:
    """Every image / video (its first frame) in a folder: one person each (identity = stem)."""
    folder = Path(faces)
    if not folder.is_dir():
        raise RtauError(
            f"--faces {faces}: not a folder (give a folder of face images or 'default')"
        )
    found: list[BaseFace] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            found.append(BaseFace(path.stem, str(path), None, _sha256(path), _read_image(path),
                                  path.stem))
        elif suffix in VIDEO_SUFFIXES:
            found.append(BaseFace(f"{path.stem}@0", str(path), 0, _sha256(path),
                                  read_frame(path, 0), path.stem))
    if not found:
        raise RtauError(f"--faces {faces}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos found")
    return found


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RtauError(f"{path}: cannot be read as an image")
    return image




def count_test_subjects(config: SynthConfig) -> int:
    """M, the subjects dealt test identities: --test-subjects, or when -1 max(1, N // 6) for the
    default identity pool and 0 for a --faces folder (its files carry no split unless asked)."""
    if config.test_subjects < 0:
        m = max(1, config.subjects // 6) if config.faces == "default" else 0
    else:
        m = config.test_subjects
    if m > config.subjects:
        raise ValueError(f"--test-subjects {m} is more than --subjects {config.subjects}")
    return m


class IdentitySource:
    """The identities a run deals from, and their neutral base images.

    `identities`: list of {"id", "kind", "sources", "split", ...} (synth.json's "identities");
    `image(id)`: uint8[H, W, 3] BGR; `report`: one record per real face or file.
    """

    def __init__(self, config: SynthConfig, detector, say):
        self._images: dict[str, np.ndarray] = {}
        if config.faces == "default":
            from train.data.identities import FaceBank, identity_pool

            pool = identity_pool()
            self._bank = FaceBank(detector, say=say)
            self._pool_by_id = {i.id: i for i in pool}
            usable = self._bank.usable(pool)
            self.identities = [i.to_json() for i in usable]
            self.report = self._bank.report
            return
        self._bank = None
        bases = load_folder_faces(config.faces)
        self.report = []
        usable: list[BaseFace] = []
        for base in bases:
            entry = {"name": base.name, "path": base.path, "frame": base.frame,
                     "sha256": base.sha256}
            face = largest_face(detector, base.image)
            if face is None:
                entry["used"], entry["reason"] = False, "no face found by MediaPipe"
            else:
                entry["used"], entry["reason"] = is_neutral(face.blendshapes)
            if not entry["used"]:
                say(f"[yellow]skipping base face {base.path}"
                    f"{'' if base.frame is None else f' frame {base.frame}'}: {entry['reason']}")
            else:
                usable.append(base)
            self.report.append(entry)
        # the folder's people are split like the default pool: a seeded sixth are test people
        people = sorted({b.identity for b in usable})
        n_test = 0 if count_test_subjects(config) == 0 or len(people) < 2 else max(
            1, len(people) // 6)
        rng = np.random.default_rng([config.seed, 104_729])
        test_people = set(rng.permutation(people)[:n_test].tolist()) if n_test else set()
        self.identities = []
        for base in usable:
            if base.identity in self._images:
                continue  # one image per person: never another frame of the same person
            self._images[base.identity] = base.image
            self.identities.append({
                "id": base.identity, "kind": "real", "sources": [base.identity],
                "split": TEST if base.identity in test_people else TRAIN, "file": base.path})

    def image(self, identity_id: str) -> np.ndarray:
        if self._bank is not None:
            return self._bank.render(self._pool_by_id[identity_id], self._pool_by_id)
        return self._images[identity_id]


def deal_identities(config: SynthConfig, identities: list[dict]) -> list[dict]:
    """The identity of each of the N subjects: N - M from train identities, then M from test.

    Each split's identities are dealt in a seeded order, all of them before any repeats.
    """
    m = count_test_subjects(config)
    dealt: list[dict] = []
    for split, count in ((TRAIN, config.subjects - m), (TEST, m)):
        pool = [i for i in identities if i["split"] == split]
        if count and not pool:
            raise RtauError(
                f"no usable {split} identity for {count} {split} subject(s) "
                f"(give --test-subjects 0, or more faces)"
            )
        order = np.random.default_rng([config.seed, 7_919, SPLIT_SALT[split]]).permutation(
            len(pool)) if pool else []
        dealt += [pool[int(order[k % len(pool)])] for k in range(count)]
    return dealt


SPLIT_SALT = {TRAIN: 0, TEST: 1}


def _place(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: tuple[int, int],
    iod_px: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The base image scaled and shifted so the face has `iod_px` and sits near the centre."""
    w, h = size
    eyes = FaceTemplates(landmarks).frame
    scale = iod_px / eyes.iod
    target = np.array(
        [w * 0.5 + rng.uniform(-0.06, 0.06) * w, h * 0.42 + rng.uniform(-0.05, 0.05) * h]
    )
    shift = target - eyes.origin * scale
    matrix = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
    return cv2.warpAffine(
        image,
        matrix,
        (w, h),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def prepare_subjects(
    config: SynthConfig, console=None
) -> tuple[list[Subject], list[dict], list[dict]]:
    """Load the identities, deal them to subjects, place each base face in the frame.

    Returns the subjects, a report per real face (used / rejected and why) and the identities.
    """
    from rtau.faces import FaceDetector

    say = console.print if console is not None else (lambda *a, **k: None)
    with FaceDetector(video=False) as detector:
        source = IdentitySource(config, detector, say)
        if not source.identities:
            raise RtauError("no usable base face: every candidate was rejected (see above)")
        dealt = deal_identities(config, source.identities)
        subjects: list[Subject] = []
        for i, ident in enumerate(dealt):
            base_image = source.image(ident["id"])
            rng = np.random.default_rng([config.seed, i, 1])
            mirrored = bool(rng.random() < config.mirror_probability)
            image = base_image[:, ::-1].copy() if mirrored else base_image
            face = largest_face(detector, image)
            if face is None:
                raise RtauError(f"identity {ident['id']}: MediaPipe finds no face in it")
            iod_px = rng.uniform(*config.iod_fraction) * config.size[0]
            placed = _place(image, face.landmarks, config.size, iod_px, rng)
            face = largest_face(detector, placed)
            if face is None:
                raise RtauError(
                    f"identity {ident['id']}: MediaPipe finds no face after placing it at "
                    f"{config.size[0]}x{config.size[1]}"
                )
            gains = {au: float(rng.uniform(*config.gain_jitter)) for au in TEMPLATE_AUS}
            subjects.append(
                Subject(
                    f"{SUBJECT_PREFIX}{i + 1:03d}",
                    i,
                    ident["id"],
                    mirrored,
                    float(iod_px),
                    placed,
                    face.landmarks.astype(np.float32),
                    gains,
                    ident["id"],
                    ident["split"],
                    ShadingStyle.sample(rng),
                )
            )
    return subjects, source.report, source.identities


class SubjectRenderer:
    """Renders frames of one subject: intensities (float[K]) + pose -> uint8[H, W, 3] BGR."""

    def __init__(self, subject: Subject):
        self.subject = subject
        self.templates = FaceTemplates(subject.landmarks, subject.gains)
        self.mesh = WarpMesh(
            subject.landmarks[:, :2], (subject.image.shape[1], subject.image.shape[0])
        )
        self.mouth = MouthPainter(subject.image, subject.landmarks[:, :2], self.templates.frame.iod)
        self.lids = LidPainter(subject.image, subject.landmarks[:, :2], self.templates.frame)
        self.shading = AUShading(subject.shading, seed=SHADING_SEED + subject.index)

    def render(
        self, intensities: np.ndarray, pose: tuple[float, ...] = (0, 0, 0, 0, 0, 1)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frame and its landmarks (float32[478, 2]); pose = yaw, pitch, roll, dx, dy, scale."""
        xy = self.templates.displace(intensities)
        yaw, pitch, roll, dx, dy, scale = pose
        xy = pose_landmarks(
            self.subject.landmarks, xy, self.templates.frame.iod, yaw, pitch, roll, (dx, dy), scale
        )
        frame = self.mesh.warp(self.subject.image, xy)
        self.shading.paint(frame, xy, intensities)
        self.mouth.paint(frame, xy)
        self.lids.paint(frame, xy)
        return frame, xy


def subject_tracks(config: SynthConfig, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Intensities float32[T, K] (rounded as written), pose float64[T, 6], light parameters."""
    rng = np.random.default_rng([config.seed, index, 2])
    n, fps = config.frames, config.fps
    labels = sample_intensities(rng, n, fps, config.episodes)
    labels = np.round(labels, LABEL_DECIMALS).astype(np.float32)
    pose = np.stack(
        [
            smooth_track(rng, n, fps, config.max_yaw_deg),
            smooth_track(rng, n, fps, config.max_pitch_deg),
            smooth_track(rng, n, fps, config.max_roll_deg),
            smooth_track(rng, n, fps, config.max_shift_iod),
            smooth_track(rng, n, fps, config.max_shift_iod),
            1.0 + smooth_track(rng, n, fps, config.max_scale_change),
        ],
        axis=1,
    )
    lo, hi = config.gain_range
    light = {
        "gain": (lo + hi) / 2 + smooth_track(rng, n, fps, (hi - lo) / 2, 0.01, 0.15),
        "gradient": smooth_track(rng, n, fps, config.max_gradient, 0.01, 0.1),
        "cast": rng.uniform(0.93, 1.07, 3),
        "noise_sigma": float(rng.uniform(*config.noise_sigma)),
    }
    return labels, pose, light


def _write_labels(out: Path, subject_id: str, labels: np.ndarray) -> None:
    folder = out / LABEL_DIR / subject_id
    folder.mkdir(parents=True, exist_ok=True)
    for k, au in enumerate(TEMPLATE_AUS):
        lines = [f"{t + 1},{v:.{LABEL_DECIMALS}f}" for t, v in enumerate(labels[:, k])]
        path = folder / f"{subject_id}_au{au_number(au)}.txt"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, path)


def render_subject(config: SynthConfig, subject: Subject, progress_queue=None) -> dict:
    """Write one subject's video and label files; returns its synth.json entry."""
    cv2.setNumThreads(1)
    out = Path(config.out)
    labels, pose, light = subject_tracks(config, subject.index)
    rng = np.random.default_rng([config.seed, subject.index, 3])
    renderer = SubjectRenderer(subject)
    photo = Photometric(rng, config.size, light["noise_sigma"])
    tmp_dir = out / ".tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    name = f"LeftVideo{subject.id}_comp.avi"
    tmp = tmp_dir / name
    writer = cv2.VideoWriter(
        str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*FOURCC), config.fps, config.size
    )
    if not writer.isOpened():
        raise RtauError(f"{tmp}: OpenCV cannot write {FOURCC} video here")
    started = time.perf_counter()
    try:
        for t in range(config.frames):
            frame, _ = renderer.render(labels[t], tuple(pose[t]))
            frame = photo.apply(
                frame, rng, float(light["gain"][t]), float(light["gradient"][t]), light["cast"]
            )
            writer.write(frame)
            if progress_queue is not None and (
                (t + 1) % PROGRESS_EVERY == 0 or t + 1 == config.frames
            ):
                progress_queue.put((subject.id, (t % PROGRESS_EVERY) + 1))
    finally:
        writer.release()
    video_dir = out / VIDEO_DIR
    video_dir.mkdir(parents=True, exist_ok=True)
    _write_labels(out, subject.id, labels)
    os.replace(tmp, video_dir / name)
    active = (labels > 0).mean(axis=0)
    return {
        "id": subject.id,
        "identity": subject.identity,
        "split": subject.split,
        "base_face": subject.base,
        "mirrored": subject.mirrored,
        "iod_px": round(subject.iod, 2),
        "frames": config.frames,
        "video": f"{VIDEO_DIR}/{name}",
        "template_gains": {au: round(g, 4) for au, g in subject.gains.items()},
        "shading": {k: round(v, 4) for k, v in asdict(subject.shading).items()},
        "noise_sigma": round(light["noise_sigma"], 3),
        "active_fraction": {
            au: round(float(a), 4) for au, a in zip(TEMPLATE_AUS, active, strict=True)
        },
        "render_seconds": round(time.perf_counter() - started, 2),
    }


def _worker(args) -> dict:
    config, subject, queue = args
    return render_subject(config, subject, queue)


def write_preview(path: Path, subject: Subject, cell: int = 224) -> None:
    """Contact sheet PNG: one row per AU: label, neutral, intensity 2.5, intensity 5."""
    renderer = SubjectRenderer(subject)
    lm = subject.landmarks[:, :2]
    (x0, y0), (x1, y1) = lm.min(axis=0), lm.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * 0.62

    def crop(image: np.ndarray) -> np.ndarray:
        m = np.array(
            [
                [cell / (2 * half), 0, cell / 2 - cx * cell / (2 * half)],
                [0, cell / (2 * half), cell / 2 - cy * cell / (2 * half)],
            ]
        )
        return cv2.warpAffine(
            image, m, (cell, cell), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT
        )

    rows = []
    zero = np.zeros(len(TEMPLATE_AUS), np.float32)
    neutral = crop(renderer.render(zero)[0])
    for k, au in enumerate(TEMPLATE_AUS):
        cells = [neutral.copy()]
        for value in (MAX_INTENSITY / 2, MAX_INTENSITY):
            v = zero.copy()
            v[k] = value
            cells.append(crop(renderer.render(v)[0]))
        for c, text in zip(cells, (au, "2.5", "5"), strict=True):
            cv2.putText(c, text, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3)
            cv2.putText(c, text, (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 1)
        rows.append(np.hstack(cells))
    half_rows = (len(rows) + 1) // 2
    rows += [np.zeros_like(rows[0])] * (2 * half_rows - len(rows))
    sheet = np.hstack(
        [
            np.vstack(rows[:half_rows]),
            np.full((half_rows * cell, 8, 3), 255, np.uint8),
            np.vstack(rows[half_rows:]),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    if not cv2.imwrite(str(tmp), sheet):
        raise RtauError(f"{path}: cannot write the preview image")
    os.replace(tmp, path)


def _settings(config: SynthConfig) -> dict:
    d = asdict(config)
    d["out"] = str(config.out)
    d["preview"] = None if config.preview is None else str(config.preview)
    return d


def run_synth(config: SynthConfig, console=None) -> dict:
    """Generate everything for `config`; returns the synth.json content."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from rtau.contract import write_json_atomic

    if config.subjects < 1 or config.frames < 1:
        raise ValueError("--subjects and --frames must be at least 1")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    subjects, report, identities = prepare_subjects(config, console)
    if config.preview is not None:
        write_preview(Path(config.preview), subjects[0])
    workers = config.workers or (os.cpu_count() or 1)
    workers = max(1, min(workers, len(subjects)))
    started = time.perf_counter()
    entries: dict[str, dict] = {}
    total = config.frames * len(subjects)
    with Progress(
        TextColumn("synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} frames/s"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("synth", total=total, rate="-")
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            rate = done / max(time.perf_counter() - started, 1e-6)
            progress.update(task, advance=n, rate=f"{rate:.1f}")

        if workers == 1:

            class _Direct:
                def put(self, item):
                    tick(item[1])

            for s in subjects:
                entries[s.id] = render_subject(config, s, _Direct())
        else:
            ctx = mp.get_context("spawn")
            with ctx.Manager() as manager, ctx.Pool(workers) as pool:
                queue = manager.Queue()
                pending = pool.map_async(_worker, [(config, s, queue) for s in subjects])
                while not pending.ready() or not queue.empty():
                    try:
                        item = queue.get(timeout=0.2)
                    except Exception:  # queue.Empty from the manager proxy
                        continue
                    tick(item[1])
                for entry in pending.get():
                    entries[entry["id"]] = entry
    shutil.rmtree(out / ".tmp", ignore_errors=True)
    seconds = time.perf_counter() - started
    meta = {
        "generator": "rtau synthetic AU videos",
        "version": GENERATOR_VERSION,
        "seed": config.seed,
        "settings": _settings(config),
        "aus": list(TEMPLATE_AUS),
        "label_format": f"frame,intensity; frames from 1; intensities 0..5 with "
        f"{LABEL_DECIMALS} decimals, exactly the values rendered",
        "video": {
            "fourcc": FOURCC,
            "backend": "FFmpeg",
            "fps": config.fps,
            "width": config.size[0],
            "height": config.size[1],
        },
        "limits": LIMITS,
        "base_faces": report,
        "identities": identities,
        "splits": {
            split: {
                "identities": sum(i["split"] == split for i in identities),
                "subjects": [s.id for s in subjects if s.split == split],
            }
            for split in (TRAIN, TEST)
        },
        "subjects": [entries[s.id] for s in subjects],
        "render_seconds": round(seconds, 2),
        "workers": workers,
        "frames_per_second": round(total / max(seconds, 1e-6), 2),
    }
    write_json_atomic(out / "synth.json", meta)
    return meta


def synth_command(
    out: Annotated[Path, typer.Option(help="output folder (DISFA layout)")],
    subjects: Annotated[int, typer.Option(help="number of synthetic subjects")] = 8,
    frames: Annotated[int, typer.Option(help="frames per subject video")] = 1200,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same data")] = 0,
    faces: Annotated[
        str, typer.Option(help="folder of base-face images/videos, or 'default'")
    ] = "default",
    fps: Annotated[float, typer.Option(help="frame rate of the videos")] = 20.0,
    size: Annotated[str, typer.Option(help="frame size WIDTHxHEIGHT")] = "640x480",
    preview: Annotated[Path | None, typer.Option(help="write a contact sheet PNG here")] = None,
    workers: Annotated[int, typer.Option(help="parallel processes (0: one per core)")] = 0,
    test_subjects: Annotated[
        int,
        typer.Option(help="subjects dealt test identities (-1: max(1, subjects // 6); 0 for "
                     "--faces DIR)"),
    ] = -1,
) -> None:
    """Generate synthetic AU videos with exact labels in the DISFA layout."""
    if fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    config = config_from_options(SynthConfig, locals(), size=_parse_size(size))
    from rich.console import Console

    count_test_subjects(config)  # a bad --test-subjects stops before any work
    console = Console(stderr=True)
    meta = run_synth(config, console)
    console.print(
        f"wrote {len(meta['subjects'])} subjects ({len(meta['splits']['test']['subjects'])} "
        f"test) x {frames} frames to {out} from {len(meta['identities'])} identities "
        f"({meta['frames_per_second']:.1f} frames/s with {meta['workers']} workers)"
        + (f"; preview {preview}" if preview else "")
    )
    print(json.dumps({"out": str(out), "subjects": len(meta["subjects"]), "frames": frames}))
