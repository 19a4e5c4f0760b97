"""Faces in a frame: full-range detection, then MediaPipe's 478 landmarks per face.

Run: `with FaceDetector(max_faces=8) as d: faces = d.detect(frame_bgr)`, or
`python -m rtau.faces IMAGE_OR_VIDEO` to print the faces (with tracker ids) per frame.

`FaceDetector.detect(frame_bgr uint8[H, W, 3], timestamp_ms) -> list[Face]`, one stage:

1. **Where the faces are**: MediaPipe's full-range BlazeFace (`rtau.detect`, faces from
   `min_face_px` wide up to frame-filling). In video mode it runs every `detect_every` frames
   (and on every frame while no face is followed); in between, each face's region comes from
   its landmarks on the previous frame, so a face is followed at the landmarker's own cost.
2. **Landmarks per face**: MediaPipe's FaceLandmarker (`face_landmarker.task`) on a square
   crop of `CROP_PX` pixels around each region, mapped back to frame pixels. A detection whose
   crop gives no landmarks (a profile the landmark model cannot fit, a false detection) is
   listed in `last_skipped`, not returned. Two regions that land on the same face (one face
   passing in front of another) give one face: the region that was following it keeps it.

Face: 478 landmarks, x and y in frame pixels, z in MediaPipe's relative depth in the same
pixel scale; `box` is the landmarks' bounding box in frame pixels; blendshapes by name.
Ids across frames come from `rtau.tracking.FaceTracker`. Both model files are resolved and
sha256-checked by `rtau.model_files`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from rtau.closing import Closing
from rtau.detect import DEFAULT_MIN_FACE_PX, Detection, FullRangeDetector
from rtau.model_files import resolve_landmarker_model
from rtau.native_logs import quiet_native_logs
from rtau.tracking import FaceTracker, box_centre_distance, box_iou

NUM_LANDMARKS = 478
CROP_PX = 256
"""Side of the square crop the landmarker sees (it detects and fits the face inside it)."""
DETECTION_EXPAND = 2.0
"""Crop side / detection box side: BlazeFace boxes span brows to chin; the landmarker wants
the whole head with margin."""
LANDMARK_EXPAND = 1.6
"""Crop side / landmark box side, for a face followed from the previous frame."""
DUPLICATE_IOU = 0.5
"""Two results overlapping more than this are one face."""
NEW_FACE_IOU = 0.2
"""A detection overlapping a followed face by more than this is that face, not a new one."""
DEFAULT_DETECT_EVERY = 5


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


@dataclass(frozen=True)
class Region:
    """A square of the frame to look for one face in: centre (x, y) and side, frame pixels;
    `source` is the box it came from (a detection or the previous landmarks)."""

    cx: float
    cy: float
    side: float
    source: tuple[float, float, float, float]

    @classmethod
    def around(cls, box: tuple[float, ...], expand: float) -> Region:
        x0, y0, x1, y1 = box
        return cls((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(x1 - x0, y1 - y0) * expand,
                   tuple(float(v) for v in box))

    def crop_matrix(self) -> np.ndarray:
        """float32[2, 3] affine map from frame pixels to crop pixels (CROP_PX square)."""
        s = CROP_PX / max(self.side, 1.0)
        return np.array([[s, 0.0, CROP_PX / 2.0 - s * self.cx],
                         [0.0, s, CROP_PX / 2.0 - s * self.cy]], np.float32)


class FaceDetector(Closing):
    """Full-range detection + per-face FaceLandmarker on BGR frames (module docstring).

    video=True follows faces from frame to frame (frames must come in time order);
    video=False treats every frame as an independent still (detection on every call).
    max_faces: at most this many faces per frame (the followed ones first, then new
    detections by score). min_confidence: MediaPipe's detection/presence threshold inside a
    crop. min_face_px: smallest face width to find. detect_every: frames between full-range
    detections in video mode (1 = every frame). blendshapes: compute MediaPipe's 52 scores.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, max_faces: int = 1,
                 video: bool = True, min_confidence: float = 0.5,
                 min_face_px: float = DEFAULT_MIN_FACE_PX,
                 detect_every: int = DEFAULT_DETECT_EVERY, blendshapes: bool = True,
                 detector_model: str | os.PathLike | None = None) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        model = resolve_landmarker_model(model_path)
        self._finder = FullRangeDetector(detector_model, min_face_px=min_face_px)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model)),
            running_mode=vision.RunningMode.IMAGE, num_faces=1,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=blendshapes,
        )
        with quiet_native_logs():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self.video = video
        self.max_faces = max_faces
        self.detect_every = detect_every
        self._frame = 0
        self._followed: list[Face] = []
        self.last_skipped: list[Detection] = []
        self.last_detected = False
        """Whether the last call ran the full-range detector."""
        self.last_timings: dict[str, float] = {}
        """Milliseconds of the last call: `detect` (the full-range passes, only on frames that
        ran them) and `landmarks` (all crops), plus `faces`, the crops landmarked."""

    def _landmarks_in(self, frame_bgr: np.ndarray, region: Region) -> Face | None:
        """The face MediaPipe fits in `region`'s crop, in frame pixels, or None."""
        import cv2
        import mediapipe as mp

        m = region.crop_matrix()
        crop = cv2.warpAffine(frame_bgr, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        image = mp.Image(image_format=mp.ImageFormat.SRGB,
                         data=np.ascontiguousarray(crop[:, :, ::-1]))
        result = self._landmarker.detect(image)
        if not result.face_landmarks:
            return None
        s = float(m[0, 0])
        lm = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float32)
        lm *= CROP_PX
        lm[:, 0] = (lm[:, 0] - m[0, 2]) / s
        lm[:, 1] = (lm[:, 1] - m[1, 2]) / s
        lm[:, 2] /= s
        shapes = None
        if result.face_blendshapes:
            shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[0]}
        return face_from_landmarks(lm, shapes)

    def _regions(self, frame_bgr: np.ndarray) -> tuple[list[Region], list[Detection | None]]:
        """This frame's regions (followed faces first) and, per region, the detection it
        comes from (None for a followed face)."""
        regions = [Region.around(f.box, LANDMARK_EXPAND) for f in self._followed]
        sources: list[Detection | None] = [None] * len(regions)
        due = (not self.video or not self._followed
               or self._frame % self.detect_every == 0)
        self.last_detected = due
        if due and len(regions) < self.max_faces:
            for det in self._finder.detect(frame_bgr):
                if len(regions) >= self.max_faces:
                    break
                if any(box_iou(det.box, f.box) > NEW_FACE_IOU
                       or _centre_inside(det.box, f.box) for f in self._followed):
                    continue
                regions.append(Region.around(det.box, DETECTION_EXPAND))
                sources.append(det)
        return regions, sources

    def detect(self, frame_bgr: np.ndarray, timestamp_ms: int | None = None) -> list[Face]:
        """Faces in one BGR frame (see the class docstring). `timestamp_ms` is accepted for
        the interface of a video detector; frames are taken in call order."""
        if self._landmarker is None:
            raise RuntimeError("FaceDetector is closed")
        if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"frame must be uint8[H, W, 3] BGR, got {frame_bgr.dtype}"
                             f"{list(frame_bgr.shape)}")
        t0 = time.perf_counter()
        regions, sources = self._regions(frame_bgr)
        t1 = time.perf_counter()
        self._frame += 1
        found: list[tuple[Face, Region]] = []
        self.last_skipped = []
        for region, detection in zip(regions, sources, strict=True):
            face = self._landmarks_in(frame_bgr, region)
            if face is None:
                if detection is not None:
                    self.last_skipped.append(detection)
                continue
            found.append((face, region))
        faces = _one_per_face(found)
        self._followed = faces if self.video else []
        self.last_timings = {"landmarks": (time.perf_counter() - t1) * 1000.0,
                             "faces": float(len(regions))}
        if self.last_detected:
            self.last_timings["detect"] = (t1 - t0) * 1000.0
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None



