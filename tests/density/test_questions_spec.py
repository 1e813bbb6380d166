"""Black-box specification tests for marginals, conditionals, imputation and prediction
(issue 16).

Every expected number here is computed independently of gencli: Gaussian mixtures with
scipy.stats (multivariate_normal, norm) from the model's parameters taken to data units,
kernel densities by brute-force numerical conditioning of the joint density on a grid,
normalization by numerical integration, samples with KS tests and moment checks, and
component probabilities with scikit-learn's own GaussianMixture.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.integrate import simpson
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

import gencli

KINDS = ["full", "tied", "diag", "spherical"]
NAMES = ["a", "b", "c"]
#: Very different units and offsets per column, so the standardization Jacobian matters.
UNITS = np.array([1000.0, 0.01, 5.0])
OFFSETS = np.array([5.0e4, -3.0, 100.0])


# ----------------------------------------------------------------------------- data, models


def _three_columns() -> pd.DataFrame:
    """Two correlated clusters in three columns of wildly different scales."""
    rng = np.random.default_rng(1)
    n = 300
    base = rng.normal(size=(n, 3))
    mix = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.8]])
    X = np.vstack([base[:150] @ mix.T, base[150:] @ mix.T * 0.5 + [2.0, -1.0, 1.0]])
    return pd.DataFrame(X * UNITS + OFFSETS, columns=NAMES)


def _ring() -> pd.DataFrame:
    """A thin tilted ellipse ring in two columns: '--model auto' picks a rotated kde."""
    rng = np.random.default_rng(1)
    n = 150
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    u = np.column_stack([np.cos(theta), 0.15 * np.sin(theta)]) + 0.03 * rng.normal(size=(n, 2))
    tilt = np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2.0)
    Y = u @ tilt.T
    return pd.DataFrame(Y * np.array([100.0, 0.1]) + np.array([1e3, -2.0]), columns=["u", "v"])


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _three_columns()


@pytest.fixture(scope="module")
def gmms(data: pd.DataFrame) -> dict[str, gencli.DensityModel]:
    return {
        kind: gencli.fit(data, model="gmm", components=2, covariance=kind, seed=0) for kind in KINDS
    }


@pytest.fixture(scope="module")
def kde(data: pd.DataFrame) -> gencli.DensityModel:
    return gencli.fit(data, model="kde", seed=0)


@pytest.fixture(scope="module")
def ring_kde() -> gencli.DensityModel:
    model = gencli.fit(_ring(), model="auto", seed=0)
    # The point of this model: kernels that follow the columns' correlations.
    assert model.family == "kde" and "rotation" in model.params
    return model


# ----------------------------------------------------------------------------- references


def data_components(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Gaussian mixture's weights, means and full covariances in data units."""
    p = model.params
    w = np.asarray(p["weights"], dtype=float)
    mu = np.asarray(p["means"], dtype=float)
    k, d = mu.shape
    cov = np.asarray(p["covariances"], dtype=float)
    kind = p["covariance_type"]
    if kind == "full":
        full = cov
    elif kind == "tied":
        full = np.repeat(cov[None], k, axis=0)
    elif kind == "diag":
        full = np.stack([np.diag(c) for c in cov])
    else:
        full = np.stack([np.eye(d) * c for c in cov])
    s, t = np.asarray(model.scale), np.asarray(model.shift)
    return w / w.sum(), mu * s + t, full * np.outer(s, s)


