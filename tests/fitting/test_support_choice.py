"""``--model auto`` chooses the support: columns as given or bounded at 0, by the
cross-validated log-likelihood on the training rows, each side being exactly the fit that
``--bounds none`` / ``--bounds auto`` would make."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli
from gencli.fitting.support_choice import AS_GIVEN, BOUNDED


def skewed(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = np.exp(rng.normal(1.0, 0.9, n))
    return pd.DataFrame({"income": income, "age": 20 + 40 * rng.random(n)})


def chosen_cv(model) -> float:
    return next(
        c["cv_mean_log_likelihood"]
        for c in model.metadata["selection"]["candidates"]
        if c["chosen"]
    )


def fit(frame, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gencli.fit(frame, seed=0, **options)


def test_both_supports_are_searched_and_the_better_cross_validated_one_is_kept() -> None:
    frame = skewed()
    default = fit(frame)
    bounded = fit(frame, bounds="auto")
    plain = fit(frame, bounds="none")
    assert bounded.bounds is not None and plain.bounds is None
    support = default.metadata["support"]
    assert support["cv_mean_log_likelihood"] == {
        BOUNDED: pytest.approx(chosen_cv(bounded), abs=1e-12),
        AS_GIVEN: pytest.approx(chosen_cv(plain), abs=1e-12),
    }
    assert chosen_cv(bounded) > chosen_cv(plain)  # a lognormal column: the log side wins
    assert support["chosen"] == BOUNDED and default.bounds is not None
    rows = frame.to_numpy()[:20] * 1.01
    np.testing.assert_array_equal(default.score_samples(rows), bounded.score_samples(rows))
    candidates = default.metadata["selection"]["candidates"]
    assert sum(c["chosen"] for c in candidates) == 1
    assert {c["support"] for c in candidates} == {BOUNDED, AS_GIVEN}


def test_without_a_column_to_bound_nothing_changes() -> None:
    frame = skewed().assign(age=lambda f: f.age - 40)  # age takes negative values
    frame = frame.assign(income=lambda f: np.log(f.income))  # and so does log income
    default = fit(frame)
    assert "support" not in default.metadata and default.bounds is None


def test_the_command_line_names_the_log_candidates(tmp_path) -> None:
    skewed().to_csv(tmp_path / "d.csv", index=False)
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "d.csv"), "-o", "m.pkl"])
    assert result.exit_code == 0, result.output
    assert ", log" in result.stdout and "bounds     income=0: (log)" in result.stdout
    assert ", log " in result.stderr  # the candidates as they finish
