"""Messages in the reader's words: flags at the command line, parameters from Python; a
fit's repairs as Python warnings (once: never as well as the command line's lines); and the
command a model file records."""

from __future__ import annotations

import pickle
import shlex
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gencli
from gencli.audience import command_line, python_words
from gencli.cli.main import cli
from gencli.errors import DataError, FitError, GencliWarning

REPO = Path(__file__).resolve().parent.parent
IRIS = REPO / "sample_data" / "iris.csv"


@pytest.mark.parametrize(
    ("flags", "python"),
    [
        ("try a larger --reg-covar", "try a larger reg_covar"),
        ("use fewer --components or more rows", "use fewer components or more rows"),
        ("use --components 3 or fewer", "use components=3 or fewer"),
        ("--validation must be below 1", "validation must be below 1"),
        ("with --validation 0.2, 4 rows", "with validation=0.2, 4 rows"),
        ("use --covariance diag, fewer --columns, or --model kde",
         "use covariance='diag', fewer columns, or model='kde'"),
        ("--select heldout needs held-out rows", "select='heldout' needs held-out rows"),
        ("drop --no-standardize", "drop standardize=False"),
        ("or use --approx", "or use mode='approx'"),
        ("(or --dropna drops them)", "(or dropna=True drops them)"),
        ("--bounds auto: 'x' takes", "bounds='auto': 'x' takes"),
        ("--jobs 1", "jobs=1"),
        ("leave them out with --columns a,b_2", "leave them out with columns='a,b_2'"),
        ("pass --format csv|npy", "pass format='csv'|'npy'"),
        # Not flags of gencli's, or not flags at all: left alone.
        ("then: pip install --upgrade gencli", "then: pip install --upgrade gencli"),
        ("no column '--x' in the file", "no column '--x' in the file"),
        ("--rows.csv: cannot read", "--rows.csv: cannot read"),
        ("a range a--b", "a range a--b"),
    ],
)  # fmt: skip
def test_flags_become_python_parameters(flags: str, python: str) -> None:
    assert python_words(flags) == python


def test_an_error_speaks_python_outside_the_command_line_and_flags_inside() -> None:
    error = FitError("try fewer --components or a larger --reg-covar")
    assert str(error) == "try fewer components or a larger reg_covar"
    with command_line():
        assert str(error) == "try fewer --components or a larger --reg-covar"
        seen: list[str] = []  # raised and shown on a worker thread of a command
        worker = threading.Thread(target=lambda: seen.append(str(error)))
        worker.start()
        worker.join()
        assert seen == ["try fewer --components or a larger --reg-covar"]
    # An error sent back from a Dask worker keeps its words and is shown in the reader's.
    assert str(pickle.loads(pickle.dumps(error))) == "try fewer components or a larger reg_covar"


def _shown_on_a_worker(error: Exception) -> str:
    return str(error)


def test_a_message_composed_on_a_dask_worker_keeps_the_flags_for_the_client() -> None:
    from distributed import Client, LocalCluster

    error = FitError("use fewer --components")
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        composed = client.submit(_shown_on_a_worker, error).result()
    assert composed == "use fewer --components"  # the client shows it in its reader's words
    assert str(FitError(composed)) == "use fewer components"


def test_library_errors_from_python_name_parameters(tmp_path: Path) -> None:
    iris = pd.read_csv(IRIS)
    with pytest.raises(FitError) as raised:
        gencli.fit(iris, model="gmm", components=500)
    assert str(raised.value).endswith("use fewer components or more rows")
    with pytest.raises(FitError, match=r"'c' is constant.*leave it out with columns$"):
        gencli.fit(iris.assign(c=1.0), model="gmm", components=1)
    with pytest.raises(FitError, match=r"^validation must be at least 0 and below 1"):
        gencli.fit(iris, validation=1.5)
    model = gencli.fit(iris, model="kde", validation=0)
    with pytest.raises(DataError) as scoring:
        model.score_samples(iris.iloc[:, :3])
    assert "--" not in str(scoring.value)


def test_the_same_errors_from_the_command_line_name_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.pkl"
    result = runner.invoke(cli, ["fit", str(IRIS), "--model", "gmm", "-k", "500", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("use fewer --components or more rows")
    frame = pd.read_csv(IRIS).assign(c=1.0)
    frame.to_csv(tmp_path / "c.csv", index=False)
    result = runner.invoke(cli, ["fit", str(tmp_path / "c.csv"), "-k", "1", "-o", str(out)])
    assert result.exit_code == 1 and result.stderr.strip().endswith("leave it out with --columns")
    assert not out.exists()


def _repaired_data() -> np.ndarray:
    """Whole numbers (a note: a density over them is unbounded) on which a 2-component
    mixture collapses and is refitted with a larger reg_covar (a repair)."""
    return np.random.default_rng(0).integers(0, 3, (50, 2)).astype(float)


def test_repairs_and_notes_are_python_warnings_pointing_at_the_caller() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = gencli.fit(_repaired_data(), model="gmm", components=2, validation=0)
    ours = [w for w in caught if issubclass(w.category, GencliWarning)]
    messages = [str(w.message) for w in ours]
    assert len(ours) == len(model.metadata["fixes"]) + len(model.metadata["warnings"]) >= 2
    assert any(m.startswith("fixed: ") and "reg_covar=" in m for m in messages)
    assert any("discrete='auto' models them" in m for m in messages)
    assert not any("--" in m for m in messages)
    assert {w.filename for w in ours} == {__file__}  # the line that called gencli.fit
    # The model file keeps the command line's words, as `gencli inspect` shows them.
    assert any("--discrete auto" in line for line in model.metadata["warnings"])


def test_the_command_line_prints_repairs_once_and_warns_nothing(tmp_path: Path) -> None:
    np.savetxt(tmp_path / "d.csv", _repaired_data(), delimiter=",", fmt="%g")
    args = ["fit", str(tmp_path / "d.csv"), "--model", "gmm", "-k", "2", "--validation", "0"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "m.pkl")])
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if issubclass(w.category, GencliWarning)]
    lines = result.stderr.splitlines()
    assert len([line for line in lines if line.startswith("fixed: ")]) == 1
    noted = [line for line in lines if "hold whole numbers" in line]
    assert len(noted) == 1 and "--discrete auto models them" in noted[0]


def test_a_model_records_the_python_call_or_the_exact_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    iris = pd.read_csv(IRIS)
    model = gencli.fit(iris, model="gmm", components=2, seed=3, on_candidate=print)
    assert model.metadata["command_line"] == (
        "gencli.fit(<DataFrame 150x4>, model='gmm', components=2, seed=3)"
    )
    assert gencli.fit(str(IRIS), model="kde", validation=0).metadata["command_line"] == (
        f"gencli.fit({str(IRIS)!r}, model='kde', validation=0)"
    )
    code = (
        "import gencli, numpy as np; "
        "m = gencli.fit(np.random.default_rng(0).normal(size=(40, 2)), model='kde'); "
        "print(m.metadata['command_line'])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "gencli.fit(<ndarray 40x2>, model='kde')"  # not '-c'
    out = tmp_path / "my model.pkl"
    args = ["fit", str(IRIS), "-k", "2", "--model", "gmm", "-o", str(out), "-q"]
    monkeypatch.setattr(sys, "argv", ["gencli", *args])  # as the shell hands them over
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert gencli.load(out).metadata["command_line"] == shlex.join(["gencli", *args])
