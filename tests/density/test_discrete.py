"""Columns of whole numbers: found, fitted to x + U[0,1), scored as the probability of the
value, sampled as whole numbers. The check that matters: exp(score) summed over the integers
and integrated over the continuous columns is 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gencli
from gencli.density.discrete import MAX_DISTINCT, dequantize, discrete_columns, is_discrete
from gencli.errors import FitError, ModelFileError


def counts_and_heights(n: int = 400, seed: int = 0) -> np.ndarray:
    """A count column (Poisson, mean 3) and a continuous one that depends on it."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, n).astype(float)
    heights = 1.5 * counts + rng.normal(0.0, 1.0, n)
    return np.column_stack([counts, heights])


def test_whole_numbers_with_few_values_are_discrete() -> None:
    assert is_discrete(np.array([0.0, 1, 2, 2, 5]))
    assert not is_discrete(np.array([0.0, 1.5, 2]))
    assert not is_discrete(np.arange(MAX_DISTINCT + 1, dtype=float))
    assert is_discrete(np.arange(MAX_DISTINCT, dtype=float))
    X = counts_and_heights()
    assert discrete_columns(X, ["c", "h"], "auto", "d.csv") == [0]
    assert discrete_columns(X, ["c", "h"], "none", "d.csv") == []
    assert discrete_columns(X, ["c", "h"], "c", "d.csv") == [0]
    with pytest.raises(FitError, match="no column 'z'"):
        discrete_columns(X, ["c", "h"], ["z"], "d.csv")
    with pytest.raises(FitError, match="not a whole number"):
        discrete_columns(X, ["c", "h"], ["h"], "d.csv")


def test_dequantizing_adds_uniform_noise_to_the_discrete_columns_only() -> None:
    X = counts_and_heights()
    out = dequantize(X, [0], seed=1)
    np.testing.assert_array_equal(out[:, 1], X[:, 1])
    noise = out[:, 0] - X[:, 0]
    assert noise.min() >= 0 and noise.max() < 1 and abs(noise.mean() - 0.5) < 0.05
    np.testing.assert_array_equal(dequantize(X, [0], seed=1), out)  # seeded


@pytest.mark.parametrize(
    "options",
    [
        {"model": "gmm", "components": 2, "covariance": "full"},
        {"model": "gmm", "components": 3, "covariance": "diag"},
        {"model": "kde"},
        {"model": "auto"},
    ],
    ids=["gmm-full", "gmm-diag", "kde", "auto"],
)
def test_probabilities_and_densities_add_up_to_one(options: dict) -> None:
    X = counts_and_heights()
    model = gencli.fit(X, seed=0, discrete="auto", **options)
    assert model.discrete == [0]
    counts = np.arange(-5, 40)
    heights = np.linspace(-20, 80, 2001)
    grid = np.array([[k, h] for k in counts for h in heights])
    density = np.exp(model.score_samples(grid)).reshape(len(counts), len(heights))
    total = density.sum() * (heights[1] - heights[0])
    assert total == pytest.approx(1.0, abs=2e-3)
    drawn = model.sample(5000, seed=4)
    np.testing.assert_array_equal(drawn[:, 0], np.floor(drawn[:, 0]))
    assert abs(drawn[:, 0].mean() - X[:, 0].mean()) < 0.25


def test_a_value_between_integers_scores_its_integer_box() -> None:
    model = gencli.fit(counts_and_heights(), model="gmm", components=1, seed=0, discrete="auto")
    rows = np.array([[3.0, 4.0], [3.7, 4.0]])
    scores = model.score_samples(rows)
    assert scores[0] == scores[1]


def test_discrete_columns_survive_the_model_file_and_are_checked(tmp_path: Path) -> None:
    model = gencli.fit(counts_and_heights(), model="gmm", components=2, seed=0, discrete="auto")
    model.save(tmp_path / "m.pkl")
    again = gencli.load(tmp_path / "m.pkl")
    assert again.discrete == [0] and again.discrete_columns == ["x0"]
    rows = counts_and_heights(20, seed=9)
    np.testing.assert_array_equal(again.score_samples(rows), model.score_samples(rows))
    from gencli.density import modelfile

    plain = model.to_plain()
    plain["discrete_columns"] = ["nope"]
    with pytest.raises(ModelFileError, match="discrete_columns"):
        modelfile.from_plain(plain, "m.pkl")


def test_none_keeps_whole_numbers_continuous() -> None:
    model = gencli.fit(counts_and_heights(), model="gmm", components=2, discrete="none")
    assert model.discrete == []


def gencli_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gencli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_says_which_columns_are_discrete_and_refuses_what_cannot_be_exact(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.poisson(2, 300), rng.integers(0, 5, 300), rng.normal(0, 1, 300)])
    np.savetxt(tmp_path / "d.csv", X, delimiter=",", header="a,b,c", comments="", fmt="%g")
    fitted = gencli_run(
        "fit",
        "d.csv",
        "--model",
        "gmm",
        "-k",
        "2",
        "--covariance",
        "diag",
        "--discrete",
        "auto",
        "-o",
        "m.pkl",
        cwd=tmp_path,
    )
    assert fitted.returncode == 0, fitted.stderr
    assert "discrete   a, b: whole numbers" in fitted.stdout
    inspected = gencli_run("inspect", "m.pkl", cwd=tmp_path)
    assert "discrete   a, b: scored as log-probability" in inspected.stdout
    drawn = gencli_run("sample", "m.pkl", "-n", "5", cwd=tmp_path)
    rows = np.loadtxt(drawn.stdout.splitlines()[1:], delimiter=",")
    np.testing.assert_array_equal(rows[:, :2], np.floor(rows[:, :2]))
    for args, fragment in [
        (["--model", "gmm", "--covariance", "full", "--discrete", "auto"], "diag or spherical"),
        (["--model", "kde", "--kernel", "tophat", "--discrete", "auto"], "only the gaussian"),
        (["--discrete", "nope"], "--discrete: no column 'nope' in d.csv"),
        (["--discrete", "c"], "--discrete: column 'c' of d.csv holds"),
    ]:
        refused = gencli_run("fit", "d.csv", *args, "-o", "r.pkl", cwd=tmp_path)
        assert refused.returncode == 1 and fragment in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        if "auto" in args:
            assert "columns a, b hold whole numbers" in refused.stderr
        assert "Traceback" not in refused.stderr and not (tmp_path / "r.pkl").exists()


def test_by_default_whole_number_columns_are_named_in_a_warning() -> None:
    model = gencli.fit(counts_and_heights(), model="gmm", components=2, seed=0)
    assert model.discrete == []
    assert any(
        "column x0 holds whole numbers" in w and "--discrete auto" in w
        for w in model.metadata["warnings"]
    ), model.metadata["warnings"]
    quiet = gencli.fit(counts_and_heights(), model="gmm", components=2, discrete="none")
    assert not any("whole numbers" in w for w in quiet.metadata["warnings"])


def test_the_report_says_which_columns_are_discrete(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.poisson(2, 200), rng.normal(0, 1, 200)])
    np.savetxt(tmp_path / "d.csv", X, delimiter=",", header="n,h", comments="", fmt="%g")
    result = gencli_run(
        "fit",
        "d.csv",
        "-k",
        "2",
        "--discrete",
        "n",
        "--report",
        "r.md",
        "-o",
        "m.pkl",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "r.md").read_text()
    assert "| column | kind | mean |" in report
    assert "| n | discrete |" in report and "| h | continuous |" in report
