"""Expected errors, and the wrapper that turns them into one readable line and an exit code.

Library code raises `RtauError` subclasses (or `ValueError`/`OSError` with a clear message).
CLI commands are wrapped by `one_line_errors`, which prints `error: <message>` on stderr and
exits non-zero (1, or the error's own `exit_code`), never a traceback; `command_app` builds a
typer app whose every command is wrapped so (`rtau` and `python -m train`). Ctrl-C exits 130 after
the command's own `finally` blocks have flushed and closed its outputs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

F = TypeVar("F", bound=Callable)

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class RtauError(RuntimeError):
    """An expected failure with a message meant for the user (one sentence)."""

    exit_code = EXIT_FAILURE


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name if it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def one_line_errors(func: F) -> F:
    """Wrap a typer command: expected errors -> `error: ...` on stderr + typer.Exit(code)."""
    import typer

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except RtauError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except (ValueError, OSError, RuntimeError, KeyError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise typer.Exit(getattr(exc, "exit_code", EXIT_FAILURE)) from None

    return wrapper  # type: ignore[return-value]


def command_app(name: str, help_text: str, commands: Mapping[str, Callable]):
    """A typer app named `name` with each of `commands` ({name: function}) wrapped by
    `one_line_errors`; no shell completion, no rich tracebacks."""
    import typer

    app = typer.Typer(name=name, help=help_text, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    for command, func in commands.items():
        app.command(command)(one_line_errors(func))
    return app
