"""Run one command; print its wall time, exit code and peak resident memory as JSON.

Usage: python peak_rss.py STDOUT_FILE STDERR_FILE -- COMMAND [ARG ...]

``ru_maxrss`` of RUSAGE_CHILDREN is the maximum over every child a process has ever waited
for, so a runner that measures many commands cannot tell them apart. This wrapper waits for
exactly one child with ``os.wait4``, whose rusage belongs to that child alone (the largest of
it and any descendants it waited for), and is started fresh for every measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    """Run the command after ``--`` with its output sent to the two files."""
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out_path, err_path, command = argv[0], argv[1], argv[3:]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    # Linux reports ru_maxrss in KiB.
    record = {"seconds": seconds, "returncode": child.returncode, "peak_rss_kb": usage.ru_maxrss}
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
