"""OscSink against a real python-osc UDP server: names first, one /rtau/au per face per frame
with int, int, float and K floats, /rtau/lost when a track ends and when the stream closes."""

from __future__ import annotations

import numpy as np
import pytest

from rtau.aus import DISFA_AUS
from rtau.streams import OscSink
from tests.rtau.streams.clients import OscRecorder, estimate, wait_until

AUS = DISFA_AUS


def values(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 5, len(AUS)).astype(np.float32)


def test_every_message_with_its_types():
    frames = 40
    with OscRecorder() as osc:
        sink = OscSink(AUS, "127.0.0.1", osc.port)
        for i in range(frames):
            faces = [estimate(3, values(i), AUS)] + ([estimate(7, values(100 + i), AUS)]
                                                     if i < 20 else [])
            sink.write(i, i * 33.3, faces)
            if i == 30:
                sink.end_tracks([7, 99])  # 99 was never sent: no message for it
        sink.close()
        expected = frames + 20
        assert wait_until(lambda: len(osc.of("/rtau/au")) == expected and len(osc.of("/rtau/lost"))
                          == 2), f"{len(osc.of('/rtau/au'))} of {expected} /rtau/au messages"
        assert osc.messages[0] == ("/rtau/names", AUS)
        aus = osc.of("/rtau/au")
        for args in aus:
            assert len(args) == 3 + len(AUS)
            assert [type(a) for a in args] == [int, int, float] + [float] * len(AUS)
        by_key = {(a[0], a[1]): a for a in aus}
        assert len(by_key) == expected
        first = by_key[(3, 12)]
        assert first[2] == pytest.approx(12 * 33.3, abs=1e-3)
        np.testing.assert_allclose(first[3:], values(12), rtol=0, atol=1e-6)  # float32 exact
        assert osc.of("/rtau/lost") == [(7,), (3,)]  # 7 ended by the tracker, 3 by close
        counters = sink.counters()
        assert counters.kind == "osc" and counters.dropped == 0
        assert counters.sent == counters.messages == 1 + expected + 2


def test_names_repeat_and_nothing_for_a_frame_without_a_face():
    with OscRecorder() as osc:
        with OscSink(AUS, "127.0.0.1", osc.port, names_interval_s=0.0) as sink:
            sink.write(0, 0.0, [])
            sink.write(1, 33.3, [])
        assert wait_until(lambda: len(osc.messages) == 3)
        assert [a for a, _ in osc.messages] == ["/rtau/names"] * 3


def test_a_receiver_that_is_not_there_costs_nothing():
    with OscRecorder() as osc:
        port = osc.port
    sink = OscSink(AUS, "127.0.0.1", port)  # nothing listens there any more
    for i in range(50):
        sink.write(i, i * 33.3, [estimate(1, values(i), AUS)])
    sink.close()
    counters = sink.counters()
    assert counters.messages == 52 and counters.sent + counters.dropped == 52


def test_wrong_au_count_is_refused():
    with OscRecorder() as osc, OscSink(AUS, "127.0.0.1", osc.port) as sink, \
            pytest.raises(ValueError, match="AU values"):
        sink.write(0, 0.0, [estimate(1, [1.0, 2.0], AUS[:2])])
