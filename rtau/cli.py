"""The `rtau` command line: live, process, build-engine, bench, doctor.

Run `rtau --help`. Each command lives in its own module under `rtau.commands`; this file only
registers them. Every command is wrapped by `rtau.errors.one_line_errors`, so expected failures
print one line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import typer

from rtau.commands import bench, build_engine, doctor, live, process
from rtau.errors import one_line_errors

app = typer.Typer(
    name="rtau",
    help="Real-time facial action unit intensity estimation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("live")(one_line_errors(live.live))
app.command("process")(one_line_errors(process.process))
app.command("build-engine")(one_line_errors(build_engine.build_engine))
app.command("bench")(one_line_errors(bench.bench))
app.command("doctor")(one_line_errors(doctor.doctor))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
