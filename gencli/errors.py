"""The exceptions gencli raises for problems a user can fix.

Only ``gencli.cli.main`` turns them into one-line ``Error: ...`` messages; the library
raises them with messages that say what was expected, what was found, where, and
what to do.
"""

import os
import re
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from gencli.audience import at_command_line, for_reader

_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


class GencliError(Exception):
    """A problem the user can fix; its message is shown as one line.

    The message is written in the command line's words and shown in the reader's: flags
    at the command line, Python parameters from Python (see :mod:`gencli.audience`).
    """

    def __init__(self, message: object = "") -> None:
        # Messages quote library errors that may run over lines: keep one line. Only ASCII
        # whitespace is folded; anything else in a quoted name is escaped when printed.
        super().__init__(_ASCII_SPACE.sub(" ", str(message)).strip())

    def __str__(self) -> str:
        return for_reader(super().__str__())


class DataError(GencliError):
    """The input data cannot be read, or cannot be used as it is."""


class ModelFileError(GencliError):
    """A model file cannot be read, or is not one gencli can trust."""


class FitError(GencliError):
    """The density could not be fitted to the data with the options given."""


class OutputError(GencliError):
    """An output file cannot be written."""


class ResourceError(GencliError):
    """The work would need more memory (or other resources) than the machine allows."""


class GencliWarning(UserWarning):
    """A repair gencli made or a note on its result, for a Python caller (the command line
    prints the same lines on stderr instead)."""


def warn(lines: Iterable[str], prefix: str = "") -> None:
    """Each line as a :class:`GencliWarning` pointing at the caller's code, from Python only."""
    if at_command_line():
        return
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 2, sys._getframe(1)  # stacklevel 2: warn's caller
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    for line in lines:
        warnings.warn(f"{prefix}{for_reader(line)}", GencliWarning, stacklevel=level)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; raised where the process is so that cleanup code runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: Exit status for each stop signal: 128 + its number, as a shell reports a process it killed.
STOP_SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}

# The last stop signal, kept because an exception raised inside some callbacks (import
# locks, weakref finalizers) is printed and dropped; long loops check this between chunks.
pending_signal: int | None = None


def raise_if_stopped() -> None:
    """Raise :class:`Stopped` if a stop signal arrived but its exception was swallowed."""
    if pending_signal is not None:
        raise Stopped(pending_signal)


_raised = False  # whether the stop has been raised (it is raised once)
_RETRY_SECONDS = 0.02


def _in_import_system(frame: Any) -> bool:
    """Whether the interrupted code is inside Python's import machinery (or called from it).

    An exception raised there can escape between taking the global import lock and the
    ``try`` that releases it, or inside a module-lock callback that swallows it; a thread
    still importing then waits for that lock forever (seen: a fit that never stopped).
    """
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def on_stop_signal(signum: int, frame: Any) -> None:
    """Signal handler: SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C so cleanup code runs.

    The stop is raised once. A second signal (Ctrl-C, then ``kill`` or a closing terminal)
    arriving while the first unwinds would otherwise break off the cleanup it is running
    (removing a temporary file) or the report of what was written. Inside the import
    machinery the raise waits (retried every 20 ms) until the import is done.
    """
    global pending_signal, _raised
    if pending_signal is None:
        pending_signal = signum
    if _raised:
        return
    if _in_import_system(frame) and _retry_later():
        return
    _raised = True
    raise Stopped(pending_signal)


def _retry_later() -> bool:
    """Deliver the pending stop to the main thread again shortly; False where that cannot be
    done. The signal is sent to the main thread itself (a timer signal may land on any
    thread and leave the main one blocked in a write to a pipe)."""
    import signal
    import threading

    if not hasattr(signal, "pthread_kill") or pending_signal is None:
        return False
    main, signum = threading.main_thread().ident, pending_signal

    def resend() -> None:
        if main is not None and not _raised:
            signal.pthread_kill(main, signum)

    timer = threading.Timer(_RETRY_SECONDS, resend)
    timer.daemon = True
    timer.start()
    return True


def install_stop_handlers() -> None:
    """Route every stop signal this platform has through :func:`on_stop_signal`, except one
    the caller chose to ignore (``nohup`` ignores SIGHUP, a script's background job SIGINT)."""
    import signal

    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, on_stop_signal)
