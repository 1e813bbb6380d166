"""Two guards for small or awkward data: the OAS-shrunk Gaussian candidate of --model auto,
and the rule that a collapse repair never makes the held-out likelihood worse.

References: the Oracle Approximating Shrinkage formula written out in numpy (Chen, Wiesel,
Eldar & Hero 2010, as scikit-learn states it), scipy.stats.multivariate_normal in the data's
units, scikit-learn's GaussianMixture fitted directly with both regularizers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gencli
from gencli.density.families import gmm
from gencli.fitting import shrunk
from gencli.fitting.cv_candidates import make_folds, shrunk_candidate
from gencli.fitting.selection import fit_candidate

D = 12
AR = 0.8 ** np.abs(np.subtract.outer(np.arange(D), np.arange(D)))


def few_rows_many_columns(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Correlated columns in different units: a full covariance has 78 numbers for 40 rows."""
    rng = np.random.default_rng(seed)
    X = rng.multivariate_normal(np.zeros(D), AR, size=n) * np.arange(1, D + 1) + 100.0
    return pd.DataFrame(X, columns=[f"c{i}" for i in range(D)])


def oas_by_hand(Z: np.ndarray) -> np.ndarray:
    n, d = Z.shape
    S = np.cov(Z, rowvar=False, ddof=0)
    mu = np.trace(S) / d
    alpha = np.mean(S**2)
    shrinkage = min((alpha + mu**2) / ((n + 1) * (alpha - mu**2 / d)), 1.0)
    return (1 - shrinkage) * S + shrinkage * mu * np.eye(d)


def test_shrunk_fit_is_the_oas_formula_plus_the_regularizer() -> None:
    Z = np.random.default_rng(3).multivariate_normal(np.zeros(D), AR, size=25)
    estimator, amount = shrunk.fit(Z, reg_covar=1e-6)
    expected = oas_by_hand(Z) + 1e-6 * np.eye(D)
    np.testing.assert_allclose(estimator.covariances_[0], expected, rtol=1e-12, atol=1e-14)
    assert 0 < amount < 1
    queries = Z[:5] * 1.5
    reference = stats.multivariate_normal(Z.mean(axis=0), expected).logpdf(queries)
    np.testing.assert_allclose(estimator.score_samples(queries), reference, rtol=0, atol=1e-9)


def test_shrunk_candidate_scores_each_fold_with_its_own_rows() -> None:
    Z = np.random.default_rng(4).multivariate_normal(np.zeros(D), AR, size=30)
    folds = make_folds(len(Z), 5, 0)
    record = shrunk_candidate(Z, folds, 1e-6, log_jacobian=-0.7)
    expected = []
    for fit_rows, scored in folds.pairs:
        cov = oas_by_hand(Z[fit_rows]) + 1e-6 * np.eye(D)
        normal = stats.multivariate_normal(Z[fit_rows].mean(axis=0), cov)
        expected.append(normal.logpdf(Z[scored]) - 0.7)
    np.testing.assert_allclose(record["scores"], np.concatenate(expected), atol=1e-9)
    assert record["status"] == "ok" and record["covariance"] == "shrunk"


def test_auto_chooses_the_shrunk_gaussian_on_few_rows_and_it_is_a_true_density() -> None:
    frame = few_rows_many_columns()
    model = gencli.fit(frame, seed=0, bounds="none")
    chosen = [c for c in model.metadata["selection"]["candidates"] if c["chosen"]]
    assert chosen[0]["covariance"] == "shrunk", chosen
    # Refitted on every row: the OAS covariance of the standardized rows, in data units.
    X = frame.to_numpy()
    mean, scale = X.mean(axis=0), X.std(axis=0)
    cov = (oas_by_hand((X - mean) / scale) + 1e-6 * np.eye(D)) * np.outer(scale, scale)
    queries = few_rows_many_columns(n=20, seed=9).to_numpy()
    reference = stats.multivariate_normal(mean, cov).logpdf(queries)
    np.testing.assert_allclose(model.score_samples(queries), reference, rtol=0, atol=1e-8)
    draws = model.sample(200_000, seed=1)
    sd = np.sqrt(np.diag(cov))
    assert np.abs((np.cov(draws, rowvar=False) - cov) / np.outer(sd, sd)).max() < 0.02


