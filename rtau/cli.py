"""The `rtau` command line: live, process, build-engine, bench, doctor.

Run `rtau --help`. Each command lives in its own module under `rtau.commands`; this file only
registers them. Every command is wrapped by `rtau.errors.one_line_errors`, so expected failures
print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

from rtau.commands import bench, build_engine, doctor, live, process
from rtau.errors import command_app

app = command_app("rtau", "Real-time facial action unit intensity estimation.", {
    "live": live.live, "process": process.process, "build-engine": build_engine.build_engine,
    "bench": bench.bench, "doctor": doctor.doctor,
})


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
