"""Row weights in kernel densities and in ``--model auto``: integer weights against rows
repeated at a fixed bandwidth, the weighted rules of thumb against their closed forms with
Kish's n_eff, the weighted cross-validated bandwidth's scores against a direct computation,
and equal weights against the unweighted search."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.special import logsumexp

from gencli.density.families import gmm, kde
from gencli.fitting import cv_candidates
from gencli.fitting.auto import fit_auto
from gencli.fitting.bandwidth_cv import select_bandwidth
from gencli.fitting.family_fits import Rows, fit_kde


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with gmm.em_session():
        yield


def _data(n: int = 240, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 2)) * [1.0, 0.4]
    Z[:, 1] += 0.6 * Z[:, 0]
    Z[: n // 3] += [2.0, -1.0]
    return Z


def direct(points: np.ndarray, weights: np.ndarray, Z: np.ndarray, h: float) -> np.ndarray:
    """log sum_i w_i N(z; p_i, h^2 I) / sum_i w_i, written out."""
    d = points.shape[1]
    u2 = ((Z[:, None, :] - points[None]) ** 2).sum(axis=2) / (h * h)
    log_kernel = -0.5 * u2 - d * np.log(h) - 0.5 * d * np.log(2 * np.pi)
    return logsumexp(log_kernel + np.log(weights), axis=1) - np.log(weights.sum())


def test_integer_weights_are_the_rows_repeated() -> None:
    Z = _data()
    counts = np.random.default_rng(1).integers(1, 5, size=Z.shape[0])
    new = np.random.default_rng(2).normal(size=(50, 2)) * 1.5
    rotation = np.array([[1.2, -0.7], [0.0, 2.1]])
    for W in (None, rotation):
        weighted = kde.fit(Z, bandwidth=0.3, rotation=W, weights=counts.astype(float))
        repeated = kde.fit(np.repeat(Z, counts, axis=0), bandwidth=0.3, rotation=W)
        np.testing.assert_allclose(
            kde.log_density(weighted, new, mode="exact"),
            kde.log_density(repeated, new, mode="exact"),
            rtol=0,
            atol=1e-10,
        )
    assert weighted["weights"].sum() == pytest.approx(1.0)  # stored normalized
    # Through the family's fit: held-out rows scored alike by either model (its scores are
    # the default path's, within FAST_RTOL = 1e-6 of the exact sum).
    valid = new[:20]
    rows = Rows(Z, Z, valid, 0.1, False, 0, 1, None, counts.astype(float), None, np.ones(20))
    rep = np.repeat(Z, counts, axis=0)
    plain = Rows(rep, rep, valid, 0.1, False, 0, 1, None)
    settings = {"kernel": "gaussian", "bandwidth": 0.3, "folds": 5}
    np.testing.assert_allclose(
        fit_kde(rows, settings)["heldout_log_density"],
        fit_kde(plain, settings)["heldout_log_density"],
        rtol=0,
        atol=2e-6,
    )


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_weighted_rules_of_thumb_are_the_closed_forms_with_n_eff(rule: str) -> None:
    Z = _data() * [3.0, 0.2]
    w = np.random.default_rng(3).exponential(size=Z.shape[0])
    p = w / w.sum()
    variances = p @ (Z - p @ Z) ** 2
    n_eff, d = w.sum() ** 2 / (w**2).sum(), 2
    base = n_eff if rule == "scott" else n_eff * (d + 2) / 4
    expected = base ** (-1 / (d + 4)) * np.sqrt(variances.mean())
    assert kde.rule_of_thumb(Z, rule, "gaussian", w) == pytest.approx(expected, rel=1e-12)
    assert kde.rule_of_thumb(Z, rule, "gaussian", w * 1e6) == pytest.approx(expected, rel=1e-12)
    # Equal weights: the unweighted rule (n_eff = n), for any weight.
    equal = np.full(Z.shape[0], 0.3)
    unweighted = kde.rule_of_thumb(Z, rule, "gaussian")
    assert kde.rule_of_thumb(Z, rule, "gaussian", equal) == pytest.approx(unweighted, rel=1e-12)


def test_weighted_rotation_whitens_the_weighted_covariance() -> None:
    Z = _data()
    w = np.random.default_rng(4).exponential(size=Z.shape[0])
    W = kde.whitening(Z, w)
    assert W is not None
    p = w / w.sum()
    centred = Z - p @ Z
    covariance = (centred * p[:, None]).T @ centred / (1 - (p**2).sum())  # unbiased, weighted
    np.testing.assert_allclose(W.T @ covariance @ W, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(kde.whitening(Z, np.full(len(Z), 7.0)), kde.whitening(Z), atol=1e-13)


def _direct_cv(Z: np.ndarray, w: np.ndarray, h: float, seed: int) -> float:
    """The weighted 5-fold CV score written out: each fold's held-out rows under the KDE of
    the rest with their weights, averaged with the held-out rows' weights."""
    from sklearn.model_selection import KFold

    total = 0.0
    for fit, held in KFold(5, shuffle=True, random_state=seed).split(Z):
        total += w[held] @ direct(Z[fit], w[fit], Z[held], h)
    return float(total / w.sum())


