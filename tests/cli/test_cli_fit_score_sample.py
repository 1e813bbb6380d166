"""The three core commands as a user runs them, through click's CliRunner."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli


def run(*args: str, input: bytes | str | None = None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_fit_writes_a_model_and_prints_a_summary(iris_csv: Path) -> None:
    result = run("fit", str(iris_csv), "-k", "3", "-o", "iris.pkl")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "3 components, full covariance" in out
    assert "150 rows x 4 columns" in out
    assert "nats/row" in out and "bits/dim" in out and "wrote" not in out
    assert "wrote iris.pkl" in result.stderr
    model = gencli.load("iris.pkl")
    assert model.columns == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    X = pd.read_csv(iris_csv).to_numpy()
    mean_ll = float(np.mean(model.score_samples(X)))
    assert f"{mean_ll:.4f}" in out
    assert f"{-mean_ll / (4 * np.log(2)):.4f}" in out


def test_fit_json_is_the_summary_on_stdout(blobs_csv: Path) -> None:
    result = run("fit", str(blobs_csv), "-k", "2", "--json", "--seed", "3")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["family"] == "gmm"
    assert summary["parameters"]["components"] == 2
    assert summary["rows"] == 300 and summary["columns"] == ["a", "b"]
    model = gencli.load("model.pkl")
    X = np.loadtxt(blobs_csv, delimiter=",", skiprows=1)
    assert summary["mean_log_likelihood"] == pytest.approx(np.mean(model.score_samples(X)))
    assert summary["bits_per_dimension"] == pytest.approx(
        -summary["mean_log_likelihood"] / (2 * np.log(2))
    )


def test_fit_kde_options_reach_the_estimator(blobs_csv: Path) -> None:
    result = run(
        "fit", str(blobs_csv), "--model", "kde", "--kernel", "linear", "--bandwidth", "0.3", "-q"
    )
    assert result.exit_code == 0 and result.stdout == ""
    model = gencli.load("model.pkl")
    assert model.estimator.kernel == "linear"
    assert model.params["bandwidth"] == 0.3


def test_fit_gmm_options_reach_the_estimator(blobs_csv: Path) -> None:
    args = ["--covariance", "diag", "--max-iter", "7", "--n-init", "2", "--tol", "1e-5"]
    result = run("fit", str(blobs_csv), "-k", "2", *args, "--reg-covar", "1e-3", "-q")
    assert result.exit_code == 0
    estimator = gencli.load("model.pkl").estimator
    assert estimator.covariance_type == "diag"
    assert (estimator.max_iter, estimator.n_init, estimator.tol) == (7, 2, 1e-5)
    assert estimator.reg_covar == 1e-3


def test_fit_reads_stdin(blobs_csv: Path) -> None:
    result = run("fit", "-", "-q", input=blobs_csv.read_bytes())
    assert result.exit_code == 0
    assert gencli.load("model.pkl").columns == ["a", "b"]


def test_fit_columns_picks_and_orders(iris_csv: Path) -> None:
    result = run("fit", str(iris_csv), "--columns", "petal_width,sepal_length", "-q")
    assert result.exit_code == 0
    assert gencli.load("model.pkl").columns == ["petal_width", "sepal_length"]


def test_score_matches_columns_by_name_in_any_order(blobs_csv: Path, tmp_path: Path) -> None:
    run("fit", str(blobs_csv), "-k", "2", "-q")
    frame = pd.read_csv(blobs_csv)
    frame["extra"] = 1.0
    frame[["extra", "b", "a"]].to_csv("shuffled.csv", index=False)
    result = run("score", "model.pkl", "shuffled.csv", "-o", "scores.csv")
    assert result.exit_code == 0
    assert "note: ignoring columns not in the model: extra" in result.stderr
    scores = pd.read_csv("scores.csv")
    assert list(scores.columns) == ["log_density"]
    expected = gencli.load("model.pkl").score_samples(frame[["a", "b"]].to_numpy())
    np.testing.assert_array_equal(scores["log_density"].to_numpy(), expected)


def test_score_summary_numbers(blobs_csv: Path) -> None:
    run("fit", str(blobs_csv), "-k", "2", "-q")
    logd = gencli.load("model.pkl").score_samples(pd.read_csv(blobs_csv).to_numpy())
    # Scores on stdout: the JSON summary goes to stderr; scores to a file: to stdout.
    for args, stream in (([], "stderr"), (["-o", "s.csv"], "stdout")):
        result = run("score", "model.pkl", str(blobs_csv), "--json", *args)
        summary = json.loads(getattr(result, stream))
        assert summary["rows"] == 300
        assert summary["total_log_likelihood"] == pytest.approx(logd.sum())
        assert summary["mean_log_likelihood"] == pytest.approx(logd.mean())
    result = run("score", "model.pkl", str(blobs_csv))
    assert f"{logd.sum():.4f}" in result.stderr and "columns matched by name" in result.stderr
    np.testing.assert_array_equal(pd.read_csv(io.StringIO(result.stdout))["log_density"], logd)


def test_score_to_stdout_keeps_summary_on_stderr(blobs_csv: Path) -> None:
    run("fit", str(blobs_csv), "-q")
    result = run("score", "model.pkl", str(blobs_csv), "-o", "-")
    lines = result.stdout.splitlines()
    assert lines[0] == "log_density" and len(lines) == 301
    float(lines[1])
    assert "nats/row" in result.stderr and "nats/row" not in result.stdout


def test_score_unnamed_data_by_position(blobs_csv: Path) -> None:
    run("fit", str(blobs_csv), "-q")
    X = np.loadtxt(blobs_csv, delimiter=",", skiprows=1)
    np.save("rows.npy", X[:10])
    result = run("score", "model.pkl", "rows.npy", "-o", "s.npy")
    assert result.exit_code == 0
    assert "matched by position" in result.stdout
    expected = gencli.load("model.pkl").score_samples(X[:10])
    np.testing.assert_array_equal(np.load("s.npy")[:, 0], expected)


@pytest.mark.parametrize("extension", ["csv", "tsv", "npy", "parquet"])
def test_sample_writes_every_format(blobs_csv: Path, extension: str) -> None:
    run("fit", str(blobs_csv), "-k", "2", "-q")
    result = run("sample", "model.pkl", "-n", "50", "--seed", "4", "-o", f"s.{extension}")
    assert result.exit_code == 0
    assert f"wrote 50 rows to s.{extension}" in result.stderr
    expected = gencli.load("model.pkl").sample(50, seed=4)
    if extension == "npy":
        got = np.load("s.npy")
    elif extension == "parquet":
        got = pd.read_parquet("s.parquet")[["a", "b"]].to_numpy()
    else:
        got = pd.read_csv(f"s.{extension}", sep="\t" if extension == "tsv" else ",")
        assert list(got.columns) == ["a", "b"]
        got = got.to_numpy()
    np.testing.assert_array_equal(got, expected)


def test_sample_to_stdout_is_csv_with_training_names(blobs_csv: Path) -> None:
    run("fit", str(blobs_csv), "-q")
    first = run("sample", "model.pkl", "-n", "20", "--seed", "1").stdout
    second = run("sample", "model.pkl", "-n", "20", "--seed", "1").stdout
    assert first == second
    assert first.splitlines()[0] == "a,b" and len(first.splitlines()) == 21
    fresh = run("sample", "model.pkl", "-n", "20").stdout
    assert fresh != first


def test_samples_are_in_data_units(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal([1000.0, -0.001], [50.0, 0.0001], size=(500, 2))
    pd.DataFrame(X, columns=["big", "tiny"]).to_csv("units.csv", index=False)
    for family in ("gmm", "kde"):
        run("fit", "units.csv", "--model", family, "-o", f"{family}.pkl", "-q")
        draws = pd.read_csv(
            __import__("io").StringIO(run("sample", f"{family}.pkl", "-n", "4000").stdout)
        )
        assert draws["big"].mean() == pytest.approx(1000, abs=5)
        assert draws["tiny"].std() == pytest.approx(0.0001, rel=0.15)


def test_version_and_help() -> None:
    assert gencli.__version__ in run("--version").stdout
    for command in ("fit", "score", "sample"):
        text = run(command, "-h").stdout
        assert "Examples:" in text and f"gencli {command}" in text
