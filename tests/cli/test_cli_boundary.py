"""The one error boundary: every exception a command can raise becomes one escaped line with
the right exit status, and a stop signal wins over whatever it broke on its way out."""

from __future__ import annotations

import errno
import signal

import click
import pytest

from gencli import errors
from gencli.cli.boundary import EXIT_BROKEN_PIPE, Interrupted, QuietExit, translate
from gencli.errors import DataError, Stopped
from gencli.io import atomic
from gencli.io.console import one_line, printable


@pytest.fixture(autouse=True)
def _no_pending_signal():
    errors.pending_signal = None
    written, touched = list(atomic.written), list(atomic.touched)
    atomic.written.clear()
    atomic.touched.clear()
    yield
    errors.pending_signal = None
    atomic.written[:] = written
    atomic.touched[:] = touched


def message(exc: BaseException) -> str:
    translated = translate(exc)
    assert isinstance(translated, click.ClickException), translated
    text = translated.format_message()
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "exc, fragments",
    [
        (
            OSError(errno.ELOOP, "Too many levels of symbolic links", "loop.csv"),
            ["loop.csv: Too many levels of symbolic links"],
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "secret.csv"),
            ["secret.csv: Permission denied"],
        ),
        (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device"]),
        (MemoryError(), ["ran out of memory", "fewer rows"]),
        (RecursionError("maximum recursion depth exceeded"), ["nested too deeply"]),
        (DataError("x.csv: column 'a\nverdict' is bad"), ["column 'a verdict' is bad"]),
        (ValueError("odd"), ["unexpected ValueError: odd", "--debug"]),
        (
            ImportError("libgfortran.so.5: failed to map segment from shared object"),
            ["ran out of memory", "ulimit -v"],
        ),
        (RuntimeError("can't start new thread"), ["ran out of memory"]),
        (DataError("column 'e\x85nel' is bad"), ["column 'e\\x85nel' is bad"]),
    ],
    ids=[
        "loop",
        "permission",
        "nospace",
        "memory",
        "recursion",
        "gencli",
        "other",
        "mapping",
        "threads",
        "nel-kept",
    ],
)
def test_each_kind_of_failure_is_its_own_one_line_message(exc, fragments):
    text = message(exc)
    for fragment in fragments:
        assert fragment in text, text


def test_a_broken_pipe_ends_quietly_with_141():
    translated = translate(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert isinstance(translated, QuietExit) and translated.code == EXIT_BROKEN_PIPE == 141


@pytest.mark.parametrize(
    "signum, code, verb",
    [
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated"),
        (signal.SIGHUP, 129, "hung up"),
    ],
)
@pytest.mark.parametrize(
    "broken",
    [
        ImportError("cannot import name 'x' (most likely due to a circular import)"),
        RuntimeError("can't start new thread"),
        ValueError("I/O operation on closed file"),
    ],
    ids=["ImportError", "RuntimeError", "ValueError"],
)
def test_whatever_a_stop_signal_breaks_is_reported_as_the_signal(signum, code, verb, broken):
    errors.pending_signal = signum
    translated = translate(broken)
    assert isinstance(translated, Interrupted) and translated.exit_code == code
    assert translated.format_message() == f"{verb}; no output file was written"


def test_an_interrupt_names_what_was_finished_and_what_was_partly_written():
    atomic.written.append("model.pkl")
    atomic.touched.append("pipe.html")
    translated = translate(Stopped(signal.SIGINT))
    assert translated.format_message() == (
        "interrupted; after writing model.pkl; nothing else was written "
        "(part of the output went to pipe.html)"
    )


@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain name", "plain name"),
        ("a\nb", "a\\nb"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("right\u202eleft", "right\\u202eleft"),
        ("caf\u00e9 \u4e2d", "caf\u00e9 \u4e2d"),
        ("bad\udcffbyte", "bad\\udcffbyte"),
        ("\x9b31m", "\\x9b31m"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(text, shown):
    assert printable(text) == shown
    words = f"{text}  and\n more".split()  # whitespace, newlines included, becomes one space
    assert one_line(f"{text}  and\n more") == printable(" ".join(words))
    assert "\n" not in one_line(f"{text}  and\n more")


def test_an_error_names_the_outputs_written_before_it():
    atomic.written.append("model.pkl")
    text = message(DataError("r.fig1.png: cannot write: No space left on device"))
    assert text.endswith("(model.pkl had been written before this)")