def kde_components(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A gaussian kernel density as a mixture (weights, centres, one shared covariance), in
    data units: kernel covariance h^2 (W W^T)^-1 in standardized units (W the rotation)."""
    p = model.params
    assert p["kernel"] == "gaussian"
    points = np.asarray(p["points"], dtype=float)
    n, d = points.shape
    h = float(p["bandwidth"])
    shape = np.eye(d)
    if "rotation" in p:
        rotation = np.asarray(p["rotation"], dtype=float)
        shape = np.linalg.inv(rotation @ rotation.T)
    w = np.ones(n) if "weights" not in p else np.asarray(p["weights"], dtype=float)
    s, t = np.asarray(model.scale), np.asarray(model.shift)
    return w / w.sum(), points * s + t, h * h * shape * np.outer(s, s)


def mvn_logpdf(X: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """scipy's multivariate normal log-density, evaluated in each column's own standard
    deviations (columns differ by 1e5 in scale, beyond scipy's singularity check) and taken
    back to data units by the change of variables."""
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    y = (np.atleast_2d(X) - mean) / sd
    z = np.atleast_1d(stats.multivariate_normal(np.zeros(len(sd)), corr).logpdf(y))
    return z.reshape(-1) - np.sum(np.log(sd))


def mixture_logpdf(X: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(x; mu_k, cov_k) with scipy; ``cov`` is (k, d, d) or one (d, d)."""
    X = np.atleast_2d(np.asarray(X, dtype=float))
    covs = np.broadcast_to(cov, (len(w), *np.shape(cov)[-2:]))
    parts = np.stack([mvn_logpdf(X, mu[k], covs[k]) for k in range(len(w))], axis=1)
    with np.errstate(divide="ignore"):
        return logsumexp(parts + np.log(w), axis=1)


def kde_logpdf(X: np.ndarray, w: np.ndarray, centres: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """The same for many kernels sharing ``cov``, vectorized with numpy (chunks of rows)."""
    X = np.atleast_2d(np.asarray(X, dtype=float))
    d = X.shape[1]
    lower = np.linalg.cholesky(cov)
    const = -np.sum(np.log(np.diag(lower))) - 0.5 * d * np.log(2.0 * np.pi)
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], 2000):
        diff = X[start : start + 2000, None, :] - centres[None]
        y = np.linalg.solve(lower, diff.reshape(-1, d).T).T.reshape(diff.shape)
        out[start : start + 2000] = logsumexp(-0.5 * np.sum(y * y, axis=2) + np.log(w), axis=1)
    return out + const


def exact_condition(w, mu, cov, given: list[int], values) -> tuple:
    """The conditional mixture of the other columns given x[given] = values (data units):
    weights w_k N(x_g; mu_kg, S_kgg), means mu_kr + S_krg S_kgg^-1 (x_g - mu_kg), covariances
    the Schur complement (solved in each column's standard deviations, for conditioning)."""
    d = mu.shape[1]
    rest = [j for j in range(d) if j not in given]
    values = np.asarray(values, dtype=float)
    if np.ndim(cov) == 2:  # one covariance for every component (kernels): vectorized
        sd = np.sqrt(np.diag(cov))
        s = cov / np.outer(sd, sd)
        s_gg, s_rg = s[np.ix_(given, given)], s[np.ix_(rest, given)]
        offsets = values - mu[:, given]
        log_w = np.log(w) + mvn_logpdf(offsets, np.zeros(len(given)), cov[np.ix_(given, given)])
        gain = np.linalg.solve(s_gg, s_rg.T).T
        means = mu[:, rest] + sd[rest] * ((offsets / sd[given]) @ gain.T)
        schur = (s[np.ix_(rest, rest)] - gain @ s_rg.T) * np.outer(sd[rest], sd[rest])
        return np.exp(log_w - logsumexp(log_w)), means, np.repeat(schur[None], len(w), axis=0)
    covs = np.broadcast_to(cov, (len(w), d, d))
    log_w, means, conds = [], [], []
    for k in range(len(w)):
        sd = np.sqrt(np.diag(covs[k]))
        s = covs[k] / np.outer(sd, sd)
        s_gg, s_rg = s[np.ix_(given, given)], s[np.ix_(rest, given)]
        log_w.append(
            np.log(w[k]) + mvn_logpdf(values, mu[k, given], covs[k][np.ix_(given, given)])[0]
        )
        offset = (values - mu[k, given]) / sd[given]
        means.append(mu[k, rest] + sd[rest] * (s_rg @ np.linalg.solve(s_gg, offset)))
        schur = s[np.ix_(rest, rest)] - s_rg @ np.linalg.solve(s_gg, s_rg.T)
        conds.append(schur * np.outer(sd[rest], sd[rest]))
    log_w = np.asarray(log_w)
    weights = np.exp(log_w - logsumexp(log_w))
    return weights, np.asarray(means), np.asarray(conds)


def mixture_moments(w, mu, cov) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a mixture (law of total variance)."""
    covs = np.broadcast_to(cov, (len(w), mu.shape[1], mu.shape[1]))
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, covs + np.einsum("ki,kj->kij", mu, mu))
    return mean, second - np.outer(mean, mean)


def mixture_cdf_1d(x, w, mu, var) -> np.ndarray:
    """CDF of a 1-D mixture: a weighted sum of normal CDFs."""
    x = np.asarray(x, dtype=float)[:, None]
    return np.sum(w * stats.norm.cdf(x, loc=mu, scale=np.sqrt(var)), axis=1)


def marginal_of(w, mu, cov, keep: list[int]) -> tuple:
    covs = np.broadcast_to(cov, (len(w), mu.shape[1], mu.shape[1]))
    return w, mu[:, keep], covs[:, keep][:, :, keep]


def probe_rows(data: pd.DataFrame) -> np.ndarray:
    """Rows to score: some training rows, some between and beyond the clusters."""
    X = data.to_numpy()
    lo, hi = X.min(axis=0), X.max(axis=0)
    extra = np.array([lo + f * (hi - lo) for f in (-0.2, 0.25, 0.5, 0.75, 1.1)])
    return np.vstack([X[::23], extra])


def balanced_value(w, mu, cov, j: int) -> float:
    """A value of column j where both components of the conditional keep real weight."""
    grid = np.linspace(mu[:, j].min(), mu[:, j].max(), 201)[:, None]
    sd = np.sqrt(np.broadcast_to(cov, (len(w), *np.shape(cov)[-2:]))[:, j, j])
    log_w = np.log(w) + stats.norm.logpdf(grid, loc=mu[:, j], scale=sd)
    weights = np.exp(log_w - logsumexp(log_w, axis=1, keepdims=True))
    return float(grid[np.argmax(weights.min(axis=1)), 0])


def grid_1d(lo: float, hi: float, n: int = 4001) -> np.ndarray:
    return np.linspace(lo, hi, n)


def integrate_1d(model, lo: float, hi: float) -> float:
    x = grid_1d(lo, hi)
    return float(simpson(np.exp(model.score_samples(x[:, None])), x=x))


def integrate_2d(model, lo, hi, n: int = 201) -> float:
    x, y = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    dens = np.exp(model.score_samples(np.column_stack([xx.ravel(), yy.ravel()])))
    return float(simpson(simpson(dens.reshape(n, n), x=y, axis=1), x=x))


def span(mu: np.ndarray, cov: np.ndarray, width: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """A box holding every component (or kernel) to ``width`` standard deviations."""
    sd = np.sqrt(np.diagonal(np.broadcast_to(cov, (len(mu), *np.shape(cov)[-2:])), 0, 1, 2))
    return (mu - width * sd).min(axis=0), (mu + width * sd).max(axis=0)


def run_cli(cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gencli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_many(calls: list[tuple[Path, list]]) -> list[subprocess.CompletedProcess]:
    """Several gencli commands side by side, each (folder, arguments); every one is waited
    for, and any still running when something fails is ended."""
    procs = []
    try:
        for cwd, args in calls:
            command = [sys.executable, "-m", "gencli", *map(str, args)]
            procs.append(
                (command, subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True))
            )  # fmt: skip
        done = []
        for command, proc in procs:
            out, err = proc.communicate(timeout=120)
            done.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
        return done
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


# ----------------------------------------------------------------------------- 1. closed forms


@pytest.mark.parametrize("kind", KINDS)
def test_gmm_marginals_match_scipy(gmms, data, kind):
    model = gmms[kind]
    w, mu, cov = data_components(model)
    X = probe_rows(data)
    for asked in (["a", "c"], ["c", "a"], ["b"], ["c"], ["b", "c"], ["a", "b", "c"]):
        keep = sorted(NAMES.index(c) for c in asked)
        marginal = model.marginal(asked)
        assert marginal.columns == [NAMES[j] for j in keep]
        got = marginal.score_samples(X[:, keep])
        want = mixture_logpdf(X[:, keep], *marginal_of(w, mu, cov, keep))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)
        # A DataFrame is matched by name, whatever its column order.
        frame = pd.DataFrame(X[:, keep[::-1]], columns=[NAMES[j] for j in keep[::-1]])
        np.testing.assert_allclose(marginal.score_samples(frame), want, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_gmm_conditionals_match_scipy(gmms, data, kind):
    model = gmms[kind]
    w, mu, cov = data_components(model)
    X = probe_rows(data)
    middle = 0.5 * (mu[0] + mu[1])
    cases = [
        {"b": balanced_value(w, mu, cov, 1)},
        {"b": float(X[3, 1])},
        {"c": float(middle[2]), "a": float(middle[0])},  # not in the model's order
        {"a": float(X[7, 0]) + 1500.0},
        {"a": float(middle[0]), "b": float(middle[1])},
    ]
    for given in cases:
        fixed = sorted(NAMES.index(c) for c in given)
        rest = [j for j in range(3) if j not in fixed]
        values = [given[NAMES[j]] for j in fixed]
        conditional = model.condition(given)
        assert conditional.columns == [NAMES[j] for j in rest]
        cw, cmu, ccov = exact_condition(w, mu, cov, fixed, values)
        got = conditional.score_samples(X[:, rest])
        np.testing.assert_allclose(got, mixture_logpdf(X[:, rest], cw, cmu, ccov), rtol=1e-8)
        # Its parameters, taken to data units, are the same mixture (same moments).
        gw, gmu, gcov = data_components(conditional)
        want_mean, want_cov = mixture_moments(cw, cmu, ccov)
        got_mean, got_cov = mixture_moments(gw, gmu, gcov)
        sd = np.sqrt(np.diag(want_cov))
        np.testing.assert_allclose((got_mean - want_mean) / sd, 0.0, atol=1e-8)
        np.testing.assert_allclose(got_cov / np.outer(sd, sd), want_cov / np.outer(sd, sd))
        # Conditioning one column at a time, or after a marginal, is the same density.
        step = model
        for j in fixed[::-1]:
            step = step.condition({NAMES[j]: given[NAMES[j]]})
        np.testing.assert_allclose(step.score_samples(X[:, rest]), got, rtol=1e-8)
        if len(rest) == 2:
            keep = [fixed[0], rest[1]]
            after = model.marginal([NAMES[j] for j in keep]).condition({NAMES[fixed[0]]: values[0]})
            w2, mu2, cov2 = exact_condition(*marginal_of(w, mu, cov, keep), [0], values)
            want = mixture_logpdf(X[:, [rest[1]]], w2, mu2, cov2)
            np.testing.assert_allclose(after.score_samples(X[:, [rest[1]]]), want, rtol=1e-8)


# ----------------------------------------------------------------------------- 2. normalization


@pytest.mark.parametrize("kind", KINDS)
def test_gmm_marginals_and_conditionals_integrate_to_one(gmms, kind):
    model = gmms[kind]
    w, mu, cov = data_components(model)
    for j, name in enumerate(NAMES):
        lo, hi = span(mu[:, [j]], marginal_of(w, mu, cov, [j])[2])
        assert integrate_1d(model.marginal([name]), lo[0], hi[0]) == pytest.approx(1.0, abs=1e-6)
    lo, hi = span(*marginal_of(w, mu, cov, [0, 2])[1:])
    assert integrate_2d(model.marginal(["a", "c"]), lo, hi) == pytest.approx(1.0, abs=1e-6)
    b = balanced_value(w, mu, cov, 1)
    _, cmu, ccov = exact_condition(w, mu, cov, [1], [b])
    lo, hi = span(cmu, ccov)
    assert integrate_2d(model.condition({"b": b}), lo, hi) == pytest.approx(1.0, abs=1e-6)
    middle = 0.5 * (mu[0] + mu[1])
    given = {"a": float(middle[0]), "c": float(middle[2])}
    _, cmu, ccov = exact_condition(w, mu, cov, [0, 2], [middle[0], middle[2]])
    lo, hi = span(cmu, ccov)
    total = integrate_1d(model.condition(given), lo[0], hi[0])
    assert total == pytest.approx(1.0, abs=1e-6)


def test_kde_marginals_and_conditionals_integrate_to_one(kde, data):
    _, centres, cov = kde_components(kde)
    X = data.to_numpy()
    for j, name in enumerate(NAMES):
        lo, hi = span(centres[:, [j]], cov[np.ix_([j], [j])])
        assert integrate_1d(kde.marginal([name]), lo[0], hi[0]) == pytest.approx(1.0, abs=1e-6)
    lo, hi = span(centres[:, [0, 2]], cov[np.ix_([0, 2], [0, 2])])
    assert integrate_2d(kde.marginal(["a", "c"]), lo, hi) == pytest.approx(1.0, abs=1e-6)
    conditional = kde.condition({"b": float(np.median(X[:, 1]))})
    assert integrate_2d(conditional, lo, hi) == pytest.approx(1.0, abs=1e-6)
    for given in ({"a": float(X[10, 0]), "c": float(X[10, 2])}, {"b": float(X[200, 1])}):
        rest = [j for j in range(3) if NAMES[j] not in given]
        conditional = kde.condition(given)
        lo, hi = span(centres[:, rest], cov[np.ix_(rest, rest)])
        if len(rest) == 1:
            total = integrate_1d(conditional, lo[0], hi[0])
            assert total == pytest.approx(1.0, abs=1e-6)
        else:
            assert integrate_2d(conditional, lo, hi) == pytest.approx(1.0, abs=1e-6)


def test_auto_rotated_kde_marginals_and_conditionals_integrate_to_one(ring_kde):
    w, centres, cov = kde_components(ring_kde)
    lo, hi = span(centres, cov, width=12.0)
    for j, name in enumerate(["u", "v"]):
        assert integrate_1d(ring_kde.marginal([name]), lo[j], hi[j]) == pytest.approx(1.0, abs=1e-6)
    mean = w @ centres
    for j, name in enumerate(["u", "v"]):
        for value in (mean[j], np.quantile(centres[:, j], 0.1)):
            conditional = ring_kde.condition({name: float(value)})
            other = 1 - j
            total = integrate_1d(conditional, lo[other], hi[other])
            assert total == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- 3. samples


@pytest.mark.parametrize("kind", KINDS)
def test_gmm_conditional_samples_follow_the_exact_conditional(gmms, kind):
    model = gmms[kind]
    w, mu, cov = data_components(model)
    b = balanced_value(w, mu, cov, 1)
    cw, cmu, ccov = exact_condition(w, mu, cov, [1], [b])
    assert cw.min() > 0.05  # both components matter
    conditional = model.condition({"b": b})
    n = 20_000
    drawn = conditional.sample(n, seed=11)
    assert drawn.shape == (n, 2)
    np.testing.assert_array_equal(drawn, conditional.sample(n, seed=11))
    mean, var = mixture_moments(cw, cmu, ccov)
    sd = np.sqrt(np.diag(var))
    assert np.all(np.abs(drawn.mean(axis=0) - mean) < 5.0 * sd / np.sqrt(n))
    centred = drawn - mean
    for i in range(2):
        for j in range(2):
            product = centred[:, i] * centred[:, j]
            se = product.std() / np.sqrt(n)
            assert abs(product.mean() - var[i, j]) < 5.0 * se, (i, j)
    for j in range(2):
        cdf = lambda x, j=j: mixture_cdf_1d(x, cw, cmu[:, j], ccov[:, j, j])  # noqa: E731
        assert stats.kstest(drawn[:, j], cdf).pvalue > 1e-3


def test_rotated_kde_conditional_samples_follow_numerical_conditional(ring_kde):
    w, centres, cov = kde_components(ring_kde)
    u = float(np.quantile(centres[:, 0], 0.3))
    conditional = ring_kde.condition({"u": u})
    lo, hi = span(centres, cov, width=12.0)
    v = grid_1d(lo[1], hi[1], 20001)
    joint = np.exp(kde_logpdf(np.column_stack([np.full_like(v, u), v]), w, centres, cov))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (joint[1:] + joint[:-1]) * np.diff(v))])
    cdf /= cdf[-1]
    drawn = conditional.sample(3000, seed=4)[:, 0]
    assert stats.kstest(drawn, lambda x: np.interp(x, v, cdf)).pvalue > 1e-3
    mean = np.sum(v * joint) / np.sum(joint)
    sd = np.sqrt(np.sum((v - mean) ** 2 * joint) / np.sum(joint))
    assert abs(drawn.mean() - mean) < 5.0 * sd / np.sqrt(drawn.size)


# ----------------------------------------------------------------------------- 4. kde, brute force


def test_own_kde_reference_is_the_joint_density(kde, ring_kde, data):
    for model, X in ((kde, data.to_numpy()[::7]), (ring_kde, _ring().to_numpy()[::7])):
        want = kde_logpdf(X, *kde_components(model))
        np.testing.assert_allclose(model.score_samples(X), want, atol=1e-5)


def test_kde_conditional_two_free_columns_by_numerical_conditioning(kde, data):
    w, centres, cov = kde_components(kde)
    X = data.to_numpy()
    b = float(np.quantile(X[:, 1], 0.4))
    conditional = kde.condition({"b": b})
    lo, hi = span(centres[:, [0, 2]], cov[np.ix_([0, 2], [0, 2])], width=9.0)
    n = 151
    a, c = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    aa, cc = np.meshgrid(a, c, indexing="ij")
    grid = np.column_stack([aa.ravel(), np.full(aa.size, b), cc.ravel()])
    joint = kde_logpdf(grid, w, centres, cov)
    top = joint.max()
    norm = simpson(simpson(np.exp(joint - top).reshape(n, n), x=c, axis=1), x=a)
    want = joint - top - np.log(norm)
    got = conditional.score_samples(grid[:, [0, 2]])
    seen = want > want.max() - 12.0
    np.testing.assert_allclose(got[seen], want[seen], atol=2e-4)


@pytest.mark.parametrize("given", [["a", "c"], ["b", "c"], ["a", "b"]])
def test_kde_conditional_one_free_column_by_numerical_conditioning(kde, data, given):
    w, centres, cov = kde_components(kde)
    X = data.to_numpy()
    fixed = [NAMES.index(g) for g in given]
    free = next(j for j in range(3) if j not in fixed)
    for row in (5, 250):
        values = {g: float(X[row, NAMES.index(g)]) for g in given}
        conditional = kde.condition(values)
        lo, hi = span(centres[:, [free]], cov[np.ix_([free], [free])])
        x = grid_1d(lo[0], hi[0], 4001)
        grid = np.empty((x.size, 3))
        grid[:, free] = x
        for g in given:
            grid[:, NAMES.index(g)] = values[g]
        joint = kde_logpdf(grid, w, centres, cov)
        want = joint - logsumexp(joint) - np.log(x[1] - x[0])  # Riemann sum of a smooth tail
        got = conditional.score_samples(x[:, None])
        seen = want > want.max() - 12.0
        np.testing.assert_allclose(got[seen], want[seen], atol=1e-4)
        # One column at a time: the same density.
        step = kde
        for g in given[::-1]:
            step = step.condition({g: values[g]})
        np.testing.assert_allclose(step.score_samples(x[:, None]), got, rtol=1e-7, atol=1e-9)
        # Its draws follow the numerical conditional CDF.
        cdf = np.cumsum(np.exp(want)) * (x[1] - x[0])
        drawn = conditional.sample(1500, seed=row)[:, 0]
        assert stats.kstest(drawn, functools.partial(np.interp, xp=x, fp=cdf)).pvalue > 1e-3


def test_rotated_kde_conditional_by_numerical_conditioning(ring_kde):
    w, centres, cov = kde_components(ring_kde)
    lo, hi = span(centres, cov, width=12.0)
    for j in range(2):
        other = 1 - j
        for q in (0.25, 0.8):
            value = float(np.quantile(centres[:, j], q))
            conditional = ring_kde.condition({["u", "v"][j]: value})
            x = grid_1d(lo[other], hi[other], 6001)
            grid = np.empty((x.size, 2))
            grid[:, j], grid[:, other] = value, x
            joint = kde_logpdf(grid, w, centres, cov)
            want = joint - logsumexp(joint) - np.log(x[1] - x[0])
            got = conditional.score_samples(x[:, None])
            seen = want > want.max() - 12.0
            np.testing.assert_allclose(got[seen], want[seen], atol=1e-4)


# ----------------------------------------------------------------------------- 5. imputation


def gappy_rows(data: pd.DataFrame) -> np.ndarray:
    X = data.to_numpy()[[4, 40, 77, 151, 190, 260, 299]].copy()
    X[0, 0] = np.nan  # a missing
    X[1, [1, 2]] = np.nan  # b and c missing
    # row 2 complete
    X[3, [0, 2]] = np.nan
    X[4, :] = np.nan  # everything missing: the model's mean
    X[5, 2] = np.nan
    X[6, 1] = np.nan
    return X


def expected_fill(w, mu, cov, X: np.ndarray) -> np.ndarray:
    out = X.copy()
    for i, row in enumerate(X):
        m = np.flatnonzero(np.isnan(row))
        o = np.flatnonzero(~np.isnan(row))
        if not m.size:
            continue
        if not o.size:
            out[i] = w @ mu
            continue
        cw, cmu, _ = exact_condition(w, mu, cov, list(o), row[o])
        out[i, m] = cw @ cmu
    return out


def test_impute_fills_with_the_conditional_mean(gmms, kde, ring_kde, data, tmp_path):
    """Every covariance type and the kde, side by side: observed cells untouched, complete
    rows unchanged, empty cells the closed-form conditional mean (model mean if all empty)."""
    X = gappy_rows(data)
    pd.DataFrame(X, columns=NAMES).to_csv(tmp_path / "gappy.csv", index=False)
    assert ",," in (tmp_path / "gappy.csv").read_text()  # empty cells, not 'nan'
    models = {**gmms, "kde": kde}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.pkl")
    calls = [
        (tmp_path, ["impute", f"{name}.pkl", "gappy.csv", "-o", f"{name}.csv"]) for name in models
    ]
    ring = _ring().to_numpy()[[0, 30, 60, 90]].copy()
    ring[0, 0], ring[1, 1], ring[2, :] = np.nan, np.nan, np.nan  # row 3 all empty, row 4 full
    pd.DataFrame(ring, columns=["u", "v"]).to_csv(tmp_path / "ring_gappy.csv", index=False)
    ring_kde.save(tmp_path / "ring.pkl")
    calls.append((tmp_path, ["impute", "ring.pkl", "ring_gappy.csv", "-o", "ring.csv"]))
    for proc in run_many(calls):
        ok(proc)
    got = pd.read_csv(tmp_path / "ring.csv").to_numpy()
    want = expected_fill(*kde_components(ring_kde), ring)
    ring_sd = _ring().to_numpy().std(axis=0)
    np.testing.assert_allclose((got - want) / ring_sd, 0.0, atol=1e-8, err_msg="rotated kde")
    sd = data.to_numpy().std(axis=0)
    observed = ~np.isnan(X)
    for name, model in models.items():
        filled = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(filled.columns) == NAMES
        got = filled.to_numpy()
        np.testing.assert_array_equal(got[observed], X[observed], err_msg=name)
        parts = kde_components(model) if name == "kde" else data_components(model)
        want = expected_fill(*parts, X)
        np.testing.assert_allclose((got - want) / sd, 0.0, atol=1e-8, err_msg=name)


def check_draws(draws: np.ndarray, w, mu, cov, what: str) -> None:
    """Draws (n x d) against a mixture: mean, every covariance entry and each column's
    distribution (KS against the exact 1-D mixture CDF), to sampling error."""
    n = draws.shape[0]
    mean, var = mixture_moments(w, mu, cov)
    se = np.sqrt(np.diag(var) / n)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5.0 * se), what
    centred = draws - mean
    for i in range(draws.shape[1]):
        for j in range(draws.shape[1]):
            product = centred[:, i] * centred[:, j]
            assert abs(product.mean() - var[i, j]) < 5.0 * product.std() / np.sqrt(n), (what, i, j)
        cdf = lambda x, i=i: mixture_cdf_1d(x, w, mu[:, i], cov[:, i, i])  # noqa: E731
        assert stats.kstest(draws[:, i], cdf).pvalue > 1e-3, (what, i)


def test_multiple_imputation_draws_have_the_conditional_distribution(gmms, data, tmp_path):
    model = gmms["full"]
    model.save(tmp_path / "m.pkl")
    w, mu, cov = data_components(model)
    middle = 0.5 * (mu[0] + mu[1])
    X = np.array(
        [
            [np.nan, middle[1], middle[2]],  # one missing cell, both components weigh
            [middle[0], np.nan, np.nan],  # two missing cells
            data.to_numpy()[9],  # complete: repeated unchanged
            [np.nan, mu[0, 1], mu[0, 2]],  # inside a component: its own spread dominates
            [mu[1, 0], np.nan, np.nan],
        ]
    )
    pd.DataFrame(X, columns=NAMES).to_csv(tmp_path / "gappy.csv", index=False)
    m = 3000
    args = ["impute", "m.pkl", "gappy.csv", "--draws", m, "--seed", 5]
    calls = [(tmp_path, [*args, "-o", "draws.csv"]), (tmp_path, [*args, "-o", "again.csv"])]
    for proc in run_many(calls):
        ok(proc)
    assert (tmp_path / "draws.csv").read_bytes() == (tmp_path / "again.csv").read_bytes()
    out = pd.read_csv(tmp_path / "draws.csv")
    assert list(out.columns) == ["row", "draw", *NAMES]
    np.testing.assert_array_equal(out["row"], np.repeat(np.arange(1, len(X) + 1), m))
    np.testing.assert_array_equal(out["draw"], np.tile(np.arange(1, m + 1), len(X)))
    values = out[NAMES].to_numpy().reshape(len(X), m, 3)
    for i, row in enumerate(X):
        observed = np.flatnonzero(~np.isnan(row))
        missing = np.flatnonzero(np.isnan(row))
        np.testing.assert_array_equal(values[i][:, observed], np.tile(row[observed], (m, 1)))
        if missing.size:
            cw, cmu, ccov = exact_condition(w, mu, cov, list(observed), row[observed])
            check_draws(values[i][:, missing], cw, cmu, ccov, f"row {i + 1}")


# ----------------------------------------------------------------------------- 6. predict


def sklearn_from_params(model) -> GaussianMixture:
    """A scikit-learn GaussianMixture holding the model's standardized parameters."""
    p = model.params
    kind = p["covariance_type"]
    cov = np.asarray(p["covariances"], dtype=float)
    gm = GaussianMixture(n_components=len(p["weights"]), covariance_type=kind)
    gm.weights_ = np.asarray(p["weights"], dtype=float)
    gm.means_ = np.asarray(p["means"], dtype=float)
    gm.covariances_ = cov
    if kind == "full":
        gm.precisions_cholesky_ = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in cov])
    elif kind == "tied":
        gm.precisions_cholesky_ = np.linalg.inv(np.linalg.cholesky(cov)).T
    else:
        gm.precisions_cholesky_ = 1.0 / np.sqrt(cov)
    return gm


