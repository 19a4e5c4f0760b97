"""`rtau live`: AU intensities of the faces in front of a camera, a video file or a stream.

Run: `rtau live` (camera 0, OpenCV window), `rtau live --demo` (a real face clip fetched once
into the user cache), `rtau live --source clip.mp4 --headless --csv out.csv`,
`rtau live --camera 1 --max-faces 2 --calibrate 3 --stats`.

The window shows face boxes with ids, per-AU bars with names and values, FPS and per-stage
latency (`q`/Esc quits); `--headless` shows the same as a live table in the terminal.
`--csv`/`--jsonl` write one row per face per frame, flushed every frame: Ctrl-C loses nothing.
`--osc HOST:PORT` sends OSC datagrams and `--ws HOST:PORT` serves a WebSocket stream and a
browser viewer (`rtau.streams`), fed with the same estimates as the files.
Cameras and streams are read by a thread that hands over only the newest frame; a video file is
read in order with no frame skipped (in the window at the file's own frame rate, `--no-pace`
to run as fast as possible). A camera that disappears is retried with back-off and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from rtau.commands import options
from rtau.errors import RtauError

DEMO_CLIP = "single_face.mp4"
LIVE_READ_TIMEOUT_S = 1.0
"""How long one wait for a camera frame lasts before the loop checks the source again."""


@dataclass(frozen=True)
class LiveConfig:
    """Options of `rtau live`; each field is the flag of the same name."""

    source: str | None = None
    camera: int = 0
    demo: bool = False
    model: Path | None = None
    backend: str = "auto"
    headless: bool = False
    csv: Path | None = None
    jsonl: Path | None = None
    max_frames: int = 0
    max_faces: int = 1
    calibrate: float = 0.0
    stats: bool = False
    pace: bool | None = None
    """File sources: play at the file's frame rate. None: yes in the window, no headless."""
    osc: str | None = None
    ws: str | None = None
    ws_token: str | None = None
    ws_wait: int = 0
    """Wait for this many WebSocket clients before reading the source."""
    verbose: bool = False


@dataclass
class LiveSummary:
    frames: int = 0
    frames_with_face: int = 0
    face_ids: set[int] | None = None
    seconds: float = 0.0
    dropped: int = 0
    streams: list = field(default_factory=list)
    """rtau.streams.StreamCounters of the --osc / --ws streams, read when they closed."""


def _source_spec(cfg: LiveConfig) -> str:
    if cfg.demo and cfg.source is not None:
        raise RtauError("give either --demo or --source, not both")
    if cfg.demo:
        from rtau.media import test_media

        return str(test_media(DEMO_CLIP))
    if cfg.source is not None:
        return cfg.source
    return str(cfg.camera)


def _frames(source, stop):
    """Frames of a file (in order, decoded ahead) or of a live source (newest only)."""
    if not source.live:
        yield from source.frames(stop=stop)
        return
    while not stop.is_set():
        frame = source.read(timeout=LIVE_READ_TIMEOUT_S)
        if frame is not None:
            yield frame
        elif source.gave_up:
            return


def _check_streams(cfg: LiveConfig) -> None:
    """Stream flags are checked before the model loads (one line, at once)."""
    from rtau.streams.address import check_server_address, parse_address

    if cfg.ws_wait and cfg.ws is None:
        raise RtauError("--ws-wait needs --ws HOST:PORT")
    if cfg.osc is not None:
        parse_address(cfg.osc, "--osc")
    if cfg.ws is not None:
        check_server_address(parse_address(cfg.ws, "--ws", allow_any_port=True), cfg.ws_token)


def _announce_streams(sinks, cfg: LiveConfig, err) -> None:
    """Say where the streams go; with --ws-wait, block until that many clients are connected."""
    from rtau.streams import OscSink, WebSocketSink

    for sink in sinks.sinks:
        if isinstance(sink, OscSink):
            err.print(f"OSC to {sink.address.netloc()}", highlight=False)
        elif isinstance(sink, WebSocketSink):
            need = " (add ?token=TOKEN)" if sink.token else ""
            err.print(f"viewer at {sink.url}{need}, stream at {sink.ws_url}", highlight=False)
            if cfg.ws_wait:
                err.print(f"waiting for {cfg.ws_wait} WebSocket client(s)", highlight=False)
                sink.wait_for_clients(cfg.ws_wait)


