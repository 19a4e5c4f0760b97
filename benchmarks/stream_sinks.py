"""What the live streams cost the pipeline: time of one `write` call for OSC and WebSocket.

Run: `PYTHONPATH=. python benchmarks/stream_sinks.py [--frames 1500] [--out benchmarks/results]`

Each case writes `--frames` frames (13 AUs per face, paced at 30 fps divided by --speedup) to
one sink and times every `write` on the caller's thread (the pipeline's thread in `rtau live`):
OSC to a python-osc server; WebSocket with 0, 1 and 8 reading clients (websockets), and with
one reading plus one stalled client (handshake done, never reads). Reports p50/p99 in
microseconds and what the consumers got (sent/dropped counters). Writes
`stream_sinks-<machine>.json` and `.md` under --out and prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_io import write_results  # noqa: E402
from rtau.aus import DISFA_AUS  # noqa: E402
from rtau.streams import OscSink, WebSocketSink  # noqa: E402
from tests.rtau.streams.clients import (  # noqa: E402
    OscRecorder,
    StalledClient,
    WsRecorder,
    estimate,
    wait_until,
)

AUS = (*DISFA_AUS, "AU45")
FRAME_PERIOD_S = 1 / 30


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu{cores}-{platform.machine()}"


def timed_writes(sink, frames: int, faces: int, period: float) -> np.ndarray:
    """Microseconds per write (float64[frames])."""
    rng = np.random.default_rng(0)
    out = np.empty(frames)
    for i in range(frames):
        batch = [estimate(k, rng.uniform(0, 5, len(AUS)), AUS) for k in range(faces)]
        t0 = time.perf_counter()
        sink.write(i, i * 1000 * FRAME_PERIOD_S, batch)
        out[i] = (time.perf_counter() - t0) * 1e6
        time.sleep(period)
    return out


def ws_case(frames: int, faces: int, period: float, readers: int, stalled: int) -> dict:
    with WebSocketSink(AUS, port=0) as sink:
        clients = [WsRecorder(sink.ws_url) for _ in range(readers)]
        blocked = [StalledClient(sink.port) for _ in range(stalled)]
        assert wait_until(lambda: sink.clients == readers + stalled)
        us = timed_writes(sink, frames, faces, period)
    for client in clients:
        client.join()
    for client in blocked:
        client.close()
    c = sink.counters()
    received = [len(client.messages) for client in clients]
    return {"us": us, "sent": c.sent, "dropped": c.dropped,
            "readers_got_all": all(n == frames for n in received) if readers else None}


def osc_case(frames: int, faces: int, period: float) -> dict:
    with OscRecorder() as osc, OscSink(AUS, "127.0.0.1", osc.port) as sink:
        us = timed_writes(sink, frames, faces, period)
    c = sink.counters()
    return {"us": us, "sent": c.sent, "dropped": c.dropped, "readers_got_all": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--speedup", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    period = FRAME_PERIOD_S / args.speedup
    cases = {
        "osc, 1 face": lambda: osc_case(args.frames, 1, period),
        "osc, 6 faces": lambda: osc_case(args.frames, 6, period),
        "ws, 0 clients, 1 face": lambda: ws_case(args.frames, 1, period, 0, 0),
        "ws, 1 client, 1 face": lambda: ws_case(args.frames, 1, period, 1, 0),
        "ws, 8 clients, 1 face": lambda: ws_case(args.frames, 1, period, 8, 0),
        "ws, 1 client + 1 stalled, 6 faces": lambda: ws_case(args.frames, 6, period, 1, 1),
    }
    rows = []
    for name, run in cases.items():
        result = run()
        us = result.pop("us")
        rows.append({"case": name, "p50_us": float(np.percentile(us, 50)),
                     "p99_us": float(np.percentile(us, 99)), "frames": args.frames, **result})
    where = machine()
    payload = {"machine": where, "python": platform.python_version(),
               "pace_fps": 1 / period, "rows": rows}
    lines = [f"# Stream sink write cost ({where}, {args.frames} frames at {1 / period:.0f} fps)",
             "", "| case | write p50 | write p99 | sent | dropped | readers got every frame |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        got = "-" if r["readers_got_all"] is None else ("yes" if r["readers_got_all"] else "no")
        lines.append(f"| {r['case']} | {r['p50_us']:.0f} us | {r['p99_us']:.0f} us | "
                     f"{r['sent']} | {r['dropped']} | {got} |")
    text = "\n".join(lines) + "\n"
    write_results(args.out, f"stream_sinks-{where}", payload, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