def test_predict_proba_equals_scikit_learn(gmms, data, tmp_path):
    X = probe_rows(data)
    pd.DataFrame(X[:, ::-1], columns=NAMES[::-1]).to_csv(tmp_path / "rows.csv", index=False)
    calls = []
    for kind in KINDS:
        gmms[kind].save(tmp_path / f"{kind}.pkl")
        calls.append(
            (tmp_path, ["predict", f"{kind}.pkl", "rows.csv", "--proba", "-o", f"{kind}.csv"])
        )
    calls.append((tmp_path, ["predict", "full.pkl", "rows.csv", "-o", "plain.csv"]))
    for proc in run_many(calls):
        ok(proc)
    for kind in KINDS:
        model = gmms[kind]
        out = pd.read_csv(tmp_path / f"{kind}.csv")
        assert list(out.columns) == ["component", "p_0", "p_1"]
        Z = (X - model.shift) / model.scale
        want = model.estimator.predict_proba(Z)
        mine = sklearn_from_params(model).predict_proba(Z)
        np.testing.assert_allclose(want, mine, atol=1e-9, err_msg=kind)
        np.testing.assert_allclose(out[["p_0", "p_1"]].to_numpy(), want, atol=1e-9, err_msg=kind)
        np.testing.assert_array_equal(out["component"], np.argmax(want, axis=1), err_msg=kind)
    plain = pd.read_csv(tmp_path / "plain.csv")
    assert list(plain.columns) == ["component"]
    Z = (X - gmms["full"].shift) / gmms["full"].scale
    np.testing.assert_array_equal(plain["component"], gmms["full"].estimator.predict(Z))


