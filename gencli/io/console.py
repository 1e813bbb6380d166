"""People-talk on the terminal: escaped, one line at a time, and honest about a closed stdout.

Text that came from a file (column names, model metadata, file names, cells quoted in an
error) can hold newlines, ANSI/OSC escape sequences or bidirectional overrides. Printed raw,
a newline forges a line of gencli's own output and an escape sequence drives the terminal.
Every line meant for people goes through :func:`printable` here; JSON is escaped by
``json.dumps`` already, and data (CSV, Parquet, ...) is written as data.
"""

from __future__ import annotations

import errno
import io
import os
import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Unicode categories that a terminal acts on or that change how a line reads: controls,
# format characters (bidirectional overrides, zero-width joiners), line and paragraph
# separators, and lone surrogates (undecodable bytes in file names).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` with every character a terminal could act on written as a visible escape."""
    value = str(text)
    if value.isascii() and value.isprintable():
        return value
    return "".join(
        char
        if (char.isascii() and char.isprintable())
        or (not char.isascii() and unicodedata.category(char) not in _ESCAPED_CATEGORIES)
        else _escape(char)
        for char in value
    )


def one_line(message: object) -> str:
    """A message as one escaped line: runs of ASCII whitespace (newlines included) become a
    space; any other character a terminal acts on is escaped."""
    return printable(re.sub(r"[ \t\n\r\f\v]+", " ", str(message)).strip())


def say(line: str, *, escape: bool = True) -> None:
    """One line for people on stderr (notes, warnings, 'wrote ...'; JSON with ``escape=False``)."""
    stream = sys.stderr
    if stream is None:
        return
    stream.write((printable(line) if escape else line) + "\n")
    stream.flush()


def out(line: str, *, escape: bool = True) -> None:
    """One line of a command's result on stdout (a summary; JSON with ``escape=False``)."""
    try:
        sys.stdout.write((printable(line) if escape else line) + "\n")
    except BrokenPipeError:
        raise
    except OSError as exc:
        from gencli.errors import OutputError

        raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from exc


class _StdoutRaw(io.RawIOBase):
    """Descriptor 1, whose write failures (a full disk, a closed descriptor) say "stdout".

    Everything printed goes through here (click, rich, the table writers), so a failure is
    one message naming stdout wherever it happens; a reader that went away stays a
    BrokenPipeError, which ends the run quietly.
    """

    name = "<stdout>"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(1)

    def fileno(self) -> int:
        return 1

    def write(self, data: Any) -> int:
        while True:
            try:
                return os.write(1, data)
            except BlockingIOError:  # stdout inherited O_NONBLOCK and the reader is slow
                import select

                select.select([], [1], [])
            except BrokenPipeError:
                raise
            except OSError as exc:
                from gencli.errors import OutputError

                raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from exc


def _guarded_stdout(raw: io.RawIOBase) -> io.TextIOWrapper:
    """A text stdout over ``raw`` that behaves like Python's own (encoding, line buffering)."""
    old = sys.stdout
    encoding = getattr(old, "encoding", None) or "utf-8"
    errors = getattr(old, "errors", None) or "strict"
    return io.TextIOWrapper(
        io.BufferedWriter(raw, buffer_size=1 << 16),
        encoding=encoding,
        errors=errors,
        line_buffering=raw.isatty(),
        write_through=False,
    )


class _ClosedRaw(io.RawIOBase):
    """A stream standing in for a standard stream that was closed when gencli started."""

    def __init__(self, name: str) -> None:
        self.name = name

    def writable(self) -> bool:
        return True

    def write(self, _data: Any) -> int:
        from gencli.errors import OutputError

        raise OutputError(
            f"cannot write to {self.name}: it was closed when gencli started (>&-); "
            "leave it open, or redirect it (> file)"
        ) from OSError(errno.EBADF, f"{self.name} is closed")


def guard_standard_streams() -> None:
    """Keep files off descriptors 0-2 when the caller closed them, and make writes to a closed
    stdout fail loudly instead of vanishing.

    A process started with ``>&-`` has no descriptor 1: Python sets ``sys.stdout`` to None
    (click then drops everything printed without a word) and the next file gencli opens
    would *become* descriptor 1. Each closed one is filled with the read end of an empty
    pipe, and a closed stdout or stderr is replaced by a stream whose writes raise EBADF,
    which the command line reports as one line.
    """
    closed = set()
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(name)
            read_end, write_end = os.pipe()
            if read_end != fd:  # another gap below took it; put it where it belongs
                os.dup2(read_end, fd)
                os.close(read_end)
            os.close(write_end)
    if "stdout" in closed:
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(_ClosedRaw("stdout")))
    elif sys.stdout is not None and getattr(sys.stdout, "fileno", None) is not None:
        with _suppress_odd_stdout():
            if sys.stdout.fileno() == 1:
                sys.stdout.flush()
                sys.stdout = _guarded_stdout(_StdoutRaw())
    if "stderr" in closed:
        sys.stderr = None


def _suppress_odd_stdout() -> Any:
    """A stdout replaced by the caller (a test runner's capture) is left as it is."""
    import contextlib

    return contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation)


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (where binary data must not go)."""
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except (ValueError, OSError):
        return False


def stderr_console() -> Any:
    """A rich console on stderr (rich honours NO_COLOR and knows whether it is a terminal);
    None when stderr was closed (rich would fall back to stdout, the data)."""
    if sys.stderr is None:
        return None
    from rich.console import Console

    return Console(file=sys.stderr)


def stdout_console() -> Any:
    """A rich console on stdout whose closed pipe ends the run as any closed pipe does (rich's
    own reaction is to exit with status 1)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    return _Console()


def progress_bar(total: int | None, label: str, quiet: bool) -> Any:
    """A rich progress bar on stderr when it is a terminal (and not quiet); else a no-op."""
    console = None if quiet else stderr_console()
    if console is None or not console.is_terminal:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    )
    return _Progress(progress, total)


class _NoProgress:
    def __enter__(self) -> Callable[[int], None]:
        return lambda rows: None

    def __exit__(self, *exc: object) -> None:
        return None


class _Progress:
    def __init__(self, progress: Any, total: int | None) -> None:
        self.progress = progress
        self.total = total

    def __enter__(self) -> Callable[[int], None]:
        self.progress.start()
        task = self.progress.add_task("rows", total=self.total)
        return lambda rows: self.progress.advance(task, rows)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
