"""The Python docs stay true: the API reference builds, and the tutorial runs as shown.

docs/python.md is a notebook in Markdown: its ``python`` blocks run in order in one
namespace, in a folder holding sample_data/, and the ``text`` block under a block is what
it prints (numbers to the last digit shown, as tests/test_readme.py reads the README).
Its ``console`` blocks are shell cells: each ``$ gencli ...`` runs, in the same order.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from gencli.cli.main import cli

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = REPO / "docs" / "python.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:e[-+]?\d+)?")


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """Each python or console block (its kind, its text) and the text block right under it
    (None when there is none)."""
    fences = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(text)]
    found = []
    for i, (kind, body, _start, end) in enumerate(fences):
        if kind not in ("python", "console"):
            continue
        following = fences[i + 1] if i + 1 < len(fences) else None
        shown = None
        if following and following[0] == "text" and not text[end : following[2]].strip():
            shown = following[1]
        found.append((kind, body, shown))
    return found


def run_shell_cell(body: str) -> None:
    """Each ``$ gencli ...`` line of a console block, in process (as the shell would)."""
    commands = [line[2:] for line in body.splitlines() if line.startswith("$ ")]
    assert commands and all(c.startswith("gencli ") for c in commands), body
    for command in commands:
        result = CliRunner().invoke(cli, shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}: {result.output}"


def same_line(shown: str, printed: str) -> bool:
    """Equal but for numbers, which agree to 1.5 units of the last digit shown."""
    if NUMBER.sub("#", shown) != NUMBER.sub("#", printed):
        return False
    for a, b in zip(NUMBER.finditer(shown), NUMBER.finditer(printed), strict=True):
        unit = 10.0 ** -len(a.group(1) or "") if "e" not in a.group(0) else 0.0
        x, y = float(a.group(0)), float(b.group(0))
        if a.group(0) != b.group(0) and abs(x - y) > 1.5 * unit + 1e-12 * max(abs(x), abs(y)):
            return False
    return True


def test_the_line_comparison_can_fail() -> None:
    assert same_line("gap 0.12 [1 2]", "gap 0.125 [1 2]")
    assert not same_line("gap 0.12", "gap 0.15")
    assert not same_line("True", "False")
    assert not same_line("[1 2]", "[1 2 3]")


def test_the_tutorial_runs_and_prints_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sample_data").symlink_to(REPO / "sample_data")
    monkeypatch.chdir(tmp_path)
    found = blocks(TUTORIAL.read_text())
    assert len(found) >= 8 and sum(shown is not None for *_, shown in found) >= 8
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for number, (kind, code, shown) in enumerate(found, 1):
        if kind == "console":
            run_shell_cell(code)
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a block that shows warnings records its own
            exec(compile(code, f"docs/python.md block {number}", "exec"), namespace)
        if shown is None:
            continue
        printed = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
        expected = [line.rstrip() for line in shown.splitlines() if line.strip()]
        assert len(printed) == len(expected), f"block {number} printed:\n{out.getvalue()}"
        for want, got in zip(expected, printed, strict=True):
            assert same_line(want, got), f"block {number}: shows\n{want}\nbut prints\n{got}"


def test_the_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    page = (site / "api" / "index.html").read_text()
    for name in ("GaussianMixtureDensity", "KernelDensity", "AutoDensity", "DensityModel"):
        assert name in page
    assert "standardized units" in page  # docstrings rendered, not only the headings
    assert ":class:" not in page and ":mod:" not in page  # Sphinx roles became code
    assert (site / "python" / "index.html").exists()


def test_the_readme_points_to_the_python_docs() -> None:
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    assert "docs/python.md" in section and "docs/api.md" in section
