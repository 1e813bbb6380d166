"""EM with missing cells latent, against references it did not compute: a slow row-by-row
E-step with scipy's densities and explicit conditional formulas, em_stats and scikit-learn
on complete rows, the known parameters data were drawn from, and numerical integration."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gencli.density.families import gmm
from gencli.errors import FitError
from gencli.fitting import em_missing, em_stats, missing_fit
from gencli.fitting.family_fits import Rows

COVARIANCES = ("full", "tied", "diag", "spherical")
SETTINGS = dict(max_iter=100, n_init=1, tol=1e-3, reg_covar=1e-6, select="bic")

# The mixture the recovery and held-out tests draw from: two correlated 3-D components.
WEIGHTS = np.array([0.4, 0.6])
MEANS = np.array([[0.0, 0.0, 0.0], [2.5, -1.0, 1.5]])
COVS = np.array(
    [
        [[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]],
        [[0.5, -0.2, 0.1], [-0.2, 0.8, 0.3], [0.1, 0.3, 0.6]],
    ]
)


def _draw(n: int, rng: np.random.Generator) -> np.ndarray:
    labels = rng.choice(2, n, p=WEIGHTS)
    noise = rng.standard_normal((n, 3))
    out = np.empty((n, 3))
    for k in range(2):
        rows = labels == k
        out[rows] = MEANS[k] + noise[rows] @ np.linalg.cholesky(COVS[k]).T
    return out


def _remove(X: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``X`` with each cell missing with probability ``fraction`` (completely at random);
    rows left with no cell are dropped, as the caller does."""
    out = X.copy()
    out[rng.random(X.shape) < fraction] = np.nan
    return out[~np.isnan(out).all(axis=1)]


def _params(covariance: str, rng: np.random.Generator, k: int = 3, d: int = 4) -> dict:
    means = rng.normal(0.0, 1.5, (k, d))
    a = rng.normal(size=(k, d, d))
    full = a @ np.transpose(a, (0, 2, 1)) / d + 0.3 * np.eye(d)
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.3, 2.0, (k, d)),
        "spherical": rng.uniform(0.3, 2.0, k),
    }[covariance]
    weights = rng.dirichlet(np.ones(k) * 3)
    return {
        "covariance_type": covariance,
        "weights": weights,
        "means": means,
        "covariances": covariances,
    }


def _component_cov(params: dict, j: int) -> np.ndarray:
    c, d = np.asarray(params["covariances"]), params["means"].shape[1]
    return {
        "full": lambda: c[j],
        "tied": lambda: c,
        "diag": lambda: np.diag(c[j]),
        "spherical": lambda: c[j] * np.eye(d),
    }[params["covariance_type"]]()


def _slow_statistics(Z: np.ndarray, params: dict) -> tuple:
    """Row by row: scipy's marginal density of the observed cells, and the textbook
    conditional mean and covariance of the missing ones with explicit inverses."""
    kind = params["covariance_type"]
    k, d = params["means"].shape
    weight, offset = np.zeros(k), np.zeros((k, d))
    scatter = np.zeros((k, d, d))
    total = 0.0
    for z in Z:
        o, m = np.flatnonzero(~np.isnan(z)), np.flatnonzero(np.isnan(z))
        log_p, filled, conditional = [], [], []
        for j in range(k):
            mu, s = params["means"][j], _component_cov(params, j)
            inv_oo = np.linalg.inv(s[np.ix_(o, o)])
            log_p.append(
                math.log(params["weights"][j])
                + multivariate_normal(mu[o], s[np.ix_(o, o)]).logpdf(z[o])
            )
            zhat = z.copy()
            zhat[m] = mu[m] + s[np.ix_(m, o)] @ inv_oo @ (z[o] - mu[o])
            c = np.zeros((d, d))
            c[np.ix_(m, m)] = s[np.ix_(m, m)] - s[np.ix_(m, o)] @ inv_oo @ s[np.ix_(o, m)]
            filled.append(zhat)
            conditional.append(c)
        row = logsumexp(log_p)
        total += row
        resp = np.exp(np.array(log_p) - row)
        for j in range(k):
            diff = filled[j] - params["means"][j]
            weight[j] += resp[j]
            offset[j] += resp[j] * diff
            scatter[j] += resp[j] * (np.outer(diff, diff) + conditional[j])
    if kind == "tied":
        scatter = scatter.sum(axis=0)
    elif kind in ("diag", "spherical"):
        scatter = np.diagonal(scatter, axis1=1, axis2=2)
    return weight, offset, scatter, total


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_statistics_are_the_slow_direct_conditional_sums(covariance: str) -> None:
    rng = np.random.default_rng(1)
    params = _params(covariance, rng)
    Z = rng.normal(0.0, 1.5, (80, 4))
    Z[rng.random(Z.shape) < 0.35] = np.nan
    Z[0] = [np.nan, np.nan, np.nan, 0.7]  # one observed cell
    Z[1] = rng.normal(size=4)  # complete
    Z = Z[~np.isnan(Z).all(axis=1)]
    stats = em_missing.statistics(Z, params)
    weight, offset, scatter, total = _slow_statistics(Z, params)
    assert stats.rows == Z.shape[0]
    assert stats.log_likelihood == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(stats.weight, weight, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.offset, offset, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.scatter, scatter, rtol=1e-10, atol=1e-10)


