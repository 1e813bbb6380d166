"""The console entry point (``gencli`` and ``python -m gencli``).

Stop signals are routed to cleanup code before anything heavy is imported, so that Ctrl-C,
SIGTERM or SIGHUP at any moment, even while the libraries load, ends with one line and the
signal's exit status, never a traceback.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Install the stop-signal handlers, then run the command line."""
    from gencli.errors import STOP_SIGNALS, Stopped, install_stop_handlers

    install_stop_handlers()
    try:
        from gencli.cli.main import main as run

        run()
    except Stopped as stop:  # before the command line's own boundary, or after it
        import signal

        from gencli.io import atomic

        atomic.remove_live_temporaries()  # one the unwinding passed by (see its docstring)
        name = signal.Signals(stop.signum).name
        verb = {"SIGTERM": "terminated", "SIGHUP": "hung up"}.get(name, "interrupted")
        if atomic.written:
            done = f"after writing {', '.join(atomic.written)}; nothing else was written"
        else:
            done = "no output file was written"
        if sys.stderr is not None:
            sys.stderr.write(f"Error: {verb}; {done}\n")
            sys.stderr.flush()
        os._exit(STOP_SIGNALS.get(name, 130))


if __name__ == "__main__":
    main()
