"""The exceptions gencli raises for problems a user can fix.

Only ``gencli.cli`` turns them into one-line ``Error: ...`` messages; the library
raises them with messages that say what was expected, what was found, where, and
what to do.
"""

import re

_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


class GencliError(Exception):
    """A problem the user can fix; its message is shown as one line."""

    def __init__(self, message: object = "") -> None:
        # Messages quote library errors that may run over lines: keep one line. Only ASCII
        # whitespace is folded; anything else in a quoted name is escaped when printed.
        super().__init__(_ASCII_SPACE.sub(" ", str(message)).strip())


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


def on_stop_signal(signum: int, _frame: object) -> None:
    """Signal handler: SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C so cleanup code runs.

    Only the first stop raises: a second one (Ctrl-C, then ``kill`` or a closing terminal)
    arriving while the first unwinds would otherwise break off the cleanup it is running
    (removing a temporary file) or the report of what was written.
    """
    global pending_signal
    if pending_signal is not None:
        return
    pending_signal = signum
    raise Stopped(signum)


def install_stop_handlers() -> None:
    """Route every stop signal this platform has through :func:`on_stop_signal`, except one
    the caller chose to ignore (``nohup`` ignores SIGHUP, a script's background job SIGINT)."""
    import signal

    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, on_stop_signal)
