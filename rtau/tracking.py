"""Face ids across frames: a greedy box tracker with constant-velocity prediction.

Run: `tracker = FaceTracker(); for faces in frames: tracked = tracker.update(faces)`.
`FaceTracker.update(faces) -> list[TrackedFace]` gives stable integer ids; a face unseen for
more than `max_lost` frames is dropped (its id is listed in `dropped` once, so the caller frees
its recurrent state); ids are never reused.
Boxes are (x0, y0, x1, y1) in frame pixels; any object with a `.box` can be tracked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VELOCITY_SMOOTHING = 0.5
"""Weight of the newest displacement in a track's velocity (an exponential moving average)."""
LOST_SEARCH_GROWTH = 0.15
"""A lost track is searched this many face sizes further per frame lost (its prediction
drifts), up to LOST_SEARCH_MAX."""
LOST_SEARCH_MAX = 1.5


@dataclass(frozen=True)
class TrackedFace:
    """A face with its tracker id (stable while the face is followed)."""

    id: int
    face: object


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


@dataclass
class _Track:
    box: tuple[float, ...]
    velocity: tuple[float, float] = (0.0, 0.0)
    """Box-centre displacement per frame, frame pixels."""
    lost: int = 0
    seen: int = 1

    def predicted(self) -> tuple[float, ...]:
        """The box moved on by its velocity for every frame it has been lost (+1: this one)."""
        dx, dy = (self.velocity[0] * (self.lost + 1), self.velocity[1] * (self.lost + 1))
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


class FaceTracker:
    """Greedy tracker: stable ids; a face lost briefly keeps its id (see the module docstring).

    Matching, per frame, against each track's predicted box (its last box moved on by its
    velocity): pairs (track, face) with IoU >= `min_iou`, best IoU first; then, for what is
    left, pairs whose box centres lie within `max_centre_shift` face sizes (a fast move that
    leaves no overlap; wider for a track lost for some frames), nearest first. Each track and
    each face is used at most once; unmatched faces get new ids (never reused).
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
        self._tracks: dict[int, _Track] = {}
        self._next_id = 0
        self.dropped: list[int] = []

    @property
    def active_ids(self) -> list[int]:
        return sorted(self._tracks)

    def _search_radius(self, track: _Track) -> float:
        return min(self.max_centre_shift + LOST_SEARCH_GROWTH * track.lost,
                   max(self.max_centre_shift, LOST_SEARCH_MAX))

    def update(self, faces: list) -> list[TrackedFace]:
        """Assign ids to this frame's faces (returned in input order)."""
        assigned: dict[int, int] = {}  # face index -> track id
        used_tracks: set[int] = set()
        predicted = {tid: tr.predicted() for tid, tr in self._tracks.items()}
        by_iou = sorted(
            (-box_iou(box, f.box), tid, i) for tid, box in predicted.items()
            for i, f in enumerate(faces)
        )
        by_centre = sorted(
            (box_centre_distance(box, f.box), tid, i) for tid, box in predicted.items()
            for i, f in enumerate(faces)
        )
        passes = (((-c, t, i) for c, t, i in by_iou if -c >= self.min_iou),
                  ((c, t, i) for c, t, i in by_centre
                   if c <= self._search_radius(self._tracks[t])))
        for candidates in passes:
            for _, tid, i in candidates:
                if tid in used_tracks or i in assigned:
                    continue
                assigned[i] = tid
                used_tracks.add(tid)
        self.dropped = []
        for tid in list(self._tracks):
            if tid in used_tracks:
                continue
            track = self._tracks[tid]
            track.lost += 1
            if track.lost > self.max_lost:
                del self._tracks[tid]
                self.dropped.append(tid)
        out = []
        for i, face in enumerate(faces):
            tid = assigned.get(i)
            if tid is None:
                tid = self._next_id
                self._next_id += 1
                self._tracks[tid] = _Track(tuple(face.box))
            else:
                self._follow(self._tracks[tid], tuple(face.box))
            out.append(TrackedFace(tid, face))
        return out

    @staticmethod
    def _follow(track: _Track, box: tuple[float, ...]) -> None:
        """Move `track` to `box`, updating its velocity from the centre displacement."""
        frames = track.lost + 1
        dx = ((box[0] + box[2]) - (track.box[0] + track.box[2])) / 2.0 / frames
        dy = ((box[1] + box[3]) - (track.box[1] + track.box[3])) / 2.0 / frames
        if track.seen == 1:
            track.velocity = (dx, dy)
        else:
            a = VELOCITY_SMOOTHING
            track.velocity = (a * dx + (1 - a) * track.velocity[0],
                              a * dy + (1 - a) * track.velocity[1])
        track.box, track.lost = box, 0
        track.seen += 1

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        self.dropped = sorted(self._tracks)
        self._tracks.clear()
