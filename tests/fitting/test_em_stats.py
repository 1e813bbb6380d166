"""EM on sufficient statistics, on its own: the same fixed point as scikit-learn's
GaussianMixture from the same start, the same result however the rows are cut, and
covariances without the cancellation of E[xx^T] - mu mu^T."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gencli.density.families import gmm
from gencli.fitting import em_stats

COVARIANCES = ("full", "tied", "diag", "spherical")


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack(
        [
            rng.normal(0.0, 1.0, (400, 3)),
            rng.normal(3.0, 0.5, (250, 3)) + np.array([0.0, 1.0, 2.0]),
            rng.normal(-2.0, 2.0, (150, 3)),
        ]
    )


def _start(Z: np.ndarray, covariance: str, k: int = 3) -> tuple[dict, np.ndarray]:
    """Rough parameters (two sklearn EM steps) and sklearn's precisions for them."""
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = GaussianMixture(k, covariance_type=covariance, max_iter=2, random_state=1).fit(Z)
    precisions = g.precisions_
    covariances = np.linalg.inv(precisions) if covariance in ("full", "tied") else 1.0 / precisions
    params = {
        "covariance_type": covariance,
        "weights": g.weights_,
        "means": g.means_,
        "covariances": covariances,
    }
    return params, precisions


def _run(parts: list[np.ndarray], params: dict, tol: float, max_iter: int = 5000):
    run = em_stats.EmRun(dict(params), reg_covar=1e-6, tol=tol, max_iter=max_iter)
    while not run.done:
        run.step(em_stats.total([em_stats.statistics(P, run.params) for P in parts]))
    return run


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_reaches_scikit_learns_fixed_point_from_the_same_start(covariance: str) -> None:
    from sklearn.mixture import GaussianMixture

    Z = _data()
    params, precisions = _start(Z, covariance)
    reference = GaussianMixture(
        3,
        covariance_type=covariance,
        weights_init=params["weights"],
        means_init=params["means"],
        precisions_init=precisions,
        tol=1e-10,
        max_iter=5000,
    ).fit(Z)
    run = _run(np.array_split(Z, 5), params, tol=1e-10)
    ours = gmm.log_density(run.params, Z).mean()
    assert run.converged
    assert abs(ours - reference.score(Z)) < 1e-6
    assert run.n_iter == reference.n_iter_
    np.testing.assert_allclose(run.params["means"], reference.means_, atol=1e-6)
    np.testing.assert_allclose(run.params["covariances"], reference.covariances_, atol=1e-6)
    np.testing.assert_allclose(run.params["weights"], reference.weights_, atol=1e-6)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_the_result_does_not_depend_on_how_the_rows_are_cut(covariance: str) -> None:
    Z = _data(1)
    params, _ = _start(Z, covariance)
    whole = _run([Z], params, tol=1e-8)
    cut = _run([Z[:1], *np.array_split(Z[1:], 13)], params, tol=1e-8)
    assert whole.n_iter == cut.n_iter
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(cut.params[key], whole.params[key], rtol=1e-9, atol=1e-12)


def test_statistics_are_the_direct_weighted_sums() -> None:
    """Against a slow direct computation with scipy's densities."""
    Z = _data(2)[::7]
    params, _ = _start(_data(2), "full")
    stats = em_stats.statistics(Z, params)
    log_p = np.column_stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(Z)
            for w, m, c in zip(
                params["weights"], params["means"], params["covariances"], strict=True
            )
        ]
    )
    resp = np.exp(log_p - logsumexp(log_p, axis=1, keepdims=True))
    assert stats.log_likelihood == pytest.approx(logsumexp(log_p, axis=1).sum(), rel=1e-12)
    np.testing.assert_allclose(stats.weight, resp.sum(axis=0), rtol=1e-12)
    for k in range(3):
        diff = Z - params["means"][k]
        np.testing.assert_allclose(stats.offset[k], resp[:, k] @ diff, rtol=1e-10, atol=1e-10)
        direct = (diff * resp[:, k : k + 1]).T @ diff
        np.testing.assert_allclose(stats.scatter[k], direct, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_covariances_keep_their_digits_far_from_the_origin(covariance: str) -> None:
    """Rows near 1e8 with unit spread: E[xx^T] - mu mu^T would lose every digit (1e16 - 1e16);
    the scatter about the current centre shifted to the new mean does not."""
    rng = np.random.default_rng(3)
    Z = rng.normal(0.0, 1.0, (2000, 2)) * [1.0, 0.5] + 1e8
    centre = np.array([[1e8 + 0.3, 1e8 - 0.2]])  # not the mean: the shift must be exact
    stats = em_stats.hard_statistics(Z, centre, covariance)
    params = em_stats.m_step(stats, centre, covariance, reg_covar=0.0)
    exact = np.cov((Z - 1e8).T, ddof=0)  # two-pass, in small numbers
    expected = {
        "full": exact[None],
        "tied": exact,
        "diag": np.diag(exact)[None],
        "spherical": np.array([np.diag(exact).mean()]),
    }[covariance]
    np.testing.assert_allclose(params["covariances"], expected, rtol=1e-6)
    np.testing.assert_allclose(params["means"][0] - 1e8, (Z - 1e8).mean(axis=0), atol=1e-6)


def test_rows_beyond_every_component_do_not_underflow() -> None:
    """Raw densities of rows 40 standard deviations out are 0.0; in log space the
    responsibilities still sum to one and the log-likelihood is finite."""
    Z = np.array([[40.0, -40.0], [0.0, 0.0], [-45.0, 45.0]])
    params = {
        "covariance_type": "diag",
        "weights": np.array([0.5, 0.5]),
        "means": np.array([[0.0, 0.0], [1.0, 1.0]]),
        "covariances": np.ones((2, 2)),
    }
    with np.errstate(under="raise"):
        stats = em_stats.statistics(Z, params)
    assert np.isfinite(stats.log_likelihood)
    assert stats.weight.sum() == pytest.approx(3.0, abs=1e-12)
    assert np.all(np.isfinite(stats.scatter))


def test_a_covariance_that_collapses_is_reported_as_singular() -> None:
    Z = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 1.0]])  # first three on a line
    centres = np.array([[1.0, 1.0], [5.0, 1.0]])
    stats = em_stats.hard_statistics(Z, centres, "full")
    with pytest.raises(em_stats.SingularCovariance):
        em_stats.m_step(stats, centres, "full", reg_covar=0.0)
    params = em_stats.m_step(stats, centres, "full", reg_covar=1e-3)  # the repair
    assert np.all(np.linalg.eigvalsh(params["covariances"]) > 0)


def test_rows_go_to_their_nearest_centre_far_from_the_origin() -> None:
    """Unstandardized rows near 1e8: |z|^2 - 2 z.c + |c|^2 loses the differences (1e16 each);
    distances taken from z - c do not."""
    rng = np.random.default_rng(4)
    Z = 1e8 + rng.normal(0.0, 1.0, (1000, 2))
    centres = np.array([[1e8 - 0.5, 1e8], [1e8 + 0.5, 1e8]])
    stats = em_stats.hard_statistics(Z, centres, "diag")
    nearest = np.argmin(((Z[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(stats.weight, np.bincount(nearest, minlength=2))
