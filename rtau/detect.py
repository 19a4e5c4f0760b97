"""Full-range face detection: MediaPipe's BlazeFace full-range model run with OpenCV's DNN.

Run: `FullRangeDetector().detect(frame_bgr)` -> list[Detection], or
`python -m rtau.detect IMAGE` to print the faces of an image.

The model (`face_detection_full_range.tflite`, Apache-2.0, 1.1 MB; resolved and sha256-checked
by `rtau.model_files.resolve_detector_model`) takes a 192 x 192 RGB image in [-1, 1] and
scores 2304 anchors (a 48 x 48 grid, stride 4) with a box and six keypoints each. OpenCV reads
TFLite files itself (`cv2.dnn.readNetFromTFLite`, input NCHW), so no TFLite runtime is needed.

One pass sees the whole frame letterboxed to 192 px: a face must be about 16 px wide there,
so in a 1280 px frame it finds faces from ~110 px up to frame-filling. For smaller faces the
frame is also cut into overlapping square tiles of `tile_side(min_face_px)` pixels, each
letterboxed to 192 px; detections of all passes are merged by weighted non-maximum
suppression (as MediaPipe does). ~5 ms per pass on one core of a 2-core x86_64 machine.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 192
GRID = 48
"""Anchors: one per cell of a 48 x 48 grid (stride 4), centred in the cell, fixed size."""
NUM_KEYPOINTS = 6
"""Right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion."""
RAW_SCORE_LIMIT = 80.0
"""Logits are clipped before the sigmoid (MediaPipe clips at 100, which overflows float32)."""
MIN_SCORE = 0.5
NMS_IOU = 0.3
MIN_FACE_IN_INPUT = 16.0
"""The smallest face width (input pixels) the model finds reliably: sets the tile size."""
TILE_OVERLAP = 0.25
"""Neighbouring tiles share this fraction of a tile, so a small face lies whole in one."""
TILE_MIN_GAIN = 1.25
"""Tiles are only worth their time when they enlarge faces by at least this factor over the
whole-frame pass: a 640 x 480 frame gets one pass (its smallest faces are then ~53 px)."""
DEFAULT_MIN_FACE_PX = 48


@dataclass(frozen=True)
class Detection:
    """One face found by the detector, in frame pixels.

    box: (x0, y0, x1, y1); keypoints: float32[6, 2] (x, y); score: 0..1.
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def tile_side(min_face_px: float) -> int:
    """Side (frame px) of a square tile in which a face `min_face_px` wide is still found."""
    return int(round(INPUT_SIZE * min_face_px / MIN_FACE_IN_INPUT))


