"""Where `rtau live` shows its results: an OpenCV window or a rich live table in the terminal.

Run: `with WindowDisplay() as d: keep_going = d.show(frame, estimates, au_names, fps, timings)`.
Both displays draw with the pure functions of `rtau.render`. The window closes on `q`, Esc or
its close button (`show` then returns False). The terminal table is redrawn at most
`TABLE_REFRESH_HZ` times a second, so the terminal never slows the pipeline down.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

from rtau.closing import Closing
from rtau.errors import RtauError
from rtau.render import au_table, draw_overlay

WINDOW_TITLE = "rtau"
QUIT_KEYS = (ord("q"), ord("Q"), 27)
TABLE_REFRESH_HZ = 8.0


def display_available() -> bool:
    """False on Linux/BSD without an X11 or Wayland display (Qt would abort the process)."""
    if sys.platform.startswith(("linux", "freebsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                    or os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "vnc"))
    return True


class WindowDisplay(Closing):
    """An OpenCV window showing each frame with the overlay, shown 1:1 (no scaling)."""

    def __init__(self, title: str = WINDOW_TITLE) -> None:
        if not display_available():
            raise RtauError("no display for the window (DISPLAY is not set); use --headless")
        import cv2

        self._cv2 = cv2
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        self._shown = False

    def show(self, image: np.ndarray, faces: Sequence, au_names: Sequence[str],
             fps: float | None, timings: Mapping[str, float], status: str = "",
             frame_index: int | None = None) -> bool:
        """Draw and show one frame; False once the user asked to quit."""
        cv2 = self._cv2
        cv2.imshow(self.title, draw_overlay(image, faces, au_names, fps, timings, status))
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return False
        self._shown = True
        return True

    def close(self) -> None:
        if self._cv2 is not None:
            self._cv2.destroyAllWindows()
            self._cv2.waitKey(1)
            self._cv2 = None



class TerminalDisplay(Closing):
    """A rich Live table (one row per AU, one column per face) on stdout."""

    def __init__(self, title: str = "rtau live") -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = title
        self._live = Live(console=Console(), auto_refresh=False, transient=False)
        self._live.start()
        self._last = 0.0
        self._pending = None

    def show(self, image: np.ndarray, faces: Sequence, au_names: Sequence[str],
             fps: float | None, timings: Mapping[str, float], status: str = "",
             frame_index: int | None = None) -> bool:
        now = time.monotonic()
        table_args = (faces, au_names, fps, timings, f"{self.title} {status}".strip(),
                      frame_index)
        if now - self._last >= 1.0 / TABLE_REFRESH_HZ:
            self._live.update(au_table(*table_args), refresh=True)
            self._last, self._pending = now, None
        else:
            self._pending = table_args
        return True

    def close(self) -> None:
        if self._live is not None:
            if self._pending is not None:
                self._live.update(au_table(*self._pending), refresh=True)
            self._live.stop()
            self._live = None

