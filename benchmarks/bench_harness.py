"""Measuring commands side by side and rendering what was measured.

Every command runs as a real subprocess inside a fresh ``peak_rss.py`` wrapper, so start-up,
imports and file I/O count for both sides, and the peak memory of each run is its own.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

MET, NOT_MET, INFO = "MET", "NOT MET", "info"
NOT_AVAILABLE, FAILED = "not available", "FAILED"


def gencli(*args: object) -> list[str]:
    """The command line for ``gencli ARGS`` as a user's shell would start it."""
    return [PYTHON, "-m", "gencli", *map(str, args)]


def baseline(script: str, *args: object) -> list[str]:
    """The command line for one of the plain scikit-learn scripts in ``baselines/``."""
    return [PYTHON, str(HERE / "baselines" / script), *map(str, args)]


@dataclass
class Run:
    """One run of one command: wall time, exit code, peak RSS and what it printed."""

    seconds: float
    returncode: int
    peak_mb: float
    stdout: str
    stderr: str

    @property
    def unavailable(self) -> bool:
        """True when gencli refused a flag it does not have (yet)."""
        return self.returncode == 2 and "No such option" in self.stderr

    def problem(self) -> str:
        """A one-line reason this run did not succeed."""
        if self.unavailable:
            option = re.search(r"No such option:? '?([-\w]+)", self.stderr)
            return f"{NOT_AVAILABLE}: gencli has no {option[1] if option else 'such option'}"
        last = self.stderr.strip().splitlines()[-1:] or ["(no message)"]
        message = last[0].removeprefix("Error: ").strip()
        return f"exit {self.returncode}: {message[:97] + '...' if len(message) > 100 else message}"


def measure(command: list[str]) -> Run:
    """Run ``command`` once in its own wrapper process and collect its numbers."""
    with tempfile.TemporaryDirectory(prefix="gencli-bench-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        wrapper = [PYTHON, str(HERE / "peak_rss.py"), str(out), str(err), "--", *command]
        done = subprocess.run(wrapper, capture_output=True, text=True, check=True)
        record = json.loads(done.stdout)
        return Run(
            seconds=record["seconds"],
            returncode=record["returncode"],
            peak_mb=record["peak_rss_kb"] / 1024,
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )


@dataclass
class Side:
    """Every run of one command; a failed first run stops the command from running again."""

    label: str
    command: list[str]
    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(run.returncode == 0 for run in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def peak_mb(self) -> float:
        return max(run.peak_mb for run in self.runs)

    @property
    def last(self) -> Run:
        return self.runs[-1]

    def json(self) -> Any:
        """The last output of a command that prints JSON on stdout."""
        return json.loads(self.last.stdout)

    def status(self) -> str:
        """FAILED / not available with the reason, or '' when every run succeeded."""
        return "" if self.ok else self.last.problem()


def side_by_side(commands: dict[str, list[str]], repeat: int) -> dict[str, Side]:
    """Run each command ``repeat`` times, interleaved and rotating who goes first.

    Interleaving spreads slow drifts of the machine (caches, frequency, neighbours) over
    every side instead of charging them to whichever ran last.
    """
    sides = {label: Side(label, command) for label, command in commands.items()}
    labels = list(sides)
    for round_ in range(repeat):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            side = sides[label]
            if side.runs and not side.ok:
                continue
            side.runs.append(measure(side.command))
    return sides


def warm(*paths: Path) -> None:
    """Read files once so that neither side pays for the first, cold read from disk."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def count_lines(path: Path) -> int:
    """Lines in a (possibly large) text file, read in blocks."""
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            lines += block.count(b"\n")
    return lines


# ----------------------------------------------------------------------------- reporting


@dataclass
class Check:
    """One target of the issue and whether this run met it."""

    path: str
    gencli: str
    baseline: str
    ratio: str
    target: str
    accuracy: str
    peak: str
    status: str


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def side_rows(sides: dict[str, Side]) -> list[str]:
    """One line per command: median time, every run's time, peak RSS, or why it failed."""
    rows = []
    width = max(len(label) for label in sides)
    for label, side in sides.items():
        if not side.ok:
            rows.append(f"  {label:<{width}}  {side.status()}")
            continue
        runs = " ".join(f"{run.seconds:.3f}" for run in side.runs)
        rows.append(
            f"  {label:<{width}}  median {seconds(side.seconds):>9}  "
            f"peak {side.peak_mb:7.1f} MB   runs: {runs}"
        )
    return rows


SUMMARY_COLUMNS = ("path", "gencli", "baseline", "ratio", "target", "accuracy", "peak", "status")


def summary_table(checks: list[Check]) -> str:
    """The one table that answers 'did gencli meet the issue's targets on this machine?'.

    Rendered as a Markdown table, so it can be pasted into docs/benchmarks.md as it is.
    """
    rows = [SUMMARY_COLUMNS] + [
        tuple(getattr(check, name) for name in SUMMARY_COLUMNS) for check in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(rows[0]), rule, *map(line, rows[1:])])


# ----------------------------------------------------------------------------- one run of the suite


@dataclass(frozen=True)
class Sizes:
    """Rows per data set: the issue's sizes, or smaller ones for a quick look."""

    gmm: int
    kde: int
    auto: int
    stream: int


FULL = Sizes(gmm=200_000, kde=20_000, auto=20_000, stream=10_000_000)
QUICK = Sizes(gmm=50_000, kde=5_000, auto=5_000, stream=1_000_000)


class Bench:
    """Shared state of one run of the suite: sizes, folders, and everything measured."""

    def __init__(self, sizes: Sizes, repeat: int, data: Path, work: Path) -> None:
        self.sizes, self.repeat, self.data, self.work = sizes, repeat, data, work
        self.quick = sizes == QUICK
        self.checks: list[Check] = []
        self.record: dict[str, dict[str, object]] = {}

    def sides(self, path: str, commands: dict[str, list[str]], repeat: int) -> dict[str, Side]:
        """Measure ``commands`` side by side, print their rows and keep them for --json."""
        sides = side_by_side(commands, repeat)
        print("\n".join(side_rows(sides)), flush=True)
        self.record.setdefault(path, {}).update(
            {
                label: {
                    "command": side.command,
                    "seconds": [run.seconds for run in side.runs],
                    "peak_mb": [run.peak_mb for run in side.runs],
                    "error": side.status() or None,
                }
                for label, side in sides.items()
            }
        )
        return sides

    def check(self, check: Check) -> None:
        """Record one target's outcome and print it under the path's rows."""
        self.checks.append(check)
        print(f"  -> {check.status}: {check.ratio}  target {check.target}  [{check.accuracy}]")


def broken(path: str, side: Side, target: str) -> Check:
    """The check for a target whose gencli command (or baseline) could not run."""
    status = NOT_AVAILABLE if side.last.unavailable else FAILED
    return Check(path, "—", "—", "—", target, side.status(), "—", status)


def millions(rows: int) -> str:
    return f"{rows / 10**6:g}M"


def ratio_text(value: float, label: str = "×") -> str:
    return f"{value:.2f}{label}" if value < 100 else f"{value:.0f}{label}"