def tile_origins(length: int, side: int) -> list[int]:
    """Start offsets of tiles `side` long covering [0, length) with at least TILE_OVERLAP
    overlap; [] when one whole-frame pass already covers it (length <= side)."""
    if length <= side:
        return [0]
    count = math.ceil((length - side * TILE_OVERLAP) / (side * (1.0 - TILE_OVERLAP)))
    count = max(count, 2)
    step = (length - side) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def _anchors() -> np.ndarray:
    centres = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ax, ay = np.meshgrid(centres, centres)
    return np.stack([ax.ravel(), ay.ravel()], axis=1)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = NMS_IOU) -> list[Detection]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of the
    detections overlapping it by more than `iou_threshold`. boxes float[N, 4] (x0, y0, x1, y1),
    keypoints float[N, 6, 2], scores float[N]; same frame coordinates in and out."""
    order = np.argsort(-scores)
    remaining = list(order)
    out = []
    while remaining:
        top = remaining[0]
        rest = np.array(remaining)
        ix = np.clip(np.minimum(boxes[rest, 2], boxes[top, 2])
                     - np.maximum(boxes[rest, 0], boxes[top, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[rest, 3], boxes[top, 3])
                     - np.maximum(boxes[rest, 1], boxes[top, 1]), 0, None)
        inter = ix * iy
        area = (boxes[rest, 2] - boxes[rest, 0]) * (boxes[rest, 3] - boxes[rest, 1])
        top_area = (boxes[top, 2] - boxes[top, 0]) * (boxes[top, 3] - boxes[top, 1])
        iou = inter / np.maximum(area + top_area - inter, 1e-9)
        group = rest[iou > iou_threshold]
        group = group if len(group) else np.array([top])
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kps = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()
        out.append(Detection(tuple(float(v) for v in box), kps.astype(np.float32),
                             float(scores[top])))
        grouped = set(group.tolist()) | {int(top)}
        remaining = [i for i in remaining if int(i) not in grouped]
    return out


class FullRangeDetector:
    """BlazeFace full-range on BGR frames, whole frame plus tiles for faces >= min_face_px.

    model_path: the .tflite (None: resolved and verified by rtau.model_files).
    min_score: detection threshold 0..1.
    """

    def __init__(self, model_path: str | os.PathLike | None = None,
                 min_face_px: float = DEFAULT_MIN_FACE_PX, min_score: float = MIN_SCORE) -> None:
        import cv2

        from rtau.model_files import resolve_detector_model

        if min_face_px <= 0:
            raise ValueError(f"min_face_px must be positive, got {min_face_px}")
        self._net = cv2.dnn.readNetFromTFLite(str(resolve_detector_model(model_path)))
        self._outputs = self._net.getUnconnectedOutLayersNames()
        self._anchors = _anchors()
        self.min_face_px = float(min_face_px)
        self.min_score = float(min_score)

    def windows(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """The passes for a frame: (x0, y0, side) squares in frame pixels, the whole frame first
        (side = its longer edge, padded), then the tiles if small faces need them."""
        passes = [(0, 0, max(height, width))]
        side = tile_side(self.min_face_px)
        if max(height, width) > side * TILE_MIN_GAIN:
            passes += [(x, y, side) for y in tile_origins(height, side)
                       for x in tile_origins(width, side)]
        return passes

    def _run(self, frame_bgr: np.ndarray, x0: int, y0: int, side: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw detections of one square window (padded with black past the frame edge)."""
        import cv2

        h, w = frame_bgr.shape[:2]
        window = frame_bgr[y0:min(y0 + side, h), x0:min(x0 + side, w)]
        scale = INPUT_SIZE / side
        small = cv2.resize(window, (max(1, round(window.shape[1] * scale)),
                                    max(1, round(window.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        image = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        image[:small.shape[0], :small.shape[1]] = small[:INPUT_SIZE, :INPUT_SIZE]
        blob = (image[:, :, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        self._net.setInput(np.ascontiguousarray(blob))
        raw, logits = self._net.forward(self._outputs)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0], -RAW_SCORE_LIMIT,
                                              RAW_SCORE_LIMIT)))
        keep = scores >= self.min_score
        pts = raw[0, keep].reshape(-1, 2 + NUM_KEYPOINTS, 2) / INPUT_SIZE
        anchors = self._anchors[keep]
        centre = pts[:, 0] + anchors
        half = pts[:, 1] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1) * side
        boxes += np.array([x0, y0, x0, y0], np.float32)
        kps = (pts[:, 2:] + anchors[:, None, :]) * side + np.array([x0, y0], np.float32)
        return boxes, kps, scores[keep]

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8[H, W, 3] frame, most confident first (frame pixels)."""
        if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"frame must be uint8[H, W, 3] BGR, got {frame_bgr.dtype}"
                             f"{list(frame_bgr.shape)}")
        h, w = frame_bgr.shape[:2]
        parts = [self._run(frame_bgr, x0, y0, side) for x0, y0, side in self.windows(h, w)]
        boxes = np.concatenate([p[0] for p in parts])
        if len(boxes) == 0:
            return []
        kps = np.concatenate([p[1] for p in parts])
        scores = np.concatenate([p[2] for p in parts])
        found = weighted_nms(boxes, kps, scores)
        # A tile cuts a face at its edge into a partial detection that the whole face, seen
        # in a neighbouring tile, contains: keep a box only if no larger kept box holds most
        # of it.
        found = [d for d in found if not any(
            o is not d and o.size > d.size and _inside_fraction(d.box, o.box) > 0.6
            for o in found)]
        return [d for d in found if d.size >= self.min_face_px / 2]


def _inside_fraction(inner: tuple[float, ...], outer: tuple[float, ...]) -> float:
    """Fraction of box `inner`'s area that lies inside box `outer`."""
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return ix * iy / area if area > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    """Print the faces the full-range detector finds in an image."""
    import argparse

    import cv2

    from rtau.errors import RtauError

    parser = argparse.ArgumentParser(prog="python -m rtau.detect", description=main.__doc__)
    parser.add_argument("image")
    parser.add_argument("--min-face-px", type=float, default=DEFAULT_MIN_FACE_PX)
    args = parser.parse_args(argv)
    image = cv2.imread(args.image)
    if image is None:
        print(f"error: {args.image} is not an image OpenCV can read", file=sys.stderr)
        return 1
    try:
        found = FullRangeDetector(min_face_px=args.min_face_px).detect(image)
    except RtauError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for d in found:
        print(f"score {d.score:.2f} box {tuple(round(v) for v in d.box)}")
    print(f"{len(found)} face(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