def test_weighted_cv_bandwidth_scores_are_the_direct_ones() -> None:
    Z = _data(200)
    w = np.random.default_rng(5).uniform(0.2, 4.0, size=Z.shape[0])
    h, history = select_bandwidth(Z, kernel="gaussian", seed=3, log_jacobian=0.7, weights=w)
    for record in history[::3]:
        expected = _direct_cv(Z, w, record["bandwidth"], 3) + 0.7
        assert record["cv_mean_log_likelihood"] == pytest.approx(expected, abs=1e-9)
    best = _direct_cv(Z, w, h, 3)
    assert best >= max(_direct_cv(Z, w, h * 1.02, 3), _direct_cv(Z, w, h / 1.02, 3))
    # The unweighted search would choose another bandwidth: the weights matter.
    assert select_bandwidth(Z, kernel="gaussian", seed=3)[0] != pytest.approx(h, rel=1e-3)


def test_auto_kde_candidate_scores_the_folds_with_weights() -> None:
    Z = _data(150)
    w = np.random.default_rng(6).uniform(0.2, 4.0, size=Z.shape[0])
    folds = cv_candidates.make_folds(len(Z), 5, 1, w)
    settings = {"kernel": "gaussian", "bandwidth": 0.4}
    record = cv_candidates.kde_candidate(Z, folds, settings, False, -0.2, 1)
    expected = np.concatenate([direct(Z[fit], w[fit], Z[held], 0.4) for fit, held in folds.pairs])
    np.testing.assert_allclose(record["scores"], expected - 0.2, rtol=0, atol=1e-9)
    held = folds.scored_weights
    assert held is not None
    mean = cv_candidates.summary(record["scores"], held)["cv_mean_log_likelihood"]
    assert mean == pytest.approx(float(held @ expected / held.sum()) - 0.2, abs=1e-12)
    # Its cross-validated bandwidth maximizes that weighted mean (to the search's 1%).
    chosen = cv_candidates.kde_candidate(Z, folds, settings | {"bandwidth": "cv"}, False, 0, 1)

    def objective(h: float) -> float:
        scores = [w[held] @ direct(Z[fit], w[fit], Z[held], h) for fit, held in folds.pairs]
        return float(sum(scores) / w.sum())

    h = chosen["bandwidth"]
    assert objective(h) >= max(objective(h * 1.05), objective(h / 1.05))


@pytest.mark.parametrize("c", [0.25, 4.0])
def test_equal_weights_give_the_unweighted_auto_search(c: float) -> None:
    Z = _data(160)
    settings = {
        "components": "1..3",
        "covariance": "auto",
        "kernel": "gaussian",
        "bandwidth": None,
        "folds": 5,
        "max_iter": 100,
        "n_init": 1,
        "tol": 1e-3,
        "reg_covar": 1e-6,
        "select": "bic",
    }
    plain = fit_auto(Rows(Z, Z[:130], Z[130:], -0.5, True, 0, 1, None), settings)
    w = np.full(len(Z), c)
    rows = Rows(Z, Z[:130], Z[130:], -0.5, True, 0, 1, None, w, w[:130], w[130:])
    weighted = fit_auto(rows, settings)
    assert weighted["family"] == plain["family"]
    pairs = zip(plain["selection"]["candidates"], weighted["selection"]["candidates"], strict=True)
    for a, b in pairs:
        assert (a["status"], a["chosen"]) == (b["status"], b["chosen"])
        for key in ("cv_mean_log_likelihood", "cv_standard_error"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-8), (a, key)
    np.testing.assert_allclose(
        weighted["heldout_log_density"], plain["heldout_log_density"], rtol=1e-8
    )


def test_auto_scores_every_candidate_by_its_weighted_held_out_mean() -> None:
    """One Gaussian (whose weighted fit is the weighted mean and covariance) and a kernel
    density at a given bandwidth, scored directly on the same folds."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(8)
    Z = rng.normal(size=(150, 2)) @ np.array([[1.0, 0.5], [0.0, 0.7]])  # one Gaussian leads
    w = rng.uniform(0.2, 4.0, size=Z.shape[0])
    settings = {
        "components": "1",
        "covariance": "full",
        "kernel": "gaussian",
        "bandwidth": 0.4,
        "folds": 5,
        "max_iter": 100,
        "n_init": 1,
        "tol": 1e-3,
        "reg_covar": 1e-6,
        "select": "bic",
    }
    rows = Rows(Z, Z, None, -0.3, False, 2, 1, None, w)
    records = fit_auto(rows, settings)["selection"]["candidates"]
    folds = cv_candidates.make_folds(len(Z), 5, 2)  # the folds are the rows' (seeded) folds
    gauss = kernel = 0.0
    for fit, held in folds.pairs:
        p = w[fit] / w[fit].sum()
        mean = p @ Z[fit]
        cov = (Z[fit] - mean).T @ ((Z[fit] - mean) * p[:, None]) + 1e-6 * np.eye(2)
        gauss += w[held] @ multivariate_normal(mean, cov).logpdf(Z[held])
        kernel += w[held] @ direct(Z[fit], w[fit], Z[held], 0.4)
    one = next(r for r in records if r["family"] == "gmm" and r["covariance"] == "full")
    kde_record = next(r for r in records if r["family"] == "kde" and not r["rotated"])
    assert one["cv_mean_log_likelihood"] == pytest.approx(gauss / w.sum() - 0.3, abs=1e-6)
    assert kde_record["cv_mean_log_likelihood"] == pytest.approx(kernel / w.sum() - 0.3, abs=1e-9)