def _centre_inside(box: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


def _one_per_face(found: list[tuple[Face, Region]]) -> list[Face]:
    """Drop results that are the same face as another (IoU > DUPLICATE_IOU): of such a group
    the one whose region's source box lies nearest the result is kept (the region that was
    following that face, not the one whose own face is hidden behind it)."""
    ranked = sorted(found, key=lambda fr: box_centre_distance(fr[0].box, fr[1].source))
    kept: list[Face] = []
    for face, _ in ranked:
        if all(box_iou(face.box, k.box) <= DUPLICATE_IOU for k in kept):
            kept.append(face)
    order = {id(face): i for i, (face, _) in enumerate(found)}
    return sorted(kept, key=lambda f: order[id(f)])


def main(argv: list[str] | None = None) -> int:
    """Print the faces found in an image or in each frame of a video, with tracker ids."""
    import argparse

    import cv2

    from rtau.errors import RtauError

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
    try:
        detector = FaceDetector(max_faces=args.max_faces, video=image is None)
    except RtauError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with detector:
        for index, frame in enumerate(frames):
            tracked = tracker.update(detector.detect(frame, timestamp_ms=index * 33))
            boxes = ", ".join(f"id {t.id} box {tuple(round(v) for v in t.face.box)}"
                              for t in tracked)
            skipped = f" ({len(detector.last_skipped)} skipped)" if detector.last_skipped else ""
            print(f"frame {index}: {len(tracked)} face(s){skipped} {boxes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