# ----------------------------------------------------------------------------- 7. command line


def test_cli_score_columns_is_the_marginal(gmms, data, tmp_path):
    model = gmms["full"]
    model.save(tmp_path / "m.pkl")
    X = probe_rows(data)
    pd.DataFrame(X, columns=NAMES).to_csv(tmp_path / "rows.csv", index=False)
    pd.DataFrame(X[:, [2, 0]], columns=["c", "a"]).to_csv(tmp_path / "ac.csv", index=False)
    w, mu, cov = data_components(model)
    cases = [("rows.csv", "c,a", [0, 2]), ("ac.csv", "a,c", [0, 2]), ("rows.csv", "b", [1])]
    calls = [
        (tmp_path, ["score", "m.pkl", data_file, "--columns", cols, "-o", f"s{i}.csv"])
        for i, (data_file, cols, _) in enumerate(cases)
    ]
    for i, ((_, cols, keep), proc) in enumerate(zip(cases, run_many(calls), strict=True)):
        ok(proc)
        got = pd.read_csv(tmp_path / f"s{i}.csv").iloc[:, 0].to_numpy()
        names = [NAMES[j] for j in keep]
        np.testing.assert_allclose(got, model.marginal(names).score_samples(X[:, keep]))
        want = mixture_logpdf(X[:, keep], *marginal_of(w, mu, cov, keep))
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=cols)


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_cli_score_given_is_the_conditional_density(gmms, kde, data, tmp_path, family):
    model = gmms["full"] if family == "gmm" else kde
    model.save(tmp_path / "m.pkl")
    X = probe_rows(data)[:-2]
    pd.DataFrame(X, columns=NAMES).to_csv(tmp_path / "rows.csv", index=False)
    # With --columns, DATA needs only those and the given columns.
    pd.DataFrame(X[:, [1, 0]], columns=["b", "a"]).to_csv(tmp_path / "ba.csv", index=False)
    w, mu, cov = data_components(model) if family == "gmm" else kde_components(model)
    logpdf = mixture_logpdf if family == "gmm" else kde_logpdf

    def reference(keep: list[int]) -> np.ndarray:
        sub = cov[np.ix_(keep, keep)] if cov.ndim == 2 else cov[:, keep][:, :, keep]
        return logpdf(X[:, keep], w, mu[:, keep], sub)

    cases = [("b", None, [0, 1, 2], [1]), ("c,a", None, [0, 1, 2], [0, 2]), ("b", "a", [0, 1], [1])]
    if family == "kde":
        cases = cases[:1]
    calls = [
        (tmp_path, ["score", "m.pkl", "ba.csv" if columns else "rows.csv", "--given", given,
                    "-o", f"s{i}.csv", *(["--columns", columns] if columns else [])])
        for i, (given, columns, _, _) in enumerate(cases)
    ]  # fmt: skip
    procs = run_many(calls)
    for i, (given, columns, joint, fixed) in enumerate(cases):
        ok(procs[i])
        note = f"--given {given} --columns {columns}"
        got = pd.read_csv(tmp_path / f"s{i}.csv").iloc[:, 0].to_numpy()
        want = reference(joint) - reference(fixed)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, err_msg=note)
        if columns is None:  # the same as the conditional model at each row's own values
            rest = [j for j in range(3) if j not in fixed]
            for r in (0, 5, len(X) - 1):
                cond = model.condition({NAMES[j]: float(X[r, j]) for j in fixed})
                want = cond.score_samples(X[r : r + 1, rest])[0]
                assert got[r] == pytest.approx(want, rel=1e-6, abs=1e-5)


