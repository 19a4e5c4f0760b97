"""AUEstimator: frames in, AU intensities per tracked face out. The Python API of rtau.

Run:
    from rtau import AUEstimator
    with AUEstimator(model="model.onnx", max_faces=2) as est:
        for face in est.update(frame_bgr):          # BGR uint8[H, W, 3]
            print(face.id, face.box, dict(zip(face.au_names, face.aus)))

One frame goes through: full-range face detection + MediaPipe FaceLandmarker per face
(`rtau.faces.FaceDetector`, landmarks in frame pixels) -> `FaceTracker` (stable ids) ->
`align_face` (S x S uint8 BGR crop; S and the alignment from the model's contract, so every
model sees crops made the way its training crops were; a stabilised alignment, `rigid/2`,
filters each face id's points over the frames' timestamps with `rtau.stabilise`, as `train
prepare` does over a video's frames) and, for a model whose contract lists the `geometry`
input, `rtau.geometry.geometry_features` of the landmarks -> ONE batched backend step for all
faces of the frame, each with its own recurrent state. A new face id starts from the zero state;
an id the tracker drops (lost for more than `max_lost` frames) has its state freed; a face that
is only briefly lost (occluded, turned away, out of frame: by default up to 30 frames, a second
at 30 fps) gets its id and its state back, and is not stepped while missing. Optional
calibration subtracts each face's resting baseline (`rtau.calibration`).

`update` = `detect` + `estimate`; the two halves are public so that `rtau process` can run the
landmarks of frame t+1 in one thread while the step of frame t runs in another.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtau.backends import BACKEND_NAMES, Backend, BackendError, backend_importable, create_backend
from rtau.calibration import Calibrator
from rtau.closing import Closing
from rtau.model_files import resolve_model

BACKEND_CHOICES = ("auto", *BACKEND_NAMES)
AUTO_ORDER = ("tensorrt", "torch", "onnxruntime")
"""Fastest first: the GPU backends are only tried where an NVIDIA GPU is visible."""
GPU_ONLY_BACKENDS = ("tensorrt", "torch")
MAX_LOST = 30
"""Frames a face may be missed (occluded, turned away) and keep its id and state: 1 s at 30 fps."""
AUTO_OPTIONS = {"torch": {"device": "cuda"}}
"""'auto' takes torch only on a CUDA GPU: on the CPU, ONNX Runtime is the faster of the two, so
a CPU-only torch on a machine with an NVIDIA driver must not win."""


@dataclass(frozen=True)
class FaceEstimate:
    """The result for one tracked face in one frame.

    id: tracker id, stable while the face stays tracked; a face that returns after being dropped
      gets a new id (and a fresh state).
    box: (x0, y0, x1, y1) frame pixels, the landmarks' bounds.
    landmarks: float32[478, 3], x/y in frame pixels (MediaPipe's z scaled by the frame width).
    aus: float32[K] AU intensities 0..5 in `au_names` order (calibrated when calibration is on
      and this face's baseline is known; raw otherwise).
    raw_aus: float32[K] the model's output before calibration.
    age: steps this face's state has taken, 1 on the frame the face is first seen.
    calibration: "off", "calibrating" or "calibrated".
    crop: uint8[S, S, 3] the aligned BGR crop that went into the model.
    timings: milliseconds per stage for the whole frame (landmarks, align, step), shared by
      all faces of the frame.
    """

    id: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    aus: np.ndarray
    raw_aus: np.ndarray
    au_names: tuple[str, ...]
    age: int
    calibration: str
    crop: np.ndarray = field(repr=False)
    timings: Mapping[str, float] = field(default_factory=dict, repr=False)

    def au(self, name: str) -> float:
        """Intensity of one AU by canonical name (`AU12`)."""
        return float(self.aus[self.au_names.index(name)])

    def as_dict(self) -> dict:
        return {"id": self.id, "box": list(self.box),
                "aus": {n: float(v) for n, v in zip(self.au_names, self.aus, strict=True)},
                "calibration": self.calibration, "age": self.age}


def nvidia_gpu_visible() -> bool:
    """True when an NVIDIA driver is present (device node or nvidia-smi); no CUDA import."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def choose_backend(name: str, model_path: str | os.PathLike) -> tuple[Backend, str]:
    """Create backend `name`, or with 'auto' the fastest that loads here; (backend, why).

    'auto' tries AUTO_ORDER and says which backend it took and why each faster one was passed
    over (no GPU, not installed, or its own refusal, e.g. torch without CUDA).
    """
    if name not in BACKEND_CHOICES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    if name != "auto":
        backend = create_backend(name, model_path)
        return backend, f"backend {backend.describe()}"
    skipped = []
    gpu = nvidia_gpu_visible()
    for candidate in AUTO_ORDER:
        if candidate in GPU_ONLY_BACKENDS and not gpu:
            skipped.append(f"{candidate}: no NVIDIA GPU")
            continue
        if not backend_importable(candidate):
            skipped.append(f"{candidate}: not installed")
            continue
        try:
            backend = create_backend(candidate, model_path, **AUTO_OPTIONS.get(candidate, {}))
        except (BackendError, ImportError, OSError) as exc:
            if candidate == AUTO_ORDER[-1]:
                raise
            skipped.append(f"{candidate}: {exc}")
            continue
        why = f" (faster ones skipped: {'; '.join(skipped)})" if skipped else " (the fastest)"
        return backend, f"backend auto -> {backend.describe()}{why}"
    raise BackendError("no backend can run this model: " + "; ".join(skipped))


class AUEstimator(Closing):
    """Per-face AU intensities from BGR frames; see the module docstring.

    model: contract ONNX (or engine, for the tensorrt backend); None = $RTAU_MODEL or the
      shipped default. backend: 'auto' | 'onnxruntime' | 'tensorrt' | 'torch', or a Backend.
    max_faces: faces tracked per frame. max_lost: frames a face may be missing before its id
      and state are dropped. calibrate_seconds: neutral-face calibration per face id (0 = off).
    min_confidence: FaceLandmarker detection/presence threshold. landmarker_model: path of
      `face_landmarker.task` (None: rtau.faces resolves and verifies it). blendshapes: also
      score MediaPipe's 52 blendshapes per face (`detect(...)[i].blendshapes`; off by default:
      they cost time and the step does not need them).
    """

    def __init__(self, model: str | os.PathLike | None = None,
                 backend: str | Backend = "auto", max_faces: int = 1, max_lost: int = MAX_LOST,
                 calibrate_seconds: float = 0.0, min_confidence: float = 0.5,
                 landmarker_model: str | os.PathLike | None = None,
                 blendshapes: bool = False) -> None:
        from rtau.faces import FaceDetector  # lazy: MediaPipe is heavy
        from rtau.stabilise import AlignmentStabiliser  # lazy: rtau.align needs OpenCV
        from rtau.tracking import FaceTracker

        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if isinstance(backend, Backend):
            self.backend, self.backend_info = backend, f"backend {backend.describe()}"
            self._owns_backend = False
        else:
            self.backend, self.backend_info = choose_backend(backend, resolve_model(model))
            self._owns_backend = True
        self.max_faces = max_faces
        try:
            self.detector = FaceDetector(landmarker_model, max_faces=max_faces, video=True,
                                         min_confidence=min_confidence, blendshapes=blendshapes)
        except BaseException:
            self._close_backend()
            raise
        self.tracker = FaceTracker(max_lost=max_lost)
        self.stabiliser = AlignmentStabiliser(self.alignment, self.crop_size)
        self.calibrator = Calibrator(calibrate_seconds)
        self._states: dict[int, np.ndarray] = {}
        self._ages: dict[int, int] = {}
        self._last_ts = -1
        self._clock0: float | None = None
        self.last_timings: dict[str, float] = {}

    @property
    def au_names(self) -> tuple[str, ...]:
        return tuple(self.backend.contract.au_names)

    @property
    def crop_size(self) -> int:
        return self.backend.contract.crop_size

    @property
    def alignment(self) -> str:
        """How faces are cropped: the alignment the model declares (rtau.align.ALIGNMENTS)."""
        return self.backend.contract.alignment

    @property
    def active_ids(self) -> list[int]:
        """Face ids whose recurrent state is held (tracked now or briefly lost)."""
        return sorted(self._states)

    def _timestamp(self, timestamp_ms: float | None) -> int:
        """MediaPipe's video mode needs strictly increasing integer milliseconds."""
        if timestamp_ms is None:
            now = time.perf_counter()
            self._clock0 = now if self._clock0 is None else self._clock0
            timestamp_ms = (now - self._clock0) * 1000.0
        ts = max(int(round(timestamp_ms)), self._last_ts + 1)
        self._last_ts = ts
        return ts

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: float | None = None) -> list:
        """Landmarks of the faces in a frame (list of rtau.faces.Face), frames in time order."""
        return self.detector.detect(frame_bgr, self._timestamp(timestamp_ms))

    def estimate(self, frame_bgr: np.ndarray, faces: Sequence, timestamp_ms: float = 0.0,
                 timings: Mapping[str, float] | None = None) -> list[FaceEstimate]:
        """Track `faces` (from `detect` on this frame), align, step all of them in one batch.

        timestamp_ms: the frame's video time, which a stabilised alignment filters over (a
        timestamp that does not advance counts as one frame at 30 fps).
        """
        from rtau.align import align_face
        from rtau.geometry import geometry_batch

        frame_timings = dict(timings or {})
        t0 = time.perf_counter()
        tracked = self.tracker.update(list(faces)[: self.max_faces])
        for face_id in self.tracker.dropped:
            self._states.pop(face_id, None)
            self._ages.pop(face_id, None)
            self.calibrator.forget(face_id)
        size = self.crop_size
        alignment = self.alignment
        # a face missed on this frame restarts its filter when it is found again
        self.stabiliser.keep(tf.id for tf in tracked)
        crops = np.empty((len(tracked), size, size, 3), np.uint8)
        for i, tf in enumerate(tracked):
            matrix = self.stabiliser.matrix(tf.id, tf.face.landmarks, timestamp_ms)
            crops[i] = align_face(frame_bgr, tf.face.landmarks, size, alignment, matrix).crop
        t1 = time.perf_counter()
        ids = [tf.id for tf in tracked]
        zero = None
        rows = []
        for face_id in ids:
            if face_id not in self._states:
                zero = self.backend.init_state(1)[0] if zero is None else zero
                self._states[face_id] = zero
                self._ages[face_id] = 0
            rows.append(self._states[face_id])
        h = self.backend.contract.state_size
        state = np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, h),
                                                                                    np.float32)
        contract = self.backend.contract
        geometry = None
        if contract.uses_geometry:
            geometry = geometry_batch([tf.face.landmarks for tf in tracked])
        aus, new_state = self.backend.step(crops if contract.uses_image else None, state,
                                           geometry)
        t2 = time.perf_counter()
        frame_timings["align"] = (t1 - t0) * 1000.0
        frame_timings["step"] = (t2 - t1) * 1000.0
        self.last_timings = frame_timings
        out = []
        for i, tf in enumerate(tracked):
            self._states[tf.id] = new_state[i].copy()
            self._ages[tf.id] += 1
            raw = np.asarray(aus[i], np.float32)
            shown, cal = self.calibrator.apply(tf.id, timestamp_ms, raw)
            out.append(FaceEstimate(
                id=tf.id, box=tuple(float(v) for v in tf.face.box),
                landmarks=tf.face.landmarks, aus=shown, raw_aus=raw, au_names=self.au_names,
                age=self._ages[tf.id], calibration=cal, crop=crops[i], timings=frame_timings,
            ))
        return out

    def update(self, frame_bgr: np.ndarray,
               timestamp_ms: float | None = None) -> list[FaceEstimate]:
        """Estimates for every tracked face of one frame (frames must come in time order)."""
        t0 = time.perf_counter()
        ts = self._timestamp(timestamp_ms)
        faces = self.detector.detect(frame_bgr, ts)
        landmarks_ms = (time.perf_counter() - t0) * 1000.0
        return self.estimate(frame_bgr, faces, float(ts if timestamp_ms is None else timestamp_ms),
                             {"landmarks": landmarks_ms})

    def reset(self) -> None:
        """Forget every face (states, ids' baselines, alignment filters); the tracker keeps
        counting ids."""
        self._states.clear()
        self.stabiliser.reset()
        self._ages.clear()
        self.calibrator.reset()

    def _close_backend(self) -> None:
        if self._owns_backend and self.backend is not None:
            self.backend.close()

    def close(self) -> None:
        """Close the landmarker and (if created here) the backend. Idempotent."""
        detector, self.detector = getattr(self, "detector", None), None
        if detector is not None:
            detector.close()
        self._close_backend()
        self.backend = None

