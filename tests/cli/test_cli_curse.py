"""``gencli curse`` as a user runs it: table, JSON, CSV, figure, and every bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from gencli.cli.main import cli

SMALL = ["--samples", "200", "--train", "100", "--learn-max-dim", "2"]


def run(*args: str, env: dict[str, str] | None = None, catch: bool = False):
    return CliRunner().invoke(cli, ["curse", *args], env=env, catch_exceptions=catch)


def test_json_is_a_list_of_records_with_every_key_and_nothing_else_on_stdout() -> None:
    result = run("--dims", "1,2,10,1000", "--json", *SMALL)
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)  # the whole of stdout is the JSON
    assert [r["dim"] for r in records] == [1, 2, 10, 1000]
    for key in [
        "norm_mean_exact", "norm_mean_mc", "norm_std_exact", "norm_std_mc", "shell_90_exact",
        "mass_within_unit_ball_exact", "mass_within_unit_ball_mc",
        "log_density_gap_mode_vs_typical_exact", "ball_to_cube_volume_exact",
        "outer_shell_volume_fraction_exact", "distance_contrast_mc", "kde_samples_needed_exact",
        "kde_heldout_gap", "gmm_heldout_gap",
    ]:  # fmt: skip
        assert all(key in r for r in records), key
    one, two, ten, big = records
    assert two["norm_mean_exact"] == pytest.approx(math.sqrt(math.pi / 2), rel=1e-14)
    assert two["ball_to_cube_volume_exact"] == pytest.approx(math.pi / 4, rel=1e-14)
    assert ten["mass_within_unit_ball_exact"] == pytest.approx(stats.chi2.cdf(1, 10), rel=1e-12)
    assert one["kde_samples_needed_exact"] == 4 and two["kde_samples_needed_exact"] == 19
    lo, hi = big["shell_90_exact"]
    assert lo == pytest.approx(stats.chi.ppf(0.05, 1000)) and hi == pytest.approx(
        stats.chi.ppf(0.95, 1000)
    )
    # Too small or too large for a double: null in JSON, with the log10 beside it.
    assert big["mass_within_unit_ball_exact"] is None
    # P(chi2_d <= 1) = f(1) / (d/2) * (1 + 1/(d + 2) + ...), f the chi2 density
    assert big["log10_mass_within_unit_ball_exact"] == pytest.approx(
        (stats.chi2.logpdf(1, 1000) - math.log(500)) / math.log(10), abs=0.001
    )
    assert big["kde_samples_needed_exact"] is None
    assert big["log10_kde_samples_needed_exact"] > 308
    assert [r["kde_heldout_gap"] is None for r in records] == [False, False, True, True]


def test_json_is_strict() -> None:
    result = run("--dims", "1000", "--json", "--samples", "50", "--learn-max-dim", "0")
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


def test_csv_has_one_row_per_dimension_and_the_shell_in_two_columns() -> None:
    result = run("--dims", "1..10:3", "--csv", *SMALL)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(r["dim"]) for r in rows] == [1, 4, 7, 10]
    assert "shell_90_exact" not in rows[0]
    for r in rows:
        d = int(r["dim"])
        assert float(r["shell_90_lo_exact"]) == pytest.approx(stats.chi.ppf(0.05, d))
        assert float(r["shell_90_hi_exact"]) == pytest.approx(stats.chi.ppf(0.95, d))
    assert rows[0]["kde_heldout_gap"] != "" and rows[-1]["kde_heldout_gap"] == ""


def test_json_and_csv_together_is_a_usage_error() -> None:
    result = run("--dims", "1", "--json", "--csv", *SMALL)
    assert result.exit_code == 2
    assert "choose one" in result.stderr


def test_table_and_sentences_quote_this_runs_numbers() -> None:
    result = run("--dims", "1,10,100,1000", *SMALL, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "30.46–32.78" in out  # the d = 1000 row's shell
    assert "1.5e-1285" in out  # P(||x|| <= 1) at d = 1000: tiny, never 0.0
    assert "5.7e+1412" in out  # samples a KDE needs at d = 1000
    assert "between radius 30.5 and 32.8" in out
    assert "d/2 = 500 nats" in out
    assert "68% of the mass at d = 1" in out
    assert result.stderr == ""  # no progress bar off a terminal, no notes without --plot


@pytest.mark.parametrize(("columns", "one_table"), [("200", True), ("80", False)])
def test_the_table_fits_the_terminal(columns: str, one_table: bool) -> None:
    """Wide enough: one table. Narrower: two stacked tables, no number cut."""
    result = run("--dims", "1,1000", *SMALL, env={"COLUMNS": columns})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= int(columns)
    assert any("E‖x‖" in line and "ball /" in line for line in lines) == one_table
    assert "1.5e-1285 / 0" in result.stdout and "5.7e+1412" in result.stdout


@pytest.mark.parametrize("spec", ["abc", "10..1", "0", "1..10:0", "1.5", "", "1..200000"])
def test_bad_dims_is_a_usage_error_showing_the_accepted_forms(spec: str) -> None:
    result = run("--dims", spec, *SMALL)
    assert result.exit_code == 2
    assert "Invalid value for '--dims'" in result.stderr
    assert "A..B:S" in result.stderr and "A,B,C" in result.stderr


@pytest.mark.parametrize("option", ["--samples", "--train", "--seed", "--learn-max-dim"])
def test_bad_numbers_are_usage_errors(option: str) -> None:
    result = run("--dims", "1", option, "-1")
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr


def test_png_plot_opens_as_an_image(tmp_path: Path) -> None:
    from PIL import Image

    target = tmp_path / "curse.png"
    result = run("--dims", "1..100", "--plot", str(target), *SMALL)
    assert result.exit_code == 0, result.output
    with Image.open(target) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 0 and height > 0
    assert f"wrote {target}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curse.png"]


def test_svg_plot_is_svg_xml_with_six_panels(tmp_path: Path) -> None:
    target = tmp_path / "curse.SVG"
    result = run("--dims", "1,5,20", "--plot", str(target), "--quiet", *SMALL)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    root = ET.parse(target).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    groups = root.iter("{http://www.w3.org/2000/svg}g")
    axes = [g for g in groups if g.get("id", "").startswith("axes_")]
    assert len(axes) >= 6


@pytest.mark.parametrize("name", ["curse.pdf", "curse", "curse.png.txt"])
def test_unsupported_plot_extension_is_a_usage_error(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    result = run("--dims", "1", "--plot", str(target), *SMALL)
    assert result.exit_code == 2
    assert ".png, .svg" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plot_into_a_missing_folder_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "curse.png"
    result = run("--dims", "1", "--plot", str(target), *SMALL)
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failing_plot_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    target = tmp_path / "curse.png"
    target.write_bytes(b"old figure")

    def broken(self: Figure, handle: object, **kwargs: object) -> None:
        handle.write(b"half a PNG")  # type: ignore[attr-defined]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", broken)
    result = run("--dims", "1", "--plot", str(target), *SMALL)
    assert result.exit_code == 1
    assert "disk on fire" in result.stderr
    assert target.read_bytes() == b"old figure"
    assert [p.name for p in tmp_path.iterdir()] == ["curse.png"]


def test_progress_bar_goes_to_a_terminal_stderr_and_leaves_stdout_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from gencli.cli import curse as cli_curse

    screen = io.StringIO()
    monkeypatch.setattr(
        cli_curse, "stderr_console", lambda: Console(file=screen, force_terminal=True)
    )
    result = run("--dims", "1..100", "--json", *SMALL)
    assert result.exit_code == 0
    assert [r["dim"] for r in json.loads(result.stdout)] == [1, 2, 3, 6, 10, 18, 32, 56, 100]
    assert "curse d =" in screen.getvalue() and "9/9" in screen.getvalue()

    screen.seek(0)
    screen.truncate()
    assert run("--dims", "1,2", "--quiet", *SMALL).exit_code == 0
    assert screen.getvalue() == ""


def test_help_shows_the_examples_block() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "Examples:\n    gencli curse\n    gencli curse --dims 1,2,10,100,1000" in result.stdout


def test_a_real_pipe_carries_only_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gencli", "curse", "--dims", "1,3", "--json", *SMALL],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["dim"] for r in json.loads(proc.stdout)] == [1, 3]
    assert proc.stderr == ""