def test_blocks_add_up_to_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    params = _params("full", rng)
    Z = _remove(rng.normal(size=(500, 4)), 0.3, rng)
    whole = em_missing.statistics(Z, params)
    monkeypatch.setattr(em_missing, "BLOCK_ROWS", 37)
    cut = em_missing.statistics(Z, params)
    np.testing.assert_allclose(cut.scatter, whole.scatter, rtol=1e-12)
    assert cut.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)


def _many_patterns(rng: np.random.Generator, n: int = 400, d: int = 7) -> np.ndarray:
    """Rows missing 0..d-1 cells in ~100 distinct patterns, most of them shared by few rows."""
    Z = rng.normal(0.0, 1.5, (n, d))
    Z[rng.random(Z.shape) < rng.uniform(0.05, 0.7, (n, 1))] = np.nan
    Z[0, 1:] = np.nan  # one observed cell
    return Z[~np.isnan(Z).all(axis=1)]


_SLOW: dict[str, tuple] = {}  # the row-by-row reference per covariance type


@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("path", ["one batch, stacked products", "batches, column loop"])
def test_batched_statistics_over_many_patterns_and_blocks_are_the_slow_sums(
    covariance: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The E-step's batched paths (patterns of every block factorized together, padded to a
    common width; the fill as stacked products or a column at a time) against the row-by-row
    reference, on rows cut into blocks that share their patterns."""
    rng = np.random.default_rng(21)
    params = _params(covariance, rng, k=3, d=7)
    Z = _many_patterns(rng)
    monkeypatch.setattr(em_missing, "BLOCK_ROWS", 53)
    if path.startswith("batches"):
        monkeypatch.setattr(em_missing, "BATCH_SLACK", 0)
        monkeypatch.setattr(em_missing, "BLOCK_CELLS", 1)
    blocks = em_missing.prepare(Z, grouped=covariance in ("full", "tied"), components=3)
    assert len(blocks) == 8
    if covariance in ("full", "tied"):
        assert all(block.batches is blocks[0].batches for block in blocks)  # one table
        assert sum(len(batch.kinds) for batch in blocks[0].batches) > 80
        one_batch = len(blocks[0].batches) == 1
        assert one_batch == path.startswith("one")
    stats = em_missing.statistics(blocks, params)
    if covariance not in _SLOW:  # the same rows and parameters for both paths: once
        _SLOW[covariance] = _slow_statistics(Z, params)
    weight, offset, scatter, total = _SLOW[covariance]
    assert stats.log_likelihood == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(stats.weight, weight, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.offset, offset, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.scatter, scatter, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_observed_log_density_over_many_patterns_is_scipys(covariance: str) -> None:
    """Every pattern's marginal, in any memory order, with a row with nothing observed (0)
    and one component nearly singular (variances 1e-6 .. 3, as reg_covar leaves a component
    on a few rows): no cancellation in the quadratic form."""
    rng = np.random.default_rng(22)
    params = _params(covariance, rng, k=3, d=7)
    q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    squeezed = (q * np.geomspace(1e-6, 3.0, 7)) @ q.T
    if covariance == "tied":
        params["covariances"] = squeezed
    elif covariance == "full":
        params["covariances"][1] = squeezed
    Z = _many_patterns(rng, n=300)
    Z[5] = np.nan
    got = em_missing.observed_log_density(params, np.asfortranarray(Z))
    np.testing.assert_array_equal(got, em_missing.observed_log_density(params, Z))
    assert got[5] == pytest.approx(0.0, abs=1e-15)  # log of the summed weights
    for z, value in zip(Z, got, strict=True):
        o = np.flatnonzero(~np.isnan(z))
        if not o.size:
            continue
        densities = [
            math.log(w)
            + multivariate_normal(
                params["means"][j][o], _component_cov(params, j)[np.ix_(o, o)]
            ).logpdf(z[o])
            for j, w in enumerate(params["weights"])
        ]
        assert value == pytest.approx(logsumexp(densities), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_complete_rows_give_em_stats_and_scikit_learns_run(covariance: str) -> None:
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(3)
    Z = _draw(600, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = GaussianMixture(2, covariance_type=covariance, max_iter=2, random_state=1).fit(Z)
    start = {
        "covariance_type": covariance,
        "weights": g.weights_,
        "means": g.means_,
        "covariances": g.covariances_,
    }
    ours, theirs = em_missing.statistics(Z, start), em_stats.statistics(Z, start)
    assert ours.log_likelihood == pytest.approx(theirs.log_likelihood, rel=1e-12)
    for name in ("weight", "offset", "scatter"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), atol=1e-12 * len(Z))

    run = em_missing.run(Z, start, covariance, reg_covar=1e-6, tol=1e-10, max_iter=5000)
    plain = em_stats.EmRun(dict(start), reg_covar=1e-6, tol=1e-10, max_iter=5000)
    while not plain.done:
        plain.step(em_stats.statistics(Z, plain.params))
    reference = GaussianMixture(
        2,
        covariance_type=covariance,
        weights_init=g.weights_,
        means_init=g.means_,
        precisions_init=g.precisions_,
        tol=1e-10,
        max_iter=5000,
    ).fit(Z)
    assert run.converged and run.n_iter == plain.n_iter == reference.n_iter_
    for key, attribute in (
        ("weights", "weights_"),
        ("means", "means_"),
        ("covariances", "covariances_"),
    ):
        np.testing.assert_allclose(run.params[key], plain.params[key], atol=1e-8)
        np.testing.assert_allclose(run.params[key], getattr(reference, attribute), atol=1e-8)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_complete_rows_give_the_ordinary_fit(covariance: str) -> None:
    """The whole path (k-means start from the seed, n_init runs) is gmm.fit's."""
    Z = _draw(800, np.random.default_rng(4))
    ours = missing_fit.fit_mixture(Z, components=3, covariance=covariance, n_init=2, seed=5)
    with gmm.em_session():
        theirs = gmm.fit(Z, components=3, covariance=covariance, n_init=2, seed=5)
    np.testing.assert_allclose(ours.params["means"], theirs.means_, atol=1e-8)
    np.testing.assert_allclose(ours.params["covariances"], theirs.covariances_, atol=1e-8)
    assert ours.run.n_iter == theirs.n_iter_


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_observed_data_log_likelihood_never_decreases(covariance: str) -> None:
    rng = np.random.default_rng(6)
    Z = _remove(_draw(1500, rng), 0.3, rng)
    assert np.isnan(Z).mean() > 0.25
    start = missing_fit.initial_params(Z, 3, covariance, 0.0, np.random.RandomState(0))
    run = em_missing.run(Z, start, covariance, reg_covar=0.0, tol=0.0, max_iter=40)
    steps = np.diff(run.history)
    assert run.n_iter == 40 and steps.min() > -1e-12
    assert run.history[-1] - run.history[0] > 0.01  # it did climb