def test_fit_summary_names_the_shrunk_gaussian(tmp_path: Path) -> None:
    data = tmp_path / "few.csv"
    few_rows_many_columns().to_csv(data, index=False)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gencli",
            "fit",
            str(data),
            "--bounds",
            "none",
            "-o",
            str(tmp_path / "m.pkl"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert re.search(r"best Gaussian shrunk by 0\.\d\d \(OAS\) .* <- chosen", run.stdout), (
        run.stdout
    )


def narrow_cluster(n: int, seed: int) -> np.ndarray:
    """Standardized-like rows: 70% a wide Gaussian, 30% a real cluster 1e-5 wide, far
    narrower than the regularizer the collapse repair raises to (1e-3)."""
    rng = np.random.default_rng(seed)
    wide = rng.normal(size=(int(0.7 * n), 2))
    narrow = 3.0 + 1e-5 * rng.normal(size=(n - len(wide), 2))
    return rng.permutation(np.vstack([wide, narrow]))


def heldout_mean(reg_covar: float, train: np.ndarray, valid: np.ndarray) -> float:
    from sklearn.mixture import GaussianMixture

    fitted = GaussianMixture(2, reg_covar=reg_covar, random_state=0).fit(train)
    return float(np.mean(fitted.score_samples(valid)))


def test_a_repair_that_hurts_the_heldout_rows_is_not_kept() -> None:
    train, valid = narrow_cluster(400, 1), narrow_cluster(400, 2)
    options = {"components": 2, "covariance": "full", "reg_covar": 1e-6, "seed": 0}
    fixes: list[str] = []
    estimator, kept_unrepaired = fit_candidate(train, valid, 0.0, options, fixes)
    assert kept_unrepaired
    assert gmm.collapsed(estimator, 1e-6)  # the narrow cluster kept its width
    repaired, unrepaired = heldout_mean(1e-3, train, valid), heldout_mean(1e-6, train, valid)
    assert unrepaired > repaired + 1.0  # the premise, by scikit-learn alone
    assert np.mean(estimator.score_samples(valid)) == pytest.approx(unrepaired, abs=1e-3)
    assert "kept the fit before that repair" in fixes[-1]
    # With no held-out rows there is nothing to judge by: the repair stands.
    estimator, kept_unrepaired = fit_candidate(train, None, 0.0, options, [])
    assert not kept_unrepaired and estimator.reg_covar == pytest.approx(1e-3)


def test_a_repair_that_helps_is_kept() -> None:
    rng = np.random.default_rng(5)
    # Ten copies of one row (a value recorded twice as often, say): the unrepaired fit puts
    # a spike on it, which gives nothing to new rows near, but not on, that value.
    train = np.vstack([rng.normal(size=(150, 2)), np.repeat([[2.5, -2.5]], 10, axis=0)])
    valid = np.vstack([rng.normal(size=(150, 2)), [2.5, -2.5] + 0.02 * rng.normal(size=(10, 2))])
    options = {"components": 2, "covariance": "full", "reg_covar": 1e-6, "seed": 0}
    twins: list = []
    gmm.fit(train, unrepaired=twins, **options)
    assert twins, "the premise: this fit collapses"
    fixes: list[str] = []
    estimator, kept_unrepaired = fit_candidate(train, valid, 0.0, options, fixes)
    assert not kept_unrepaired and estimator.reg_covar >= 1e-3
    gain = np.mean(estimator.score_samples(valid)) - np.mean(twins[0].score_samples(valid))
    assert gain > 0.3
    assert heldout_mean(1e-3, train, valid) > heldout_mean(1e-6, train, valid) + 0.3


def test_auto_and_gmm_keep_the_unrepaired_narrow_cluster_end_to_end() -> None:
    frame = pd.DataFrame(narrow_cluster(400, 1) * [2.0, 5.0] + [1.0, 7.0], columns=["a", "b"])
    test = pd.DataFrame(narrow_cluster(2000, 3) * [2.0, 5.0] + [1.0, 7.0], columns=["a", "b"])
    forced = gencli.fit(frame, model="gmm", components=2, reg_covar=1e-3, seed=0)
    for model in (
        gencli.fit(frame, model="gmm", components=2, seed=0),
        gencli.fit(frame, seed=0),
    ):
        assert model.score_samples(test).mean() > forced.score_samples(test).mean() + 1.0
    auto = gencli.fit(frame, seed=0)
    chosen = next(c for c in auto.metadata["selection"]["candidates"] if c["chosen"])
    assert chosen.get("repair_collapse") is False
    assert any("kept the fits before the collapse repair" in fix for fix in chosen["fixes"])


def test_the_shrunk_gaussian_stays_when_full_covariances_cannot_be_estimated() -> None:
    """Fewer training rows than columns: full and tied mixtures are left out, the shrunk
    Gaussian (positive definite from any number of rows) is not."""
    frame = few_rows_many_columns(n=14, seed=2).iloc[:, :13]
    model = gencli.fit(frame, seed=0)
    candidates = model.metadata["selection"]["candidates"]
    shrunk_rows = [c for c in candidates if c.get("covariance") == "shrunk"]
    assert shrunk_rows and shrunk_rows[0]["status"] == "ok"
    assert any("left out of the search" in w for w in model.metadata["warnings"])


def test_a_flat_component_is_repaired_even_when_it_scores_better() -> None:
    """Collinear columns make a component flat in one direction and wide in the others. Its
    fit before the repair wins on rows that keep the collinearity exactly, and costs
    thousands of nats on a row slightly off it: such a fit is never kept."""
    rng = np.random.default_rng(6)

    def rows(n: int) -> np.ndarray:
        a, b = rng.normal(size=(2, n))
        return np.column_stack([a, b, a + b])  # an exact identity, as in national accounts

    train, valid = rows(300), rows(100)
    options = {"components": 1, "covariance": "full", "reg_covar": 1e-6, "seed": 0}
    twins: list = []
    gmm.fit(train, unrepaired=twins, **options)
    assert twins, "the premise: this fit collapses"
    assert np.mean(twins[0].score_samples(valid)) > heldout_mean(1e-3, train, valid)  # premise
    estimator, kept_unrepaired = fit_candidate(train, valid, 0.0, options, [])
    assert not kept_unrepaired and estimator.reg_covar >= 1e-3
    off = valid[:1] + np.array([0.0, 0.0, 0.05])  # slightly off the identity
    assert twins[0].score_samples(off)[0] < estimator.score_samples(off)[0] - 100


def test_a_tight_cluster_is_a_point_collapse() -> None:
    from gencli.fitting.selection import point_collapses_only

    twins: list = []
    options = {"components": 2, "covariance": "full", "reg_covar": 1e-6, "seed": 0}
    gmm.fit(narrow_cluster(400, 1), unrepaired=twins, **options)
    assert twins and point_collapses_only(twins[0], 1e-6)
