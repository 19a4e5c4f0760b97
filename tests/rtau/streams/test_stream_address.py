"""HOST:PORT parsing for --osc/--ws: loopback default, IPv6 brackets, clear one-line errors."""

from __future__ import annotations

import pytest

from rtau.errors import RtauError
from rtau.streams import StreamAddress, parse_address
from rtau.streams.address import host_is_loopback


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9000", StreamAddress("127.0.0.1", 9000)),
    ("9000", StreamAddress("127.0.0.1", 9000)),
    (":9000", StreamAddress("127.0.0.1", 9000)),
    ("0.0.0.0:8765", StreamAddress("0.0.0.0", 8765)),
    ("[::1]:8765", StreamAddress("::1", 8765)),
    ("studio-pc.local:57120", StreamAddress("studio-pc.local", 57120)),
])
def test_parse(text, expected):
    assert parse_address(text, "--ws") == expected


@pytest.mark.parametrize("text, words", [
    ("localhost:http", "numeric port"), ("127.0.0.1:70000", "between 1 and 65535"),
    ("::1:8765", "[ADDRESS]:PORT"), ("[::1]8765", "[ADDRESS]:PORT"), ("host:0", "between 1"),
])
def test_bad_addresses_name_the_flag(text, words):
    with pytest.raises(RtauError, match="--osc") as info:
        parse_address(text, "--osc")
    assert words in str(info.value)


def test_port_zero_only_where_a_server_picks():
    assert parse_address("127.0.0.1:0", "--ws", allow_any_port=True).port == 0


def test_loopback():
    assert all(map(host_is_loopback, ("127.0.0.1", "127.8.9.1", "::1", "localhost")))
    assert not any(map(host_is_loopback, ("0.0.0.0", "192.168.1.4", "::", "example.org")))
    assert StreamAddress("::1", 80).netloc() == "[::1]:80"
