"""`Closing`: the `with` protocol of every rtau object that holds a resource (a camera, a
MediaPipe graph, an engine, a socket, an open file) and frees it in `close()`.

    class Camera(Closing):
        def close(self) -> None: ...   # idempotent: `with` and an explicit close() may both run

    with Camera() as cam: ...          # closed on the way out, on an error or Ctrl-C too
"""

from __future__ import annotations

from typing import Self


class Closing:
    """Mixin: `with obj:` returns obj and calls obj.close() on the way out."""

    def close(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define close()")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