def _errors(params: dict) -> tuple[float, float]:
    """Largest error of the means and of the covariances, components matched by mean."""
    order = np.argsort(params["means"][:, 0])
    means, covs = params["means"][order], params["covariances"][order]
    return float(np.abs(means - MEANS).max()), float(np.abs(covs - COVS).max())


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.4])
def test_estimates_approach_the_truth_as_rows_grow(fraction: float) -> None:
    rng = np.random.default_rng(7)
    errors = []
    for n in (2_000, 20_000):
        Z = _remove(_draw(n, rng), fraction, rng)
        fit = missing_fit.fit_mixture(Z, components=2, covariance="full", tol=1e-6, seed=0)
        assert fit.run.converged
        errors.append(_errors(fit.params))
    (small_mean, small_cov), (big_mean, big_cov) = errors
    assert big_mean < small_mean and big_cov < small_cov
    assert big_mean < 0.04 and big_cov < 0.05


def _bic_choice(X: np.ndarray) -> dict:
    """scikit-learn's GaussianMixture for K = 1..4 (full), the lowest BIC: what the
    ordinary fit does with rows it was given complete."""
    from sklearn.mixture import GaussianMixture

    fits = [GaussianMixture(k, random_state=0).fit(X) for k in range(1, 5)]
    best = min(fits, key=lambda g: g.bic(X))
    return {
        "covariance_type": "full",
        "weights": best.weights_,
        "means": best.means_,
        "covariances": best.covariances_,
    }


