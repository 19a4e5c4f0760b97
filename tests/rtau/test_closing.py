"""`Closing`: `with` returns the object and closes it on the way out, on an error too; every
resource-holding class of rtau takes its `with` protocol from it."""

from __future__ import annotations

import pytest

from rtau.backends.base import Backend
from rtau.capture import VideoFileSource
from rtau.closing import Closing
from rtau.display import TerminalDisplay, WindowDisplay
from rtau.estimator import AUEstimator
from rtau.faces import FaceDetector
from rtau.sinks import SinkGroup
from rtau.streams.osc import OscSink
from rtau.streams.websocket import WebSocketSink


class _Counted(Closing):
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_with_returns_the_object_and_closes_it_once():
    with _Counted() as thing:
        assert isinstance(thing, _Counted) and thing.closed == 0
    assert thing.closed == 1


def test_an_error_in_the_block_still_closes_and_propagates():
    thing = _Counted()
    with pytest.raises(KeyboardInterrupt), thing:
        raise KeyboardInterrupt
    assert thing.closed == 1


def test_a_class_without_close_says_so():
    with pytest.raises(NotImplementedError, match="Bare must define close"):
        with type("Bare", (Closing,), {})():
            pass


@pytest.mark.parametrize("cls", [Backend, VideoFileSource, TerminalDisplay, WindowDisplay,
                                 AUEstimator, FaceDetector, SinkGroup, OscSink, WebSocketSink])
def test_resource_classes_close_through_closing(cls):
    assert issubclass(cls, Closing) and cls.close is not Closing.close
