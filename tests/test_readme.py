"""The README stays true: its commands print what it shows, and CI runs its test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
VARIABLE = (
    re.compile(r"^time\s+[\d.]+ s$"),
    re.compile(r'^\s*"seconds": [\d.e-]+,?$'),
    re.compile(r'^\s*"(gencli|sklearn|numpy|python)": "[^"]*",?$'),  # versions
    re.compile(r"^dask: embedded cluster, \d+ workers?(, dashboard http://\S+)?$"),  # cores, port
)


def _examples() -> list[tuple[str, list[str]]]:
    """Every `$ command` in the README's code blocks with the output shown under it."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```\n(.*?)^```", README, flags=re.S | re.M):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            shown = [line.rstrip() for line in output.splitlines() if line.strip()]
            examples.append((command, shown))
    return examples


NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:e[-+]?\d+)?")


def _normal(lines: list[str]) -> list[str]:
    return ["<varies>" if any(p.match(line) for p in VARIABLE) else line for line in lines]


def _same_number(shown: re.Match[str], printed: re.Match[str]) -> bool:
    """Numbers agree to within one unit of the last digit shown (or 1e-12 relative): the
    last digits of a fit move with the BLAS and the library versions, not with gencli."""
    if shown.group(0) == printed.group(0):
        return True
    a, b = float(shown.group(0)), float(printed.group(0))
    unit = 10.0 ** -len(shown.group(1) or "") if "e" not in shown.group(0) else 0.0
    return abs(a - b) <= 1.5 * unit + 1e-12 * max(abs(a), abs(b))


def _same_line(shown: str, printed: str) -> bool:
    if NUMBER.sub("#", shown) != NUMBER.sub("#", printed):
        return False
    pairs = zip(NUMBER.finditer(shown), NUMBER.finditer(printed), strict=True)
    return all(_same_number(a, b) for a, b in pairs)


def _assert_same(printed: list[str], shown: list[str], command: str) -> None:
    printed, shown = _normal(printed), _normal(shown)
    assert len(printed) == len(shown), (command, printed, shown)
    for got, want in zip(printed, shown, strict=True):
        assert _same_line(want, got), (command, want, got)


def test_ci_runs_the_readme_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("## ", 1)[0]
    commands = re.findall(r"^```\n(.+?)\n```", quick_start, flags=re.M)
    assert len(commands) == 2, "the quick start is exactly two commands"
    assert "sample_data/" in commands[0] and "pytest" in commands[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    test_command = commands[1].split("&& ", 2)[-1]  # after creating and entering the venv
    assert test_command in ci_lines


def test_readme_examples_print_what_the_readme_shows(tmp_path: Path) -> None:
    shutil.copytree(REPO / "sample_data", tmp_path / "sample_data")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "100"
    examples = _examples()
    assert len(examples) >= 10
    for command, shown in examples:
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, timeout=300
        )
        printed = (result.stdout + result.stderr).decode().splitlines()
        printed = [line.rstrip() for line in printed if line.strip()]
        if "|" in command:  # stdout and stderr interleave in any order
            _assert_same(sorted(printed), sorted(shown), command)
        else:
            _assert_same(printed, shown, command)


@pytest.mark.parametrize("command", ["fit", "score", "sample", "curse", "inspect", "evaluate"])
def test_readme_tours_every_command(command: str) -> None:
    assert f"### `gencli {command}" in README