def test_cli_sample_given_reproducible_and_from_the_conditional(gmms, tmp_path):
    model = gmms["full"]
    model.save(tmp_path / "m.pkl")
    w, mu, cov = data_components(model)
    b = balanced_value(w, mu, cov, 1)
    n = 2000
    args = ["sample", "m.pkl", "-n", n, "--given", f"b={b!r}"]
    seeds = {"s1.csv": 3, "s2.csv": 3, "s3.csv": 4}
    calls = [(tmp_path, [*args, "--seed", seed, "-o", name]) for name, seed in seeds.items()]
    for proc in run_many(calls):
        ok(proc)
    first = (tmp_path / "s1.csv").read_bytes()
    assert first == (tmp_path / "s2.csv").read_bytes()
    assert first != (tmp_path / "s3.csv").read_bytes()
    out = pd.read_csv(tmp_path / "s1.csv")
    assert list(out.columns) == NAMES and len(out) == n
    np.testing.assert_array_equal(out["b"], np.full(n, b))
    cw, cmu, ccov = exact_condition(w, mu, cov, [1], [b])
    for k, name in ((0, "a"), (1, "c")):
        cdf = lambda x, k=k: mixture_cdf_1d(x, cw, cmu[:, k], ccov[:, k, k])  # noqa: E731
        assert stats.kstest(out[name].to_numpy(), cdf).pvalue > 1e-3


