"""``gencli inspect`` and ``gencli evaluate`` as a user runs them.

The commands run inside a group with gencli's own error boundary (``GencliGroup``), the
one ``gencli.cli.main`` uses, so errors are the one-line ``Error: ...`` a user sees.

Exit codes of ``inspect``: 0 for a sound file; 1 for an unsound or unreadable one, with one
``Error:`` line on stderr and nothing on stdout, or with ``--json`` the whole report (with
``"sound": false``) on stdout.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

import gencli
from gencli.cli.boundary import GencliGroup
from gencli.cli.inspect_evaluate import evaluate, inspect
from gencli.io.data import read_table

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "sample_data" / "iris.csv"


@click.group(cls=GencliGroup)
def group() -> None:
    """The two commands under gencli's error boundary."""


group.add_command(inspect)
group.add_command(evaluate)


def run(*args: str) -> Result:
    return CliRunner().invoke(group, list(args))


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def fitted_iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[gencli.DensityModel, Path]:
    folder = tmp_path_factory.mktemp("iris")
    shutil.copy(IRIS, folder / "iris.csv")
    model = gencli.fit(read_table(folder / "iris.csv"), "gmm", components=3)
    model.save(folder / "iris.pkl")
    return model, folder


@pytest.fixture()
def iris_model(fitted_iris) -> gencli.DensityModel:
    """iris.csv and a 3-component mixture fitted to it, iris.pkl, in the test's folder."""
    model, folder = fitted_iris
    for name in ("iris.csv", "iris.pkl"):
        shutil.copy(folder / name, name)
    return model


# ----------------------------------------------------------------------------- inspect


def test_inspect_a_sound_file_prints_a_summary_and_exits_0(iris_model) -> None:
    result = run("inspect", "iris.pkl")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "verdict    sound" in out
    assert "Gaussian mixture, 3 components, full covariance" in out
    assert "sepal_length, sepal_width, petal_length, petal_width" in out
    assert iris_model.metadata["data_sha256"] in out
    means = np.asarray(iris_model.params["means"]) * iris_model.scale + iris_model.shift
    assert out.count("component ") == 3
    assert f"{means[0, 2]:.5g}" in out


