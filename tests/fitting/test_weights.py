"""Row weights in the mixture fits: integer weights against rows repeated (scikit-learn on
the repeated rows from the same start), the weighted EM against a slow direct weighted EM,
equal weights against scikit-learn's own unweighted fit, and the weighted figures of the
selection table against closed forms."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gencli.density.families import gaussians, gmm
from gencli.fitting import em_stats, shrunk, weighted_gmm
from gencli.fitting.family_fits import Rows, fit_gmm, fit_shrunk

COVARIANCES = ("full", "tied", "diag", "spherical")
EPS = 10.0 * np.finfo(np.float64).eps  # scikit-learn's addition to every component's count


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """As gencli fits: one BLAS/OpenMP thread (k-means' threads only fight on small data)."""
    with gmm.em_session():
        yield


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack(
        [
            rng.normal(0.0, 1.0, (120, 3)),
            rng.normal(3.0, 0.5, (80, 3)) + np.array([0.0, 1.0, 2.0]),
            rng.normal(-2.0, 2.0, (60, 3)),
        ]
    )


def _start(covariance: str) -> tuple[dict, np.ndarray]:
    """A fixed, deliberately rough start and the precisions scikit-learn takes for it."""
    means = np.array([[0.5, 0.0, 0.0], [2.0, 3.0, 4.0], [-1.0, -2.0, -1.0]])
    weights = np.array([0.5, 0.3, 0.2])
    full = np.array([np.eye(3) * s for s in (1.5, 0.8, 3.0)])
    full[0, 0, 1] = full[0, 1, 0] = 0.3
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": np.array([[1.5, 1.0, 2.0], [0.8, 0.5, 0.6], [3.0, 4.0, 2.5]]),
        "spherical": np.array([1.5, 0.8, 3.0]),
    }[covariance]
    square = covariance in ("full", "tied")
    precisions = np.linalg.inv(covariances) if square else 1.0 / covariances
    params = {"covariance_type": covariance, "weights": weights, "means": means}
    return params | {"covariances": covariances}, precisions


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_integer_weights_are_the_rows_repeated(covariance: str) -> None:
    """From the same start, the weighted EM is scikit-learn's EM on the repeated rows."""
    from sklearn.mixture import GaussianMixture

    Z = _data()
    counts = np.random.default_rng(1).integers(1, 5, size=Z.shape[0])
    params, precisions = _start(covariance)
    reference = GaussianMixture(
        3,
        covariance_type=covariance,
        weights_init=params["weights"],
        means_init=params["means"],
        precisions_init=precisions,
        tol=1e-6,
        max_iter=500,
    ).fit(np.repeat(Z, counts, axis=0))
    run = weighted_gmm.run_em(Z, counts.astype(float), params, tol=1e-6, max_iter=500)
    assert run.converged and run.n_iter == reference.n_iter_
    assert run.lower_bound == pytest.approx(reference.lower_bound_, abs=1e-10)
    np.testing.assert_allclose(run.params["weights"], reference.weights_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(run.params["means"], reference.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        run.params["covariances"], reference.covariances_, rtol=0, atol=1e-10
    )


def test_whole_fit_with_integer_weights_reaches_the_repeated_rows_optimum() -> None:
    """With repairs and the weighted k-means start (which draws rows, so it is not the
    repeated rows' start): on well-separated clusters both reach the one optimum."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(11)
    Z = np.vstack([rng.normal(c, 0.5, (60, 2)) for c in ((0, 0), (6, 0), (0, 6))])
    counts = rng.integers(1, 5, size=Z.shape[0])
    options = dict(components=3, covariance="full", tol=1e-10, max_iter=1000, seed=0)
    ours = weighted_gmm.fit(Z, counts.astype(float), **options)
    reference = GaussianMixture(3, tol=1e-10, max_iter=1000, random_state=0)
    reference.fit(np.repeat(Z, counts, axis=0))
    order = np.argsort(ours.means_ @ [1.0, 2.0])
    ref_order = np.argsort(reference.means_ @ [1.0, 2.0])
    np.testing.assert_allclose(ours.means_[order], reference.means_[ref_order], atol=1e-6)
    np.testing.assert_allclose(
        ours.covariances_[order], reference.covariances_[ref_order], atol=1e-6
    )
    np.testing.assert_allclose(ours.weights_[order], reference.weights_[ref_order], atol=1e-6)


def test_the_k_means_start_is_weighted() -> None:
    """Rows 0..9 in 1-D, row 0 weighing 1000: weighted Lloyd iterations end at
    {0..3} | {4..9} from any two starting centres (unweighted: {0..4} | {5..9}); the
    start's means and weights are those of that split, each row counting its weight."""
    Z = np.arange(10.0)[:, None]
    w = np.ones(10)
    w[0] = 1000.0
    for seed in range(3):
        start = weighted_gmm.initial_params(Z, w, 2, "diag", 1e-6, np.random.RandomState(seed))
        np.testing.assert_allclose(np.sort(start["means"][:, 0]), [6.0 / 1003.0, 6.5], rtol=1e-12)
        np.testing.assert_allclose(np.sort(start["weights"]), [6.0 / 1009.0, 1003.0 / 1009.0])


def test_weighted_fits_are_repaired_as_unweighted_ones_are() -> None:
    """A cluster of identical rows: singular at reg_covar 0 (retried at 1e-6), collapsed
    at the default (refitted at 1e-3, the unrepaired fit handed back)."""
    rng = np.random.default_rng(12)
    Z = np.vstack([np.full((30, 2), 5.0), rng.normal(size=(100, 2))])
    w = rng.uniform(0.5, 2.0, len(Z))
    fixes: list[str] = []
    fit = weighted_gmm.fit(Z, w, components=2, reg_covar=0.0, repair_collapse=False, fixes=fixes)
    assert fit.reg_covar == 1e-6 and "singular" in fixes[0]
    fixes, twins = [], []
    fit = weighted_gmm.fit(Z, w, components=2, fixes=fixes, unrepaired=twins)
    assert fit.reg_covar == 1e-3 and "collapsed" in fixes[0] and len(twins) == 1


def _direct_em_step(Z: np.ndarray, w: np.ndarray, p: dict, reg: float) -> tuple[dict, float]:
    """One weighted EM step written out: scipy's densities, then the textbook M-step."""
    kind, k, d = p["covariance_type"], len(p["weights"]), Z.shape[1]

    def cov(j: int) -> np.ndarray:
        c = p["covariances"]
        return {"full": c[j] if kind == "full" else c, "tied": c}.get(
            kind, np.diag(c[j]) if kind == "diag" else np.eye(d) * c[j]
        )

    log_p = np.column_stack(
        [
            np.log(p["weights"][j]) + multivariate_normal(p["means"][j], cov(j)).logpdf(Z)
            for j in range(k)
        ]
    )
    row_ll = logsumexp(log_p, axis=1)
    r = np.exp(log_p - row_ll[:, None]) * w[:, None]
    counts = r.sum(axis=0) + EPS
    means = (r.T @ Z) / counts[:, None]
    scatter = [(Z - means[j]).T @ ((Z - means[j]) * r[:, j : j + 1]) for j in range(k)]
    if kind == "full":
        covariances = np.array(
            [s / n + reg * np.eye(d) for s, n in zip(scatter, counts, strict=True)]
        )
    elif kind == "tied":
        covariances = sum(scatter) / counts.sum() + reg * np.eye(d)
    else:
        diag = np.array([np.diag(s) / n + reg for s, n in zip(scatter, counts, strict=True)])
        covariances = diag if kind == "diag" else diag.mean(axis=1)
    new = {"covariance_type": kind, "weights": counts / counts.sum(), "means": means}
    return new | {"covariances": covariances}, float(w @ row_ll / w.sum())


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_weighted_em_is_the_direct_weighted_em(covariance: str) -> None:
    Z = _data(2)
    w = np.random.default_rng(3).exponential(size=Z.shape[0])
    params, _ = _start(covariance)
    run = weighted_gmm.run_em(Z, w, params, tol=0.0, max_iter=25)  # tol 0: all 25 steps
    direct, history = dict(params), []
    for _ in range(25):
        direct, mean = _direct_em_step(Z, w, direct, 1e-6)
        history.append(mean)
    np.testing.assert_allclose(run.history, history, rtol=0, atol=1e-10)
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(run.params[key], direct[key], rtol=0, atol=1e-9)
    # ... and where it ends, the direct weighted EM stays: the same fixed point.
    fixed = weighted_gmm.run_em(Z, w, params, tol=0.0, max_iter=200)
    again, _ = _direct_em_step(Z, w, fixed.params, 1e-6)
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(again[key], fixed.params[key], rtol=0, atol=1e-10)


def test_weighted_statistics_add_up_over_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    Z = _data(4)
    w = np.random.default_rng(4).uniform(0.1, 3.0, Z.shape[0])
    params, _ = _start("full")
    whole = em_stats.statistics(Z, params, w)
    monkeypatch.setattr(gaussians, "block_rows", lambda components, columns: 37)
    blocks = em_stats.statistics(Z, params, w)
    assert blocks.rows == pytest.approx(w.sum(), rel=1e-14)
    assert whole.rows == pytest.approx(w.sum(), rel=1e-14)
    assert blocks.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(blocks.scatter, whole.scatter, rtol=1e-12)


@pytest.mark.parametrize(
    ("covariance", "c"), [("full", 0.37), ("tied", 5.0), ("diag", 1.0), ("spherical", 0.37)]
)
def test_equal_weights_give_scikit_learns_unweighted_fit(covariance: str, c: float) -> None:
    """Weighted k-means start, n_init starts from one random state, the best kept: the
    whole weighted path with equal weights is scikit-learn's fit, for any weight."""
    Z = _data(5)
    options = dict(components=3, covariance=covariance, seed=7, n_init=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = gmm.fit(Z, **options)
        weighted = weighted_gmm.fit(Z, np.full(Z.shape[0], c), **options)
    assert weighted.n_iter_ == plain.n_iter_ and weighted.converged_ == plain.converged_
    assert weighted.lower_bound_ == pytest.approx(plain.lower_bound_, abs=1e-10)
    for attribute in ("weights_", "means_", "covariances_"):
        got, expected = getattr(weighted, attribute), getattr(plain, attribute)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_no_weights_is_scikit_learn_itself() -> None:
    """weights=None runs scikit-learn's GaussianMixture, bit for bit."""
    from sklearn.mixture import GaussianMixture

    Z = _data(6)
    ours = weighted_gmm.fit(Z, None, components=3, covariance="full", seed=2)
    theirs = GaussianMixture(3, covariance_type="full", random_state=2).fit(Z)
    assert type(ours) is GaussianMixture
    assert np.array_equal(ours.means_, theirs.means_)
    assert np.array_equal(ours.covariances_, theirs.covariances_)


def _rows(Z: np.ndarray, w: np.ndarray | None, n_train: int) -> Rows:
    train, valid = Z[:n_train], Z[n_train:]
    weights = (
        {} if w is None else dict(weights=w, train_weights=w[:n_train], valid_weights=w[n_train:])
    )
    return Rows(Z, train, valid, -0.25, False, 0, 1, None, **weights)


GMM_SETTINGS = dict(select="bic", max_iter=100, n_init=1, tol=1e-3, reg_covar=1e-6)


def test_the_selection_table_is_weighted() -> None:
    """One component, every covariance type: each candidate is the fit to the repeated
    rows, its mean log-likelihood theirs, and BIC / AIC use n_eff (closed forms)."""
    from sklearn.mixture import GaussianMixture

    Z = _data(7)
    counts = np.random.default_rng(7).integers(1, 6, size=Z.shape[0]).astype(float)
    n_train = 200
    settings = GMM_SETTINGS | {"components": "1", "covariance": "auto", "select": "heldout"}
    outcome = fit_gmm(_rows(Z, counts, n_train), settings)
    train, w = Z[:n_train], counts[:n_train]
    repeated = np.repeat(train, w.astype(int), axis=0)
    valid_repeated = np.repeat(Z[n_train:], counts[n_train:].astype(int), axis=0)
    n_eff = w.sum() ** 2 / (w**2).sum()
    for record in outcome["selection"]["candidates"]:
        kind = record["covariance"]
        reference = GaussianMixture(1, covariance_type=kind, random_state=0).fit(repeated)
        mean = reference.score(repeated) - 0.25
        p = record["parameters"]
        assert record["train_mean_log_likelihood"] == pytest.approx(mean, abs=1e-9)
        assert record["bic"] == pytest.approx(-2 * n_eff * mean + p * math.log(n_eff), abs=1e-7)
        assert record["aic"] == pytest.approx(-2 * n_eff * mean + 2 * p, abs=1e-7)
        held = reference.score(valid_repeated) - 0.25
        assert record["heldout_mean_log_likelihood"] == pytest.approx(held, abs=1e-9)


@pytest.mark.parametrize("c", [0.5, 3.0])
def test_equal_weights_give_the_unweighted_search(c: float) -> None:
    Z = _data(8)
    settings = GMM_SETTINGS | {"components": "1..3", "covariance": "auto"}
    plain = fit_gmm(_rows(Z, None, 200), settings)
    weighted = fit_gmm(_rows(Z, np.full(Z.shape[0], c), 200), settings)
    for a, b in zip(
        plain["selection"]["candidates"], weighted["selection"]["candidates"], strict=True
    ):
        assert a["chosen"] == b["chosen"]
        for key in ("bic", "aic", "train_mean_log_likelihood", "heldout_mean_log_likelihood"):
            assert b[key] == pytest.approx(a[key], rel=1e-10), key
    np.testing.assert_allclose(
        weighted["heldout_log_density"], plain["heldout_log_density"], atol=1e-9
    )


def test_shrunk_gaussian_weights() -> None:
    """Equal weights: scikit-learn's OAS; integer weights: the repeated rows' mean and
    empirical covariance, shrunk by OAS's formula with n_eff for n."""
    from sklearn.covariance import empirical_covariance, oas

    Z = _data(9)[:40]
    covariance, amount = shrunk.shrunk_covariance(Z, np.full(40, 2.5))
    expected, expected_amount = oas(Z)
    np.testing.assert_allclose(covariance, expected, rtol=1e-12)
    assert amount == pytest.approx(expected_amount, rel=1e-12)
    counts = np.random.default_rng(9).integers(1, 4, size=40).astype(float)
    emp = empirical_covariance(np.repeat(Z, counts.astype(int), axis=0))
    n_eff, d = counts.sum() ** 2 / (counts**2).sum(), 3
    alpha, mu = np.mean(emp**2), np.trace(emp) / d
    s = min((alpha + mu**2) / ((n_eff + 1) * (alpha - mu**2 / d)), 1.0)
    covariance, amount = shrunk.shrunk_covariance(Z, counts)
    assert amount == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(covariance, (1 - s) * emp + s * mu * np.eye(d), rtol=1e-12)
    outcome = fit_shrunk(_rows(Z, counts, 30), {"reg_covar": 1e-6})
    repeated = np.repeat(Z[:30], counts[:30].astype(int), axis=0)
    np.testing.assert_allclose(outcome["estimator"].means_[0], repeated.mean(axis=0), rtol=1e-12)


def test_rows_refuse_weights_that_do_not_line_up() -> None:
    Z = _data()
    with pytest.raises(ValueError, match="aligned"):
        Rows(Z, Z[:100], Z[100:], 0.0, False, 0, 1, None, weights=np.ones(len(Z)))
    rows = Rows(Z, Z, None, 0.0, False, 0, 1, None, weights=np.ones(len(Z)))
    assert rows.train_weights is rows.weights  # no held-out rows: train is every row