def test_cli_sample_given_file_draws_per_row(gmms, data, tmp_path):
    model = gmms["full"]
    model.save(tmp_path / "m.pkl")
    w, mu, cov = data_components(model)
    X = data.to_numpy()
    rows = X[[3, 170, 3]][:, [2, 0]]  # columns c, a: not the model's order; rows 1, 3 alike
    pd.DataFrame(rows, columns=["c", "a"]).to_csv(tmp_path / "given.csv", index=False)
    n = 400
    args = ["sample", "m.pkl", "-n", n, "--given-file", "given.csv", "--seed", 2, "-o", "s.csv"]
    ok(run_cli(tmp_path, *args))
    out = pd.read_csv(tmp_path / "s.csv")
    assert list(out.columns) == ["row", *NAMES] and len(out) == 3 * n
    np.testing.assert_array_equal(out["row"], np.repeat([1, 2, 3], n))
    for i, (c, a) in enumerate(rows):
        block = out[out["row"] == i + 1]
        np.testing.assert_array_equal(block["a"], np.full(n, a))
        np.testing.assert_array_equal(block["c"], np.full(n, c))
        cw, cmu, ccov = exact_condition(w, mu, cov, [0, 2], [a, c])
        mean, var = mixture_moments(cw, cmu, ccov)
        assert abs(block["b"].mean() - mean[0]) < 5.0 * np.sqrt(var[0, 0] / n)
        cdf = lambda x, cw=cw, cmu=cmu, ccov=ccov: mixture_cdf_1d(  # noqa: E731
            x, cw, cmu[:, 0], ccov[:, 0, 0]
        )
        assert stats.kstest(block["b"].to_numpy(), cdf).pvalue > 1e-3
    # Each row has its own draws: the same given values twice are not the same rows twice.
    first, third = out[out["row"] == 1]["b"].to_numpy(), out[out["row"] == 3]["b"].to_numpy()
    assert not np.any(first == third)
    assert stats.ks_2samp(first, third).pvalue > 1e-3