def test_heldout_likelihood_beats_dropping_rows_and_mean_filling() -> None:
    """600 training rows with 40% of cells missing at random (143 complete); the same 5,000
    held-out rows (with their gaps) score all three fits by their observed cells' density.
    Seeds 8..15 give EM - dropna 0.013..0.057 and EM - mean fill 0.39..0.62 nats/row."""
    rng = np.random.default_rng(8)
    train = _remove(_draw(600, rng), 0.4, rng)
    valid = _remove(_draw(5_000, rng), 0.4, rng)
    settings = SETTINGS | {"components": "1..4", "covariance": "full"}
    rows = Rows(train, train, valid, 0.0, False, 0, 1, None)
    em = missing_fit.fit_gmm_missing(rows, settings)
    dropped = train[~np.isnan(train).any(axis=1)]
    filled = np.where(np.isnan(train), np.nanmean(train, axis=0), train)

    def heldout(params: dict) -> float:
        return float(np.mean(em_missing.observed_log_density(params, valid)))

    scores = {"em": float(np.mean(em["heldout_log_density"])), "em_params": heldout(em["params"])}
    for name, rows_used in (("dropna", dropped), ("mean_fill", filled)):
        scores[name] = heldout(_bic_choice(rows_used))
    assert scores["em"] == pytest.approx(scores["em_params"], abs=1e-12)
    assert scores["em"] > scores["dropna"] + 0.005
    assert scores["em"] > scores["mean_fill"] + 0.3


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_observed_log_density_is_scipys_marginal(covariance: str) -> None:
    rng = np.random.default_rng(9)
    params = _params(covariance, rng, k=1, d=5)
    params["weights"] = np.ones(1)
    Z = rng.normal(size=(60, 5))
    Z[rng.random(Z.shape) < 0.4] = np.nan
    Z[0] = np.nan
    got = em_missing.observed_log_density(params, Z)
    s, mu = _component_cov(params, 0), params["means"][0]
    assert got[0] == 0.0  # no observed cell: the empty marginal
    for z, value in zip(Z[1:], got[1:], strict=True):
        o = np.flatnonzero(~np.isnan(z))
        expected = multivariate_normal(mu[o], s[np.ix_(o, o)]).logpdf(z[o]) if o.size else 0.0
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_observed_log_density_integrates_over_what_is_missing() -> None:
    """A 2-D mixture's density of (x, gap) is its joint integrated over the gap, and
    integrates to 1 over x."""
    params = _params("full", np.random.default_rng(10), k=2, d=2)

    def joint(y: float, x: float) -> float:
        return float(np.exp(gmm.log_density(params, np.array([[x, y]]))[0]))

    def marginal(x: float) -> float:
        return float(np.exp(em_missing.observed_log_density(params, np.array([[x, np.nan]]))[0]))

    for x in (-1.3, 0.2, 2.1):
        assert marginal(x) == pytest.approx(integrate.quad(joint, -30, 30, args=(x,))[0], rel=1e-8)
    assert integrate.quad(marginal, -40, 40, limit=200)[0] == pytest.approx(1.0, abs=1e-8)


