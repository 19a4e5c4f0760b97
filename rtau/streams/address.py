"""`HOST:PORT` of a stream flag: parsing, the loopback default, and whether a token is needed.

Run: `parse_address("0.0.0.0:8765", "--ws")` -> StreamAddress("0.0.0.0", 8765). Accepted forms:
`HOST:PORT`, `[IPv6]:PORT`, `:PORT` and `PORT` (the last two mean 127.0.0.1). A malformed value
raises RtauError with one sentence naming the flag.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from rtau.errors import RtauError

LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost", "ip6-localhost")
MAX_PORT = 65535


@dataclass(frozen=True)
class StreamAddress:
    """A host (name or IP literal, no brackets) and a TCP/UDP port (0 = any free port)."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return host_is_loopback(self.host)

    def netloc(self, port: int | None = None) -> str:
        """`host:port` for a URL, IPv6 literals in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port if port is None else port}"


def host_is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; every other name or address counts as remote."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str, flag: str, allow_any_port: bool = False) -> StreamAddress:
    """`text` as a StreamAddress; `allow_any_port` accepts port 0 (a server picks a free one)."""
    value = text.strip()
    host = LOOPBACK_HOST
    port_text = value
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not value[end + 1:].startswith(":"):
            raise RtauError(f"{flag} {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        host, port_text = value[1:end], value[end + 2:]
    elif ":" in value:
        host, port_text = value.rsplit(":", 1)
        if ":" in host:
            raise RtauError(f"{flag} {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        host = host or LOOPBACK_HOST
    if not port_text.isdigit():
        raise RtauError(f"{flag} {text!r}: expected HOST:PORT with a numeric port")
    port = int(port_text)
    lowest = 0 if allow_any_port else 1
    if not lowest <= port <= MAX_PORT:
        raise RtauError(f"{flag} {text!r}: the port must be between {lowest} and {MAX_PORT}")
    return StreamAddress(host, port)


def check_server_address(address: StreamAddress, token: str | None, flag: str = "--ws") -> None:
    """A server on a non-loopback address must have a token (anyone on the network could read
    the faces' AUs otherwise)."""
    if not address.is_loopback and not token:
        raise RtauError(f"{flag} {address.netloc()} is not a loopback address: give "
                        "--ws-token TOKEN too (clients then pass ?token=TOKEN)")
