"""``fit --model kde`` costs O(n) beyond scoring the held-out rows: the training likelihood
is estimated on a seeded sample of rows, with its standard error, and said so.

The references are computed here: the mean over every training row from the model's
exact mode, and the sample's standard error from its formula.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import gencli
from gencli.density.families import kde
from gencli.fitting import family_fits


def rows(n: int, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.3], [0, 0, 1]])[:d]


def test_training_rows_scored_are_bounded_whatever_n(monkeypatch) -> None:
    """Every kernel sum the fit asks for: held-out rows, and at most TRAIN_SCORED_ROWS
    training rows, never n^2."""
    scored: list[int] = []
    original = kde.log_density

    def counting(params, Z, **kwargs):
        scored.append(Z.shape[0])
        return original(params, Z, **kwargs)

    monkeypatch.setattr(kde, "log_density", counting)
    monkeypatch.setattr(family_fits, "TRAIN_SCORED_ROWS", 300)
    gencli.fit(rows(2000), model="kde", validation=0.2, seed=1)
    assert sorted(scored) == [300, 400]  # a sample of training rows; the 400 held-out rows


def test_the_estimate_is_the_sample_mean_with_its_standard_error(monkeypatch) -> None:
    monkeypatch.setattr(family_fits, "TRAIN_SCORED_ROWS", 500)
    X = rows(3000)
    model = gencli.fit(X, model="kde", validation=0.2, seed=3)
    estimate = model.metadata["train_estimate"]
    assert estimate["rows_scored"] == 500 and estimate["rows"] == 3000  # refitted on all
    every = model.score_samples(X, mode="exact")
    sample = every[family_fits.training_rows_scored(3000, 3)]
    assert model.metadata["train_mean_log_likelihood"] == pytest.approx(sample.mean(), rel=1e-6)
    se = sample.std(ddof=1) / math.sqrt(500) * math.sqrt(1 - 500 / 3000)
    assert estimate["standard_error"] == pytest.approx(se, rel=1e-6)
    # and the estimate is near the mean over every row (4 standard errors)
    assert abs(model.metadata["train_mean_log_likelihood"] - every.mean()) < 4 * se


def test_small_fits_score_every_training_row() -> None:
    X = rows(600)
    model = gencli.fit(X, model="kde", validation=0.0, seed=0)
    assert model.metadata["train_estimate"] is None
    every = model.score_samples(X, mode="exact")
    assert model.metadata["train_mean_log_likelihood"] == pytest.approx(every.mean(), rel=1e-9)


def test_the_summary_and_inspect_say_the_training_figure_is_an_estimate(tmp_path) -> None:
    data = tmp_path / "big.csv"
    np.savetxt(data, rows(3000), delimiter=",", header="a,b,c", comments="")
    model = tmp_path / "m.pkl"
    gencli_command = [sys.executable, "-m", "gencli"]
    fit = subprocess.run(
        [*gencli_command, "fit", str(data), "--model", "kde", "-o", str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fit.returncode == 0, fit.stderr
    assert "estimated on 2,000 of 3,000 rows, standard error" in fit.stdout + fit.stderr
    shown = subprocess.run(
        [*gencli_command, "inspect", str(model)], capture_output=True, text=True, timeout=60
    )
    assert "estimated on 2,000 of 3,000 rows" in shown.stdout


def test_fits_never_take_the_timed_path_so_they_repeat_exactly(monkeypatch) -> None:
    """The default mode's timed choice may differ between runs (its paths agree to 1e-6);
    a fit's bandwidth search and figures use the untimed rules instead."""
    from gencli.density.families import kde_scoring

    def timed(*args, **kwargs):
        raise AssertionError("a fit took the timed path")

    monkeypatch.setattr(kde_scoring, "measured_path_log_density", timed)
    # 6,000 rows: each fold's sum is past the small-job shortcut that skips timing anyway.
    model = gencli.fit(rows(6000, seed=5), model="kde", bandwidth="cv", seed=0)
    assert model.metadata["selection"]["criterion"] == "cv"


def test_discrete_columns_the_validation_record_counts_the_training_split() -> None:
    rng = np.random.default_rng(6)
    X = np.column_stack([rng.normal(size=2400), rng.integers(0, 5, 2400)])
    model = gencli.fit(X, model="kde", discrete="auto", validation=0.2, seed=0)
    record = model.metadata["validation"]
    assert (record["train_rows"], record["heldout_rows"]) == (1920, 480)
    assert model.metadata["train_estimate"]["rows"] == 2400  # the refitted model's rows