def test_inspect_json_is_the_report(iris_model) -> None:
    result = run("inspect", "iris.pkl", "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["sound"] is True and info["family"] == "gmm"
    means = np.asarray(iris_model.params["means"]) * iris_model.scale + iris_model.shift
    np.testing.assert_allclose(info["parameters"]["means"], means)


def test_inspect_kde(tmp_path) -> None:
    X = np.random.default_rng(0).normal([0, 50], [1, 10], size=(200, 2))
    model = gencli.fit(X, "kde", kernel="gaussian", bandwidth="scott")
    model.save("k.pkl")
    result = run("inspect", "k.pkl")
    assert result.exit_code == 0, result.output
    assert "kernel density, gaussian kernel" in result.stdout
    h = model.params["bandwidth"]
    assert f"{h * X[:, 1].std():.5g}" in result.stdout
    assert "matched by position" in result.stdout


def newer_file(source: str) -> None:
    with open(source, "rb") as handle:
        plain = pickle.load(handle)
    plain["format_version"] = 7
    Path("new.pkl").write_bytes(pickle.dumps(plain, protocol=4))


def test_inspect_a_newer_file_is_one_error_line_and_exit_1(iris_model) -> None:
    newer_file("iris.pkl")
    line = error_line(run("inspect", "new.pkl"))
    assert "new.pkl: written by a newer gencli (format 7" in line and "upgrade" in line


def test_inspect_a_newer_file_with_json_prints_the_verdict_and_exits_1(iris_model) -> None:
    newer_file("iris.pkl")
    result = run("inspect", "new.pkl", "--json")
    assert result.exit_code == 1
    info = json.loads(result.stdout)
    assert info["sound"] is False and "newer gencli" in info["problems"][0]
    assert info["columns"] == iris_model.columns


@pytest.mark.parametrize("kind", ["random bytes", "csv"])
def test_inspect_junk(kind: str) -> None:
    if kind == "csv":
        shutil.copy(IRIS, "junk.pkl")
    else:
        Path("junk.pkl").write_bytes(np.random.default_rng(1).bytes(1000))
    assert "junk.pkl: not a gencli model file" in error_line(run("inspect", "junk.pkl"))
    result = run("inspect", "junk.pkl", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["sound"] is False


def test_inspect_a_missing_file() -> None:
    assert "nope.pkl: no such file" in error_line(run("inspect", "nope.pkl"))


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_prints_the_metrics_and_warns_about_training_rows(iris_model) -> None:
    result = run("evaluate", "iris.pkl", "iris.csv")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for needle in ("column", "KS", "correlation", "energy", "classifier", "accuracy"):
        assert needle in out
    for column in iris_model.columns:
        assert column in out
    assert "warning: iris.csv holds the very rows the model was trained on" in result.stderr
    assert "warning" not in out  # people-talk on stderr only


def heldout_csv(model: gencli.DensityModel, name: str = "heldout.csv") -> np.ndarray:
    rows = model.sample(120, seed=42)
    np.savetxt(name, rows, delimiter=",", header=",".join(model.columns), comments="")
    return rows


def test_evaluate_json_on_held_out_rows(iris_model) -> None:
    heldout_csv(iris_model)
    result = run("evaluate", "iris.pkl", "heldout.csv", "--json", "--seed", "3")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 120 and report["seed"] == 3
    assert report["training_rows_warning"] is False and "warning" not in result.stderr
    assert [c["column"] for c in report["per_column"]] == iris_model.columns
    assert {"correlation", "energy", "classifier", "mean_log_likelihood"} <= set(report)
    assert report["classifier"]["accuracy"] < 0.5 + 4 * report["classifier"]["standard_error"]


def test_evaluate_matches_columns_by_name_in_any_order(iris_model) -> None:
    rows = heldout_csv(iris_model)
    reordered = rows[:, ::-1]
    header = ",".join(["extra", *iris_model.columns[::-1]])
    extra = np.column_stack([np.zeros(len(rows)), reordered])
    np.savetxt("reordered.csv", extra, delimiter=",", header=header, comments="")
    one = json.loads(run("evaluate", "iris.pkl", "heldout.csv", "--json").stdout)
    result = run("evaluate", "iris.pkl", "reordered.csv", "--json")
    assert "ignoring columns not in the model: extra" in result.stderr
    two = json.loads(result.stdout)
    assert one["per_column"] == two["per_column"] and one["classifier"] == two["classifier"]


def test_evaluate_matches_unnamed_data_by_position(iris_model) -> None:
    rows = heldout_csv(iris_model)
    np.save("rows.npy", rows)
    result = run("evaluate", "iris.pkl", "rows.npy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["matched_by"] == "position"


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


@pytest.mark.parametrize("name", ["evaluation.html", "evaluation.md", "evaluation.json"])
def test_evaluate_writes_a_report(iris_model, name: str) -> None:
    heldout_csv(iris_model)
    result = run("evaluate", "iris.pkl", "heldout.csv", "--report", name, "--permutations", "50")
    assert result.exit_code == 0, result.output
    assert f"wrote {name}" in result.stderr and "wrote" not in result.stdout
    text = Path(name).read_text()
    if name.endswith(".json"):
        report = json.loads(text)
        assert report["report"] == "gencli-evaluation-report"
        assert report["energy"]["permutations"] == 50
    elif name.endswith(".md"):
        assert "## Per column: Kolmogorov–Smirnov" in text
        assert Path("evaluation.fig1.png").read_bytes().startswith(b"\x89PNG")
    else:
        images = Images()
        images.feed(text)
        assert images.sources and all(
            s.startswith("data:image/png;base64,") for s in images.sources
        )
        assert "classifier" in text.lower()


def test_evaluate_refuses_a_bad_report_extension_before_any_work(iris_model) -> None:
    line = error_line(run("evaluate", "iris.pkl", "iris.csv", "--report", "out.txt"))
    assert "out.txt" in line and ".json" in line and ".html" in line
    assert not Path("out.txt").exists()


def test_evaluate_with_a_missing_column(iris_model) -> None:
    Path("few.csv").write_text("sepal_length,sepal_width\n1,2\n3,4\n5,6\n")
    line = error_line(run("evaluate", "iris.pkl", "few.csv"))
    assert "no column 'petal_length'" in line


def test_evaluate_with_a_bad_model_file() -> None:
    shutil.copy(IRIS, "iris.csv")
    line = error_line(run("evaluate", "iris.csv", "iris.csv"))
    assert "not a gencli model file" in line


def test_evaluate_quiet_prints_nothing(iris_model) -> None:
    result = run("evaluate", "iris.pkl", "iris.csv", "-q", "--permutations", "0")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [inspect, evaluate])
def test_help_has_a_summary_examples_and_help_for_every_option(command) -> None:
    text = CliRunner().invoke(command, ["-h"]).output
    assert "Examples:" in text and "\n    gencli " in text
    assert command.help and command.help.splitlines()[0].endswith(".")
    for option in command.params:
        if isinstance(option, click.Option) and not option.hidden:
            assert option.help, f"{command.name} {option.opts[0]} has no help text"


def test_the_command_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, gencli.cli.inspect_evaluate; "
        "print([m for m in ('numpy', 'scipy', 'sklearn', 'matplotlib', 'pandas') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
