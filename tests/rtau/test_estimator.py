"""AUEstimator on real clips: one batched step per frame for all faces, one recurrent state per
tracked face id, zero state for a new face, state freed when the tracker drops a face."""

from __future__ import annotations

import numpy as np
import pytest

from rtau import AUEstimator
from rtau.backends import BackendError
from rtau.backends.onnxruntime import OnnxRuntimeBackend
from rtau.capture import VideoFileSource
from rtau.estimator import choose_backend
from rtau.media import test_media as media_file
from rtau.model_files import ModelNotFound, resolve_model

MAX_LOST = 10


class CountingBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, recording the batch size of every step it runs."""

    def __init__(self, path):
        super().__init__(path, device="cpu")
        self.batches: list[int] = []

    def _run(self, inputs, state):
        self.batches.append(state.shape[0])
        return super()._run(inputs, state)


@pytest.fixture(scope="module")
def backend(tiny_onnx):
    with CountingBackend(tiny_onnx) as b:
        yield b


def run_clip(name: str, backend, **kwargs):
    """Per frame: the list of FaceEstimates, plus the ids dropped and states held after it."""
    out = []
    with AUEstimator(backend=backend, max_lost=MAX_LOST, **kwargs) as est, \
            VideoFileSource(media_file(name)) as source:
        for frame in source.frames():
            faces = est.update(frame.image, frame.timestamp_ms)
            out.append((faces, list(est.tracker.dropped), est.active_ids))
    return out


def test_single_face_clip_states_follow_the_face(backend):
    backend.batches.clear()
    frames = run_clip("single_face.mp4", backend)
    assert len(frames) == 72
    assert all(len(faces) == 1 for faces, _, _ in frames), "a face in every frame"
    ids = {faces[0].id for faces, _, _ in frames}
    assert len(ids) == 1
    assert [faces[0].age for faces, _, _ in frames] == list(range(1, 73))
    assert backend.batches == [1] * 72, "one step per frame"
    first = frames[0][0][0]
    assert first.aus.shape == (12,) and first.au_names == backend.contract.au_names
    assert first.crop.shape == (112, 112, 3) and first.landmarks.shape == (478, 3)
    assert set(first.timings) >= {"landmarks", "align", "step"}
    # The estimator's outputs are exactly the backend unrolled over this face's crops.
    state = backend.init_state(1)
    for faces, _, _ in frames:
        aus, state = backend.step(faces[0].crop[None], state)
        np.testing.assert_allclose(faces[0].raw_aus, aus[0], atol=1e-5)
    # ...and the state matters: the last frame from a zero state gives something else.
    last = frames[-1][0][0]
    fresh, _ = backend.step(last.crop[None], backend.init_state(1))
    assert np.abs(fresh[0] - last.raw_aus).max() > 1e-4


def test_two_faces_go_through_one_batched_step(backend):
    import cv2

    source = VideoFileSource(media_file("single_face.mp4"))
    backend.batches.clear()
    with AUEstimator(backend=backend, max_faces=2) as est, source:
        for frame in source.frames():
            if frame.index == 5:
                break
            pair = np.hstack([frame.image, cv2.flip(frame.image, 1)])
            faces = est.update(pair, frame.timestamp_ms)
            assert len(faces) == 2 and faces[0].id != faces[1].id
    assert backend.batches == [2] * 5


def test_each_face_id_keeps_its_own_state(backend):
    """Two faces side by side with different histories (left: the smiling end of the clip played
    backwards, right: its neutral first frame held), then the same frame on both sides: each
    id's outputs must be the unroll of its own crops, and the two states must matter on the last
    frame."""
    history = 20
    source = VideoFileSource(media_file("single_face.mp4"))
    seen: dict[int, list] = {}
    with AUEstimator(backend=backend, max_faces=2) as est, source:
        frames = [f.image for f in source.frames()]
        for t in range(history + 1):
            left = frames[len(frames) - 1 - t] if t < history else frames[0]
            faces = est.update(np.hstack([left, frames[0]]), t * 33.0)
            assert len(faces) == 2
            for face in faces:
                seen.setdefault(face.id, []).append(face)
    assert len(seen) == 2 and all(len(v) == history + 1 for v in seen.values())
    left, right = sorted(seen.values(), key=lambda faces: faces[0].box[0])
    before_last = {}
    for name, faces in (("left", left), ("right", right)):
        state = backend.init_state(1)
        for t, face in enumerate(faces):
            before_last[name] = state
            aus, state = backend.step(face.crop[None], state)
            np.testing.assert_allclose(face.raw_aus, aus[0], atol=1e-5,
                                       err_msg=f"{name} face, frame {t}")
    # The check above has power only if the two histories matter: the same last crop through
    # each face's own state must differ by far more than the unroll tolerance, so a shared or
    # swapped state could not pass it.
    crop = left[-1].crop
    both, _ = backend.step(np.stack([crop, crop]),
                           np.concatenate([before_last["left"], before_last["right"]]))
    state_effect = np.abs(both[0] - both[1]).max()
    assert state_effect > 10 * 1e-5, state_effect


def _runs(mask):
    """(start, end) of the runs of True in a boolean list."""
    runs, start = [], None
    for i, v in enumerate([*mask, False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_face_then_no_face_frees_the_state(backend):
    frames = run_clip("face_noface.mov", backend)
    present = [bool(faces) for faces, _, _ in frames]
    start, end = max(_runs(present), key=lambda r: r[1] - r[0])
    assert start == 0 and end - start > 30, "the face is found from the first frame"
    face_id = frames[0][0][0].id
    assert face_id in frames[end][2], "briefly lost: the state is kept"
    dropped_at = next(i for i, (_, dropped, _) in enumerate(frames) if face_id in dropped)
    assert dropped_at == end + MAX_LOST
    assert face_id not in frames[dropped_at][2], "dropped: the state is freed"
    assert not any(present[end:dropped_at + 1])


def test_no_face_then_face_gets_a_fresh_id_and_zero_state(backend):
    frames = run_clip("noface_face.mov", backend)
    present = [bool(faces) for faces, _, _ in frames]
    assert not any(present[:60]), "the clip starts without a face"
    start, end = max(_runs(present), key=lambda r: r[1] - r[0])
    assert end - start > 30
    first = frames[start][0][0]
    earlier_ids = {f.id for faces, _, _ in frames[:start] for f in faces}
    assert first.id not in earlier_ids and first.age == 1
    fresh, _ = backend.step(first.crop[None], backend.init_state(1))
    np.testing.assert_allclose(first.raw_aus, fresh[0], atol=1e-5)


def test_no_face_clip_gives_no_estimates(backend):
    frames = run_clip("no_face.mp4", backend)
    assert len(frames) > 50 and not any(faces for faces, _, _ in frames)


def test_calibration_subtracts_each_faces_baseline(backend):
    frames = run_clip("single_face.mp4", backend, calibrate_seconds=0.5)
    statuses = [faces[0].calibration for faces, _, _ in frames]
    assert statuses[0] == "calibrating" and statuses[-1] == "calibrated"
    calibrating = [faces[0].raw_aus for faces, _, _ in frames if
                   faces[0].calibration == "calibrating"]
    assert 14 <= len(calibrating) <= 16  # 0.5 s at 30 fps
    baseline = np.median(np.stack(calibrating), axis=0)
    last = frames[-1][0][0]
    np.testing.assert_allclose(last.aus, np.maximum(last.raw_aus - baseline, 0), atol=1e-6)


def test_backend_choice_and_model_resolution(tiny_onnx, tmp_path, monkeypatch):
    backend, info = choose_backend("auto", tiny_onnx)
    try:
        assert backend.name == "onnxruntime" and info.startswith("backend auto -> onnxruntime")
    finally:
        backend.close()
    with pytest.raises(BackendError, match="unknown backend 'fast'"):
        choose_backend("fast", tiny_onnx)
    with pytest.raises(ModelNotFound, match="model file not found: .*missing.onnx"):
        resolve_model(tmp_path / "missing.onnx")
    monkeypatch.setenv("RTAU_MODEL", str(tiny_onnx))
    assert resolve_model(None) == tiny_onnx


def test_auto_never_takes_torch_on_the_cpu(tiny_onnx, monkeypatch):
    """An NVIDIA driver with a CPU-only torch (this machine's torch, a driver made visible):
    'auto' must take ONNX Runtime, and say why torch was passed over."""
    pytest.importorskip("torch")
    import torch

    import rtau.estimator as estimator_module

    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here: the CPU-only case cannot be shown")
    monkeypatch.setattr(estimator_module, "nvidia_gpu_visible", lambda: True)
    backend, info = choose_backend("auto", tiny_onnx)
    try:
        assert backend.name == "onnxruntime", info
        assert "torch: torch sees no CUDA GPU" in info, info
    finally:
        backend.close()


def test_import_rtau_is_light():
    import subprocess
    import sys

    code = ("import sys, rtau; assert 'AUEstimator' in rtau.__all__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mediapipe', 'onnxruntime', 'torch') or m == 'rtau.estimator'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_crops_follow_the_alignment_the_model_declares(backend, tmp_path):
    # The tiny test model is a new export (rigid/2, the default); models made before contract
    # version 2 (the default before 0.2.0) were trained on five-point/1 crops. Each must get its
    # own kind of crop, from the same frame (a face's first frame: rigid/2 filters nothing yet).
    pytest.importorskip("torch")
    from rtau.align import FIVE_POINT, RIGID_STABILISED, align_face
    from tests.conftest import randomised_model
    from train.export import ExportConfig, export_onnx
    from train.model import ModelConfig

    legacy, _ = export_onnx(randomised_model(ModelConfig.tiny()), tmp_path / "five.onnx",
                            ExportConfig(parity_steps=0, alignment=FIVE_POINT))
    with VideoFileSource(media_file("single_face.mp4")) as source:
        frame = next(iter(source.frames()))
    with OnnxRuntimeBackend(legacy, device="cpu") as default:
        models = ((backend, RIGID_STABILISED), (default, FIVE_POINT))
        crops = {}
        for model, expected in models:
            assert model.contract.alignment == expected
            with AUEstimator(backend=model) as est:
                assert est.alignment == expected
                (face,) = est.update(frame.image, frame.timestamp_ms)
                size = est.crop_size
            reference = align_face(frame.image, face.landmarks, size, expected).crop
            np.testing.assert_array_equal(face.crop, reference)
            crops[expected] = face.crop.astype(np.float32)
    assert np.abs(crops[RIGID_STABILISED] - crops[FIVE_POINT]).mean() > 1.0  # they really differ


def test_each_face_id_keeps_its_own_alignment_filter(backend):
    """Two faces side by side (left: the clip, right: its mirror image played backwards from
    frame 19): each id's crops must be those of a stabiliser fed that face alone, at the frames'
    timestamps; a face the tracker misses on a frame starts afresh."""
    import cv2

    from rtau.align import RIGID_STABILISED, align_face
    from rtau.faces import DEFAULT_DETECT_EVERY
    from rtau.stabilise import AlignmentStabiliser

    assert backend.contract.alignment == RIGID_STABILISED
    frames = 12
    with VideoFileSource(media_file("single_face.mp4")) as source:
        clip = [f.image for f in source.frames()][:20]
    seen: dict[int, list] = {}
    with AUEstimator(backend=backend, max_faces=2) as est:
        for t in range(frames):
            pair = np.hstack([clip[t], cv2.flip(clip[len(clip) - 1 - t], 1)])
            for face in est.update(pair, t * 1000.0 / 30.0):
                seen.setdefault(face.id, []).append((t, pair, face))
        assert sorted(est.stabiliser.tracks) == sorted(seen)
    assert len(seen) == 2 and all(len(v) == frames for v in seen.values())
    filtered_frames = 0
    for history in seen.values():
        alone = AlignmentStabiliser(RIGID_STABILISED)
        for t, pair, face in history:
            matrix = alone.matrix("only", face.landmarks, t * 1000.0 / 30.0)
            expected = align_face(pair, face.landmarks, alignment=RIGID_STABILISED,
                                  matrix=matrix).crop
            np.testing.assert_array_equal(face.crop, expected, err_msg=f"face {face.id}, {t}")
            plain = align_face(pair, face.landmarks, alignment=RIGID_STABILISED).crop
            filtered_frames += int(not np.array_equal(face.crop, plain))
    # the check has power only if the filter acts: after each face's first frame, crops differ
    # from the plain fit
    assert filtered_frames >= 2 * (frames - 2)
    # a face missed on a frame restarts its filter: drop one face for a frame, then bring it back
    half = clip[0].shape[1]
    with AUEstimator(backend=backend, max_faces=2) as est:
        for t in range(3):
            faces = est.update(np.hstack([clip[t], cv2.flip(clip[t], 1)]), t * 33.0)
        right_id = next(f.id for f in faces if f.box[0] > half)
        (kept,) = est.update(np.hstack([clip[3], np.full_like(clip[3], 128)]), 99.0)
        assert est.stabiliser.tracks == [kept.id] and kept.id != right_id
        back = None
        for t in range(4, 4 + 2 * DEFAULT_DETECT_EVERY):  # found again at the next detection
            pair = np.hstack([clip[t], cv2.flip(clip[t], 1)])
            back = next((f for f in est.update(pair, t * 33.0) if f.box[0] > half), None)
            if back is not None:
                break
        assert back is not None and back.id == right_id  # the tracker kept its id...
        plain = align_face(pair, back.landmarks, alignment=RIGID_STABILISED).crop
        np.testing.assert_array_equal(back.crop, plain)  # ...but its filter started afresh


def test_blendshapes_are_scored_only_when_asked():
    from rtau import media
    from rtau.capture import read_frame

    frame = read_frame(media.test_media("single_face.mp4"), 40)  # the man smiles
    for asked in (False, True):
        with AUEstimator(backend="onnxruntime", blendshapes=asked) as est:
            faces = est.detect(frame, 0.0)
        assert len(faces) == 1
        assert bool(faces[0].blendshapes) == asked
        if asked:
            assert faces[0].blendshapes["mouthSmileLeft"] > 0.3


@pytest.mark.parametrize("inputs", ["geometry", "image+geometry"])
def test_a_geometry_model_gets_each_faces_landmark_features(inputs, tmp_path):
    """The estimator feeds a geometry model `rtau.geometry` features of each face's own
    landmarks (and the crop only if the model takes it); the model's baseline, carried in the
    state, is the mean of the face's features so far."""
    pytest.importorskip("torch")
    from rtau.geometry import geometry_features
    from tests.conftest import randomised_model
    from train.export import ExportConfig, export_onnx
    from train.model import ModelConfig

    model = randomised_model(ModelConfig.tiny(inputs=inputs), seed=3)
    path, _ = export_onnx(model, tmp_path / "geo.onnx", ExportConfig(parity_steps=5))
    frames = []
    with CountingBackend(path) as backend:
        assert backend.contract.uses_geometry
        for faces, _, _ in run_clip("single_face.mp4", backend)[:12]:
            frames.append(faces[0])
        state = backend.init_state(1)
        for face in frames:
            crop = face.crop[None] if backend.contract.uses_image else None
            geometry = geometry_features(face.landmarks)
            aus, state = backend.step(crop, state, geometry[None])
            np.testing.assert_allclose(face.raw_aus, aus[0], atol=1e-5)
        crop = frames[0].crop[None] if backend.contract.uses_image else None
        with pytest.raises(BackendError, match="needs the geometry input"):
            backend.step(crop, backend.init_state(1))
        if not backend.contract.uses_image:
            with pytest.raises(BackendError, match="takes no image input"):
                backend.step(frames[0].crop[None], backend.init_state(1), geometry[None])
    hidden, size = model.cfg.hidden_size, model.cfg.geometry_size
    expected = np.mean([geometry_features(f.landmarks) for f in frames], axis=0)
    np.testing.assert_allclose(state[0, hidden:hidden + size], expected, atol=1e-5)
    assert state[0, -1] == len(frames)