ERROR_CASES = {
    "score --columns unknown": (["score", "m.pkl", "d.csv", "--columns", "a,zz"], 1, "zz"),
    "score --given unknown": (["score", "m.pkl", "d.csv", "--given", "zz"], 1, "zz"),
    "score --given every column": (["score", "m.pkl", "d.csv", "--given", "a,b,c"], 1, None),
    "sample --given unknown": (["sample", "m.pkl", "-n", "5", "--given", "zz=1"], 1, "zz"),
    "sample --given every column": (["sample", "m.pkl", "-n", "5", "--given", "a=1,b=2,c=3"], 1,
                                    None),
    "sample --given non-number": (["sample", "m.pkl", "-n", "5", "--given", "a=abc"], 2, "abc"),
    "sample --given-file unknown": (["sample", "m.pkl", "-n", "5", "--given-file", "zz.csv"], 1,
                                    "zz"),
    "predict kde": (["predict", "k.pkl", "d.csv"], 1, "kde"),
    "predict infinite": (["predict", "m.pkl", "inf.csv"], 1, None),
    "impute infinite": (["impute", "m.pkl", "inf.csv"], 1, None),
    "predict missing": (["predict", "m.pkl", "nan.csv"], 1, None),
}  # fmt: skip


def test_cli_user_errors_are_one_line_and_write_nothing(gmms, kde, data, tmp_path):
    """Each case in its own folder, side by side: one line 'Error: ...' on stderr, the exit
    status (1, or 2 for usage errors), no output file, nothing else written."""
    bad = data.iloc[:5].copy()
    bad.iloc[2, 1] = np.inf
    bad.iloc[3, 0] = np.nan
    calls, folders = [], {}
    for number, (case, (args, _, _)) in enumerate(ERROR_CASES.items()):
        folder = tmp_path / f"case{number}"
        folder.mkdir()
        gmms["full"].save(folder / "m.pkl")
        kde.save(folder / "k.pkl")
        data.iloc[:20].to_csv(folder / "d.csv", index=False)
        frame = pd.DataFrame({"zz": [1.0, 2.0], "a": [5e4, 5.1e4]})
        frame.to_csv(folder / "zz.csv", index=False)
        bad.to_csv(folder / "inf.csv", index=False)
        bad.iloc[[3]].to_csv(folder / "nan.csv", index=False)
        assert "inf" in (folder / "inf.csv").read_text()
        folders[case] = (folder, sorted(p.name for p in folder.iterdir()))
        calls.append((folder, [*args, "-o", "out.csv"]))
    for (case, (_, code, mentioned)), proc in zip(
        ERROR_CASES.items(), run_many(calls), strict=True
    ):
        folder, before = folders[case]
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code, (case, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("Error: "), (case, proc.stderr)
        if mentioned:
            assert mentioned in lines[0], case
        assert proc.stdout == "", case
        assert not (folder / "out.csv").exists(), case
        assert sorted(p.name for p in folder.iterdir()) == before, case


# ----------------------------------------------------------------------------- 8. files


def test_conditioned_and_marginal_models_save_and_load(gmms, kde, ring_kde, data, tmp_path):
    X = probe_rows(data)
    w, mu, cov = data_components(gmms["tied"])
    middle = 0.5 * (mu[0] + mu[1])
    derived = {
        "gmm_given": (gmms["tied"].condition({"b": float(middle[1])}), X[:, [0, 2]]),
        "gmm_marginal": (gmms["full"].marginal(["c", "b"]), X[:, [1, 2]]),
        "kde_given": (kde.condition({"a": float(middle[0]), "c": float(middle[2])}), X[:, [1]]),
        "ring_given": (ring_kde.condition({"v": float(np.median(_ring()["v"]))}), None),
    }
    for name, (model, rows) in derived.items():
        if rows is None:
            rows = np.linspace(*np.quantile(_ring()["u"], [0.0, 1.0]), 25)[:, None]
        path = tmp_path / f"{name}.pkl"
        model.save(path)
        loaded = gencli.load(path)
        assert loaded.columns == model.columns
        np.testing.assert_allclose(
            loaded.score_samples(rows), model.score_samples(rows), rtol=1e-12, err_msg=name
        )
        np.testing.assert_array_equal(loaded.sample(50, seed=9), model.sample(50, seed=9))
    # A saved conditional is an ordinary model file for the command line too.
    model, rows = derived["gmm_given"]
    pd.DataFrame(rows, columns=model.columns).to_csv(tmp_path / "rows.csv", index=False)
    ok(run_cli(tmp_path, "score", "gmm_given.pkl", "rows.csv", "-o", "s.csv"))
    got = pd.read_csv(tmp_path / "s.csv").iloc[:, 0].to_numpy()
    cw, cmu, ccov = exact_condition(w, mu, cov, [1], [middle[1]])
    np.testing.assert_allclose(got, mixture_logpdf(rows, cw, cmu, ccov), rtol=1e-8)
