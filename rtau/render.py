"""Drawing the estimates: an OpenCV overlay for the window and rich tables for the terminal.

Run: `image = draw_overlay(frame_bgr, estimates, au_names, fps=30.0, timings={...})`,
`table = au_table(estimates, au_names, fps=..., timings=...)`, `stats_table(stats.summary())`.
All functions are pure: they read the estimates and return a new image or a `rich.table.Table`;
none of them shows anything. `bar_layout` tells where a face's AU bars go (frame pixels), so
tests can check the drawn pixels.

Layout: a green box around each face with its id; beside the box (right if it fits, else
left), one row per AU: name, a bar whose filled length is intensity / 5, the value. A status
line at the bottom shows FPS and per-stage latency in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from rich.table import Table
from rich.text import Text

from rtau.aus import CATALOGUE, INTENSITY_MAX
from rtau.records import EstimateLike

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
ROW_HEIGHT = 14
NAME_WIDTH = 40
BAR_WIDTH = 90
VALUE_WIDTH = 34
PANEL_MARGIN = 6
PANEL_WIDTH = NAME_WIDTH + BAR_WIDTH + VALUE_WIDTH
BAR_INSET = 2
"""Vertical gap between bars of consecutive rows, in pixels."""
STATUS_HEIGHT = 18

BOX_COLOUR = (80, 220, 80)
TEXT_COLOUR = (255, 255, 255)
BAR_TRACK_COLOUR = (60, 60, 60)
BAR_FILL_COLOUR = (0, 170, 255)
CALIBRATING_COLOUR = (200, 200, 0)
PANEL_ALPHA = 0.55
STAGES_SHOWN = ("capture", "landmarks", "align", "step", "render", "latency")
TABLE_BAR_CELLS = 20


@dataclass(frozen=True)
class BarsLayout:
    """Where one face's AU panel is drawn, frame pixels (x0, y0, x1, y1, exclusive ends).

    panel: the whole panel (names, bars, values); tracks[i]: the full-length bar of AU i.
    """

    panel: tuple[int, int, int, int]
    tracks: tuple[tuple[int, int, int, int], ...]


def bar_layout(box: Sequence[float], num_aus: int, frame_size: tuple[int, int]) -> BarsLayout:
    """Panel beside `box` (right if it fits, else left), clamped into the frame (width, height)."""
    width, height = frame_size
    x0, y0, x1, _ = (int(round(v)) for v in box)
    panel_h = num_aus * ROW_HEIGHT
    px = x1 + PANEL_MARGIN
    if px + PANEL_WIDTH > width:
        px = x0 - PANEL_MARGIN - PANEL_WIDTH
    px = int(np.clip(px, 0, max(width - PANEL_WIDTH, 0)))
    py = int(np.clip(y0, 0, max(height - panel_h - STATUS_HEIGHT, 0)))
    tracks = []
    for i in range(num_aus):
        ty = py + i * ROW_HEIGHT
        tracks.append((px + NAME_WIDTH, ty + BAR_INSET, px + NAME_WIDTH + BAR_WIDTH,
                       ty + ROW_HEIGHT - BAR_INSET))
    return BarsLayout(panel=(px, py, px + PANEL_WIDTH, py + panel_h), tracks=tuple(tracks))


def _shade(image: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    """Darken a rectangle in place so text stays readable on any background."""
    x0, y0, x1, y1 = rect
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 > x0 and y1 > y0:
        roi = image[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * (1.0 - PANEL_ALPHA)).astype(np.uint8)


def status_line(fps: float | None, timings: Mapping[str, float] | None,
                extra: str = "") -> str:
    parts = []
    if fps is not None:
        parts.append(f"{fps:5.1f} fps")
    for stage in STAGES_SHOWN:
        if timings and stage in timings:
            parts.append(f"{stage} {timings[stage]:.1f}")
    text = " | ".join(parts)
    if timings:
        text += " ms"
    return f"{text}  {extra}".strip()


def draw_overlay(image: np.ndarray, faces: Sequence[EstimateLike], au_names: Sequence[str],
                 fps: float | None = None, timings: Mapping[str, float] | None = None,
                 status: str = "") -> np.ndarray:
    """A copy of BGR uint8[H, W, 3] `image` with boxes, AU bars and the status line drawn."""
    out = image.copy()
    height, width = out.shape[:2]
    for face in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, 2)
        calibrating = getattr(face, "calibration", "") == "calibrating"
        label = f"id {face.id}" + (" calibrating" if calibrating else "")
        cv2.putText(out, label, (x0, max(y0 - 5, 10)), FONT, FONT_SCALE,
                    CALIBRATING_COLOUR if calibrating else BOX_COLOUR, 1, cv2.LINE_AA)
        layout = bar_layout(face.box, len(au_names), (width, height))
        _shade(out, layout.panel)
        for name, value, track in zip(au_names, face.aus, layout.tracks, strict=True):
            tx0, ty0, tx1, ty1 = track
            cv2.putText(out, name, (tx0 - NAME_WIDTH + 2, ty1 - 1), FONT, FONT_SCALE,
                        TEXT_COLOUR, 1, cv2.LINE_AA)
            cv2.rectangle(out, (tx0, ty0), (tx1 - 1, ty1 - 1), BAR_TRACK_COLOUR, -1)
            fraction = float(np.clip(value / INTENSITY_MAX, 0.0, 1.0))
            fill = int(round(fraction * (tx1 - tx0)))
            if fill > 0:
                cv2.rectangle(out, (tx0, ty0), (tx0 + fill - 1, ty1 - 1), BAR_FILL_COLOUR, -1)
            cv2.putText(out, f"{float(value):.2f}", (tx1 + 3, ty1 - 1), FONT, FONT_SCALE,
                        TEXT_COLOUR, 1, cv2.LINE_AA)
    line = status_line(fps, timings, status)
    if line:
        _shade(out, (0, height - STATUS_HEIGHT, width, height))
        cv2.putText(out, line, (4, height - 5), FONT, FONT_SCALE, TEXT_COLOUR, 1, cv2.LINE_AA)
    return out


def _bar_text(value: float) -> Text:
    fraction = float(np.clip(value / INTENSITY_MAX, 0.0, 1.0))
    filled = int(round(fraction * TABLE_BAR_CELLS))
    text = Text("█" * filled, style="bright_cyan")
    text.append("·" * (TABLE_BAR_CELLS - filled), style="grey37")
    text.append(f" {value:4.2f}")
    return text


def au_table(faces: Sequence[EstimateLike], au_names: Sequence[str], fps: float | None = None,
             timings: Mapping[str, float] | None = None, title: str = "rtau",
             frame_index: int | None = None) -> Table:
    """One row per AU, one column per face (bar + value); FPS and latencies in the caption."""
    heading = title
    if frame_index is not None:
        heading += f"  frame {frame_index}"
    table = Table(title=heading, caption=status_line(fps, timings) or None,
                  caption_justify="left")
    table.add_column("AU", style="bold")
    table.add_column("action")
    for face in faces:
        mark = " (calibrating)" if getattr(face, "calibration", "") == "calibrating" else ""
        table.add_column(f"face {face.id}{mark}", no_wrap=True)
    for i, name in enumerate(au_names):
        au = CATALOGUE.get(name)
        cells = [_bar_text(float(face.aus[i])) for face in faces]
        table.add_row(name, au.facs_name if au else "", *cells)
    if not faces:
        table.add_row("", Text("no face", style="yellow"))
    return table


def stats_table(summary: Mapping[str, tuple[float, float, int]],
                title: str = "per-stage latency (ms)") -> Table:
    """`StageStats.summary()` as a table: stage, p50, p99, samples."""
    table = Table(title=title)
    table.add_column("stage")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("samples", justify="right")
    for stage, (p50, p99, n) in summary.items():
        table.add_row(stage, f"{p50:.2f}", f"{p99:.2f}", str(n))
    return table