def test_heldout_scores_count_only_the_observed_columns_scales() -> None:
    """Scores in data units: the fit on standardized rows, its held-out rows scored by
    scipy on the observed cells of the mixture mapped back to data units."""
    rng = np.random.default_rng(11)
    shift, scale = np.array([5.0, -2.0, 100.0]), np.array([3.0, 0.5, 40.0])
    X = _remove(_draw(1_500, rng) * scale + shift, 0.3, rng)
    Z = (X - shift) / scale
    log_scale = np.log(scale)
    rows = Rows(Z, Z[:1000], Z[1000:], -float(log_scale.sum()), False, 0, 1, None)
    settings = SETTINGS | {"components": 2, "covariance": "full", "log_scale": log_scale}
    outcome = missing_fit.fit_gmm_missing(rows, settings)
    p = outcome["params"]
    for x, value in zip(X[1000:1040], outcome["heldout_log_density"][:40], strict=True):
        o = np.flatnonzero(~np.isnan(x))
        densities = [
            w
            * multivariate_normal(
                (m * scale + shift)[o], (c * np.outer(scale, scale))[np.ix_(o, o)]
            ).pdf(x[o])
            for w, m, c in zip(p["weights"], p["means"], p["covariances"], strict=True)
        ]
        assert value == pytest.approx(math.log(sum(densities)), rel=1e-10)
    assert outcome["selection"] is None and not outcome["refitted"]
    assert outcome["estimator"].means_.shape == (2, 3)


def test_refit_on_every_row_and_selection_table() -> None:
    rng = np.random.default_rng(12)
    Z = _remove(_draw(1_200, rng), 0.2, rng)
    seen: list[dict] = []
    rows = Rows(Z, Z[:900], Z[900:], 0.0, True, 0, 1, seen.append)
    settings = SETTINGS | {"components": "1..3", "covariance": "auto", "select": "heldout"}
    outcome = missing_fit.fit_gmm_missing(rows, settings)
    table = outcome["selection"]["candidates"]
    assert len(table) == len(seen) == 12 and sum(r["chosen"] for r in table) == 1
    best = max(table, key=lambda r: r["heldout_mean_log_likelihood"])
    assert best["chosen"]
    assert outcome["refitted"] and len(outcome["train_log_density"]) == len(Z)
    assert outcome["params"]["weights"].size == best["components"]
    assert outcome["params"]["covariance_type"] == best["covariance"]


def test_statistics_refuse_a_row_with_no_observed_cell() -> None:
    params = _params("full", np.random.default_rng(13), k=1, d=2)
    with pytest.raises(ValueError, match="no observed cell"):
        em_missing.statistics(np.array([[0.0, 1.0], [np.nan, np.nan]]), params)


@pytest.mark.parametrize(
    ("hole", "message"),
    [("row", "have no value in any column"), ("column", "column 2 has no value")],
)
def test_fit_refuses_rows_or_columns_with_nothing_observed(hole: str, message: str) -> None:
    Z = np.random.default_rng(14).normal(size=(50, 3))
    if hole == "row":
        Z[7] = np.nan
    else:
        Z[:, 1] = np.nan
    rows = Rows(Z, Z, None, 0.0, False, 0, 1, None)
    with pytest.raises(FitError, match=message):
        missing_fit.fit_gmm_missing(rows, SETTINGS | {"components": 1, "covariance": "full"})
