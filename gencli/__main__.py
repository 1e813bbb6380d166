"""The console entry point (``gencli`` and ``python -m gencli``).

Stop signals are routed to cleanup code before anything heavy is imported, so that Ctrl-C,
SIGTERM or SIGHUP at any moment, even while the libraries load, ends with one line and the
signal's exit status, never a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Install the stop-signal handlers, then run the command line."""
    from gencli.errors import STOP_SIGNALS, Stopped, install_stop_handlers

    install_stop_handlers()
    try:
        from gencli.cli import main as run
    except Stopped as stop:  # while the command line itself was loading
        import os
        import signal

        name = signal.Signals(stop.signum).name
        if sys.stderr is not None:
            sys.stderr.write("Error: interrupted; no output file was written\n")
            sys.stderr.flush()
        os._exit(STOP_SIGNALS.get(name, 130))
    run()


if __name__ == "__main__":
    main()