def run_live(cfg: LiveConfig) -> LiveSummary:
    """The live loop; returns what it saw. Outputs are flushed per frame and closed on exit."""
    import threading
    import time

    from rich.console import Console

    from rtau.capture import open_source
    from rtau.display import TerminalDisplay, WindowDisplay, display_available
    from rtau.estimator import AUEstimator
    from rtau.native_logs import show_native_logs
    from rtau.render import stats_table
    from rtau.sinks import open_sinks
    from rtau.streams.report import counters_line, counters_table
    from rtau.timing import RateMeter, StageStats

    show_native_logs(cfg.verbose)
    err = Console(stderr=True, soft_wrap=True)
    spec = _source_spec(cfg)
    _check_streams(cfg)
    if not cfg.headless and not display_available():
        raise RtauError("no display for the window (DISPLAY is not set); use --headless")
    status = {"text": ""}

    def on_status(message: str) -> None:
        status["text"] = message
        err.print(f"[yellow]{message}[/]", highlight=False)

    # Cheap checks first: a missing file or camera fails before the model loads.
    source = open_source(spec, on_status=on_status)
    estimator = sinks = display = None
    summary = LiveSummary(face_ids=set())
    stats = StageStats()
    stop = threading.Event()
    t_start = time.perf_counter()
    try:
        estimator = AUEstimator(model=cfg.model, backend=cfg.backend, max_faces=cfg.max_faces,
                                calibrate_seconds=cfg.calibrate)
        err.print(f"{estimator.backend_info}; source {source.name}", highlight=False)
        au_names = estimator.au_names
        sinks = open_sinks(au_names, cfg.csv, cfg.jsonl, osc=cfg.osc, ws=cfg.ws,
                           ws_token=cfg.ws_token)
        _announce_streams(sinks, cfg, err)
        display = TerminalDisplay() if cfg.headless else WindowDisplay()
        pace = (not cfg.headless) if cfg.pace is None else cfg.pace
        pace = pace and not source.live
        meter = RateMeter()
        wait_t0 = time.perf_counter()
        play_t0 = None
        for frame in _frames(source, stop):
            t0 = time.perf_counter()
            if pace:
                play_t0 = play_t0 if play_t0 is not None else t0 - frame.timestamp_ms / 1000.0
                ahead = play_t0 + frame.timestamp_ms / 1000.0 - t0
                if ahead > 0:
                    time.sleep(ahead)
                t0 = time.perf_counter()
            capture_ms = (t0 - wait_t0) * 1000.0
            estimates = estimator.update(frame.image, frame.timestamp_ms)
            t1 = time.perf_counter()
            timings = dict(estimator.last_timings)
            timings["capture"] = capture_ms
            if source.live:
                timings["latency"] = (t1 - frame.captured_at) * 1000.0
            sinks.write(frame.index, frame.timestamp_ms, estimates)
            sinks.end_tracks(estimator.tracker.dropped)
            t2 = time.perf_counter()
            timings["output"] = (t2 - t1) * 1000.0
            fps = meter.tick()
            keep_going = display.show(frame.image, estimates, au_names, fps, stats.last,
                                      status["text"], frame.index)
            timings["render"] = (time.perf_counter() - t2) * 1000.0
            timings["total"] = (time.perf_counter() - t0) * 1000.0 + capture_ms
            stats.add_all(timings)
            summary.frames += 1
            if estimates:
                summary.frames_with_face += 1
                summary.face_ids.update(e.id for e in estimates)
            if not keep_going or (cfg.max_frames and summary.frames >= cfg.max_frames):
                break
            wait_t0 = time.perf_counter()
    finally:
        stop.set()
        summary.seconds = time.perf_counter() - t_start
        for closable in (display, sinks, estimator, source):
            if closable is not None:
                closable.close()
        summary.dropped = getattr(source, "dropped", 0)
        summary.streams = sinks.stream_counters() if sinks is not None else []
    fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    err.print(
        f"{summary.frames} frames ({summary.frames_with_face} with a face, "
        f"{len(summary.face_ids)} face id(s)), {fps:.1f} fps"
        + (f", {summary.dropped} stale camera frames dropped" if summary.dropped else "")
        + "".join(f"; wrote {p}" for p in (cfg.csv, cfg.jsonl) if p is not None)
        + counters_line(summary.streams),
        highlight=False,
    )
    if summary.frames and not summary.frames_with_face:
        err.print(f"[yellow]warning:[/] no face found in {source.name}", highlight=False)
    short = None if source.live else source.shortfall()
    if short is not None:
        err.print(f"[yellow]warning:[/] {short}", highlight=False)
    if cfg.stats:
        Console().print(stats_table(stats.summary()))
        if summary.streams:
            Console().print(counters_table(summary.streams))
    return summary


def live(
    source: Annotated[str | None, typer.Option(
        "--source", help="Video file, stream URL or camera index.")] = None,
    camera: Annotated[int, typer.Option(
        "--camera", min=0, help="Camera index (without --source).")] = 0,
    demo: Annotated[bool, typer.Option("--demo", help=f"Run on a real face clip ({DEMO_CLIP}).")
                    ] = False,
    model: options.ModelOption = None,
    backend: options.BackendOption = "auto",
    headless: Annotated[bool, typer.Option(
        "--headless", help="A live table in the terminal instead of a window.")] = False,
    csv: options.CsvOption = None,
    jsonl: options.JsonlOption = None,
    max_frames: Annotated[int, typer.Option(
        "--max-frames", min=0, help="Stop after N frames (0 = no limit).")] = 0,
    max_faces: options.MaxFacesOption = 1,
    calibrate: options.CalibrateOption = 0.0,
    stats: options.StatsOption = False,
    pace: Annotated[bool | None, typer.Option(
        "--pace/--no-pace", help="Play files at their frame rate (default: in the window).")
    ] = None,
    osc: Annotated[str | None, typer.Option(
        "--osc", metavar="HOST:PORT", help="Send OSC (UDP) to HOST:PORT: /rtau/au per face.")
    ] = None,
    ws: Annotated[str | None, typer.Option(
        "--ws", metavar="HOST:PORT",
        help="Serve ws://HOST:PORT/ws and a viewer at http://HOST:PORT/ (loopback by default).")
    ] = None,
    ws_token: Annotated[str | None, typer.Option(
        "--ws-token", envvar="RTAU_WS_TOKEN",
        help="Secret clients pass as ?token= (needed for a non-loopback --ws).")] = None,
    ws_wait: Annotated[int, typer.Option(
        "--ws-wait", min=0, help="Wait for N WebSocket clients before starting.")] = 0,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show MediaPipe / TFLite start-up log lines.")] = False,
) -> None:
    """Live AU intensities from a camera, video file or stream (window or terminal table)."""
    run_live(LiveConfig(source=source, camera=camera, demo=demo, model=model, backend=backend,
                        headless=headless, csv=csv, jsonl=jsonl, max_frames=max_frames,
                        max_faces=max_faces, calibrate=calibrate, stats=stats, pace=pace,
                        osc=osc, ws=ws, ws_token=ws_token, ws_wait=ws_wait,
                        verbose=verbose))
