"""The one error boundary: every outcome of a run is data, one line, or usage, with its exit
status. Library errors become ``Error: ...`` lines (exit 1), bad flags click usage errors
(exit 2), stop signals 128 + the signal, a reader that went away 141; no traceback unless
``--debug``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

import click

from gencli.errors import STOP_SIGNALS, GencliError, Stopped
from gencli.io.console import one_line, say

EXIT_SIGINT = STOP_SIGNALS["SIGINT"]


class Interrupted(click.ClickException):
    """The run was stopped by a signal; the message says what had been written."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        setattr(self, "exit_code", exit_code)  # noqa: B010 - click's is a class attribute


class QuietExit(Exception):
    """End the process with this status and no message (a reader closed the pipe)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def _interrupted(signum: int | None) -> Interrupted:
    """The truthful one-line report of a stop: which outputs were finished before it."""
    from gencli.io import atomic

    name = signal.Signals(signum).name if signum is not None else "SIGINT"
    verb = {"SIGTERM": "terminated", "SIGHUP": "hung up"}.get(name, "interrupted")
    if atomic.written:
        done = f"after writing {', '.join(atomic.written)}; nothing else was written"
    else:
        done = "no output file was written"
    if atomic.touched:
        done += f" (part of the output went to {', '.join(atomic.touched)})"
    return Interrupted(one_line(f"{verb}; {done}"), STOP_SIGNALS.get(name, EXIT_SIGINT))


def translate(exc: BaseException) -> BaseException:
    """The one-line error a user sees for any exception a command raised."""
    from gencli import errors

    if isinstance(exc, (click.ClickException, click.exceptions.Exit, click.Abort, QuietExit)):
        return exc
    if isinstance(exc, KeyboardInterrupt) or errors.pending_signal is not None:
        # While a stop signal unwinds, whatever it broke on the way (an import cut short,
        # a worker thread) is the signal, not a new error.
        signum = exc.signum if isinstance(exc, Stopped) else errors.pending_signal
        return _interrupted(signum)
    if isinstance(exc, BrokenPipeError):
        return QuietExit(EXIT_BROKEN_PIPE)
    error = _one_line_error(exc)
    from gencli.io import atomic

    if not isinstance(error, click.ClickException):
        return error
    notes = []
    if atomic.written:
        notes.append(f"{', '.join(atomic.written)} had been written before this")
    if atomic.touched:
        notes.append(f"what went to {', '.join(atomic.touched)} is incomplete")
    return click.ClickException(f"{error.message} ({'; '.join(notes)})") if notes else error


_OUT_OF_MEMORY = (
    "ran out of memory; use fewer rows or --columns, a smaller model, or a machine with more memory"
)


# What a library says when the address space (ulimit -v) is too small to load or start it.
_MAPPING_FAILURES = (
    "failed to map segment",
    "cannot allocate memory",
    "failed to launch worker thread",
    "can't start new thread",
    "out of memory",
)


def _one_line_error(exc: BaseException) -> BaseException:
    """The one-line error for an exception that is neither a signal nor a closed pipe."""
    if isinstance(exc, GencliError):
        return click.ClickException(one_line(str(exc)))
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ArrowMemoryError":
        return click.ClickException(_OUT_OF_MEMORY)
    if isinstance(exc, (ImportError, OSError, RuntimeError)) or "Arrow" in type(exc).__name__:
        text = str(exc).lower()
        if any(words in text for words in _MAPPING_FAILURES):
            return click.ClickException(
                f"ran out of memory (or address space, ulimit -v) while starting: {one_line(exc)}"
                "; raise the limit or free memory"
            )
    if isinstance(exc, RecursionError):
        return click.ClickException("the input is nested too deeply to process; check it")
    if isinstance(exc, OSError):
        from gencli.io.atomic import reason

        where = f"{exc.filename}: " if exc.filename is not None else ""
        return click.ClickException(one_line(f"{where}{reason(exc)}; check the path and retry"))
    return click.ClickException(
        one_line(f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and report it")
    )


class GencliGroup(click.Group):
    """The one error boundary: every error is one line, tracebacks need --debug."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Bare ``gencli`` shows the usage on stderr and exits 2, as a usage error does."""
        if not args:
            if sys.stderr is not None:
                sys.stderr.write(ctx.get_help() + "\n")
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from gencli.io import atomic

        atomic.written.clear()  # what this invocation writes (a test may run several)
        atomic.touched.clear()
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            translated = translate(exc)
            if translated is exc:
                raise
            if ctx.meta.get("gencli.debug") and not isinstance(translated, QuietExit):
                raise
            raise translated from None

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Like click's, but every error is one line on stderr (click prints three for a
        usage error, falls back to stdout when stderr is closed, and turns a stop signal or
        a closed pipe outside a command into exit 1)."""
        from gencli.audience import command_line

        with command_line():  # messages name flags, repairs are printed (not warned)
            return self._main(*args, standalone_mode=standalone_mode, **kwargs)

    def _main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        from gencli import errors

        run: Any = super().main
        if not standalone_mode:
            return run(*args, standalone_mode=False, **kwargs)
        try:
            code = run(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            print_error(f"{exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # click's word for a KeyboardInterrupt outside a command
            if isinstance(exc.__cause__, KeyboardInterrupt) or errors.pending_signal is not None:
                signum = getattr(exc.__cause__, "signum", None) or errors.pending_signal
                stopped = _interrupted(signum)
                print_error(stopped.format_message())
                sys.exit(stopped.exit_code)
            print_error("aborted")
            sys.exit(1)
        except QuietExit as exc:
            sys.exit(exc.code)
        except SystemExit:
            if type(sys.stdout).__name__ == "_PacifyFlushWrapper":  # click met a closed pipe
                sys.exit(EXIT_BROKEN_PIPE)
            raise
        sys.exit(code if isinstance(code, int) else 0)


def print_error(message: str) -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"Error: {one_line(message)}\n")
            sys.stderr.flush()


def quiet_library_warnings() -> None:
    """numpy's floating-point RuntimeWarnings are noise here (every result is checked for
    non-finite values); any other library warning is one escaped ``warning:`` line."""
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)

    def show(message: Any, category: Any, *_args: Any, **_kwargs: Any) -> None:
        _print_warning(f"warning: {category.__name__}: {message}")

    warnings.showwarning = show


def _print_warning(line: str) -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            say(one_line(line))


def exit_now(code: Any) -> None:
    """End the process without unloading the interpreter.

    Tearing down scikit-learn, scipy and their thread pools takes 0.15-0.2 s after a fit
    has finished; by this point every output file has been written and renamed, and
    gencli registers no exit handlers, so nothing is lost. Output still buffered on stdout
    is flushed first: a reader that went away ends the process quietly with 141 (as
    coreutils do), any other failure (a full disk, a closed stdout) is one error line.
    """
    if code is None:
        code = 0
    if not isinstance(code, int):
        raise SystemExit(code)
    from gencli.io.atomic import remove_live_temporaries

    remove_live_temporaries()  # a temporary file a stop signal's unwinding passed by
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    except Exception as exc:  # a full disk or a closed stdout (see console._StdoutRaw)
        if code == 0:  # else the error that ended the run has been said already
            from gencli.io.atomic import reason

            why = (
                str(exc)
                if isinstance(exc, GencliError)
                else f"cannot write to stdout: {reason(exc) if isinstance(exc, OSError) else exc}"
            )
            print_error(f"{why}; what was printed is incomplete")
            code = 1
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.flush()
    os._exit(code)
