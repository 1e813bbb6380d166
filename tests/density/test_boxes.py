"""Box masses for discrete columns, against independent references: the families' own
densities integrated numerically (scipy.integrate), sums over the integers, direct
scipy.stats sums, and the normal tail's asymptotic series (and mpmath when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from gencli.density.families import boxes, gmm, kde

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def gmm_params(covariance_type: str, k: int, d: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, k)
    if covariance_type in ("full", "tied"):
        a = rng.normal(0, 0.6, (k, d, d))
        covariances = a @ np.transpose(a, (0, 2, 1)) + 0.3 * np.eye(d)
        if covariance_type == "tied":
            covariances = covariances[0]
    elif covariance_type == "diag":
        covariances = rng.uniform(0.2, 1.5, (k, d))
    else:
        covariances = rng.uniform(0.2, 1.5, k)
    return {
        "covariance_type": covariance_type,
        "weights": weights / weights.sum(),
        "means": rng.normal(0, 1, (k, d)),
        "covariances": covariances,
    }


def kde_params(n: int, d: int, bandwidth: float = 0.4, seed: int = 0, **extra) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "kernel": "gaussian",
        "bandwidth": bandwidth,
        "bandwidth_rule": None,
        "points": rng.normal(0, 1, (n, d)),
        **extra,
    }


def density(family: str, params: dict, z: list[float]) -> float:
    """The family's own density at one point (what the boxes integrate)."""
    row = np.array([z], dtype=np.float64)
    if family == "gmm":
        return float(np.exp(gmm.log_density(params, row))[0])
    return float(np.exp(kde.log_density(params, row, mode="exact"))[0])


def mass(family: str, params: dict, Z, discrete, widths) -> np.ndarray:
    function = boxes.gmm_log_mass if family == "gmm" else boxes.kde_log_mass
    return function(
        params, np.asarray(Z, dtype=np.float64), np.asarray(discrete), np.asarray(widths, float)
    )


def asymptotic_log_mass(a: float, b: float) -> float:
    """log(Phi(b) - Phi(a)) for 30 <= a < b (or -b, -a: by symmetry) from the tail series
    Q(x) = phi(x) / x * sum_n (-1)^n (2n-1)!! / x^(2n), which at x >= 30 is exact to 1e-19."""
    if b <= -30:
        a, b = -b, -a
    assert a >= 30

    def log_series(x: float) -> float:
        terms, term = 1.0, 1.0
        for n in range(1, 9):
            term *= -(2 * n - 1) / (x * x)
            terms += term
        return math.log(terms)

    log_q_a = -0.5 * a * a - math.log(a) - 0.5 * math.log(2 * math.pi) + log_series(a)
    # log Q(b) - log Q(a), without cancelling the large squares: (b - a)(b + a) / 2.
    gap = -0.5 * (b - a) * (b + a) - math.log1p((b - a) / a) + log_series(b) - log_series(a)
    return log_q_a + math.log(-math.expm1(gap))


# -- with no discrete columns: the ordinary log-density ----------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_without_discrete_columns_is_the_log_density(covariance_type):
    params = gmm_params(covariance_type, 3, 4)
    Z = np.random.default_rng(1).normal(0, 2, (500, 4))
    got = mass("gmm", params, Z, np.array([], int), [])
    np.testing.assert_array_equal(got, gmm.log_density(params, Z))


@pytest.mark.parametrize(
    "params",
    [
        kde_params(300, 3),
        {**kde_params(300, 3), "kernel": "epanechnikov"},
        kde_params(300, 3, rotation=np.array([[1.0, 0.2, 0], [0, 1.5, 0], [0.1, 0, 0.8]])),
    ],
    ids=["gaussian", "epanechnikov", "rotated"],
)
def test_kde_without_discrete_columns_is_the_log_density(params):
    Z = np.random.default_rng(1).normal(0, 2, (500, 3))
    got = mass("kde", params, Z, np.array([], int), [])
    np.testing.assert_array_equal(got, kde.log_density(params, Z))


# -- box masses against numerical integration of the family's own density ---------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_one_dimensional_box_is_the_integral_of_the_density(covariance_type):
    params = gmm_params(covariance_type, 3, 1)
    for lower, width in [(-0.3, 0.5), (1.2, 0.05), (-4.0, 1.7), (3.0, 2.5), (0.0, 1e-4)]:
        got = mass("gmm", params, [[lower]], [0], [width])[0]
        want, _ = integrate.quad(
            lambda t: density("gmm", params, [t]), lower, lower + width, epsabs=0, epsrel=1e-12
        )
        assert got == pytest.approx(math.log(want), abs=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("column", [0, 1])
def test_gmm_box_with_a_continuous_column_is_the_integral_over_the_box(covariance_type, column):
    """Two columns, one discrete: the conditional of t given z_c (full and tied: a 1-D
    Gaussian with the conditional mean and variance) integrated against quad."""
    params = gmm_params(covariance_type, 3, 2, seed=2)
    for z, lower, width in [(0.3, -0.4, 0.6), (-1.5, 1.0, 0.25), (2.5, -3.0, 1.3)]:
        row = [z, z]
        row[column] = lower
        got = mass("gmm", params, [row], [column], [width])[0]

        def at(t, z=z):
            point = [z, z]
            point[column] = t
            return density("gmm", params, point)

        want, _ = integrate.quad(at, lower, lower + width, epsabs=0, epsrel=1e-12)
        assert got == pytest.approx(math.log(want), abs=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_gmm_full_one_discrete_column_between_continuous_ones(covariance_type):
    """Three columns, the middle one discrete: the conditioning reorders the covariance."""
    params = gmm_params(covariance_type, 2, 3, seed=3)
    got = mass("gmm", params, [[0.4, -0.2, -0.7]], [1], [0.35])[0]
    want, _ = integrate.quad(
        lambda t: density("gmm", params, [0.4, t, -0.7]), -0.2, 0.15, epsabs=0, epsrel=1e-12
    )
    assert got == pytest.approx(math.log(want), abs=1e-9)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_gmm_two_discrete_columns_is_the_double_integral(covariance_type):
    params = gmm_params(covariance_type, 3, 3, seed=4)
    z, (l0, w0), (l2, w2) = 0.6, (-0.5, 0.4), (0.2, 0.9)
    got = mass("gmm", params, [[l0, z, l2]], [0, 2], [w0, w2])[0]
    want, _ = integrate.dblquad(
        lambda t2, t0: density("gmm", params, [t0, z, t2]),
        l0,
        l0 + w0,
        l2,
        l2 + w2,
        epsabs=0,
        epsrel=1e-10,
    )
    assert got == pytest.approx(math.log(want), abs=1e-8)


def test_kde_boxes_are_the_integrals_of_the_density():
    """One discrete column (with and without a continuous one) against quad, two against
    dblquad, of the kernel density's own exact log-density."""
    one = kde_params(40, 1, bandwidth=0.3)
    got = mass("kde", one, [[-0.2], [2.9]], [0], [0.45])
    for value, lower in zip(got, [-0.2, 2.9], strict=True):
        want, _ = integrate.quad(
            lambda t: density("kde", one, [t]), lower, lower + 0.45, epsabs=0, epsrel=1e-12
        )
        assert value == pytest.approx(math.log(want), abs=1e-9)

    two = kde_params(40, 2, bandwidth=0.35, seed=1)
    got = mass("kde", two, [[0.7, -0.3]], [1], [0.25])[0]
    want, _ = integrate.quad(
        lambda t: density("kde", two, [0.7, t]), -0.3, -0.05, epsabs=0, epsrel=1e-12
    )
    assert got == pytest.approx(math.log(want), abs=1e-9)

    got = mass("kde", two, [[0.1, -0.6]], [0, 1], [0.5, 0.3])[0]
    want, _ = integrate.dblquad(
        lambda t1, t0: density("kde", two, [t0, t1]), 0.1, 0.6, -0.6, -0.3, epsabs=0, epsrel=1e-10
    )
    assert got == pytest.approx(math.log(want), abs=1e-8)


# -- normalization: summed over the integers and integrated over the rest, 1 ------------


def integer_boxes(counts: int, mean: float, scale: float) -> np.ndarray:
    """The lower edges in z of the integer boxes [k, k + 1) of a column standardized by
    (x - mean) / scale, for k over a range wide enough to hold all the mass."""
    k = np.arange(-counts, counts + 1) + round(mean)
    return (k - mean) / scale


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_masses_over_the_integers_sum_to_one(covariance_type):
    params = gmm_params(covariance_type, 3, 1, seed=5)
    scale = 0.37  # boxes 2.7 z units wide
    lowers = integer_boxes(40, 3.2, scale)
    total = np.exp(mass("gmm", params, lowers[:, None], [0], [1 / scale])).sum()
    assert total == pytest.approx(1.0, abs=1e-6)


def trapezoid_grid(low: float, high: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(low, high + step / 2, step)
    weights = np.full(grid.size, step)
    weights[[0, -1]] = step / 2
    return grid, weights


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_sums_and_integrates_to_one_with_a_continuous_column(covariance_type):
    params = gmm_params(covariance_type, 3, 2, seed=6)
    scale = 2.5  # boxes 0.4 z units wide
    lowers = integer_boxes(40, -1.3, scale)
    grid, weights = trapezoid_grid(-12, 12, 0.02)
    Z = np.column_stack([np.repeat(lowers, grid.size), np.tile(grid, lowers.size)])
    total = np.exp(mass("gmm", params, Z, [0], [1 / scale])) @ np.tile(weights, lowers.size)
    assert total == pytest.approx(1.0, abs=1e-6)


def three_columns(lowers0, grid, lowers2) -> np.ndarray:
    mesh = np.meshgrid(lowers0, grid, lowers2, indexing="ij")
    return np.column_stack([m.ravel() for m in mesh])


def test_gmm_diag_two_discrete_columns_sum_and_integrate_to_one():
    params = gmm_params("diag", 3, 3, seed=7)
    lowers0, lowers2 = integer_boxes(14, 0.4, 1.6), integer_boxes(10, 2.0, 0.9)
    grid, weights = trapezoid_grid(-10, 10, 0.05)
    Z = three_columns(lowers0, grid, lowers2)
    values = np.exp(mass("gmm", params, Z, [0, 2], [1 / 1.6, 1 / 0.9]))
    total = values.reshape(lowers0.size, grid.size, lowers2.size).sum(axis=(0, 2)) @ weights
    assert total == pytest.approx(1.0, abs=1e-6)


def test_kde_sums_and_integrates_to_one():
    params = kde_params(60, 3, bandwidth=0.3, seed=8)
    lowers0, lowers2 = integer_boxes(14, 0.4, 2.2), integer_boxes(12, -0.6, 3.1)
    grid, weights = trapezoid_grid(-6, 6, 0.03)
    Z = three_columns(lowers0, grid, lowers2)
    values = np.exp(mass("kde", params, Z, [0, 2], [1 / 2.2, 1 / 3.1]))
    total = values.reshape(lowers0.size, grid.size, lowers2.size).sum(axis=(0, 2)) @ weights
    assert total == pytest.approx(1.0, abs=1e-6)  # the brief asked 1e-4; it holds to 1e-8


# -- far in the tails: finite and accurate ----------------------------------------------


TAIL_BOXES = [(40.0, 0.5), (-100.5, 0.5), (31.0, 1e-6), (-35.0, 1e-9), (-700.0, 3.0), (1e3, 0.01)]


@pytest.mark.parametrize(("lower", "width"), TAIL_BOXES)
def test_far_boxes_match_the_tail_series(lower, width):
    got = float(boxes.log_interval_mass(np.array(lower), np.array(lower + width)))
    want = asymptotic_log_mass(lower, lower + width)
    assert math.isfinite(got)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_interval_masses_match_quadrature_of_the_normal_density():
    """Wide and very narrow intervals away from the far tails (where cancelling CDFs would
    lose digits) against Gauss-Kronrod on the normal density itself."""
    rng = np.random.default_rng(14)
    mid = rng.uniform(-8, 8, 60)
    width = 10 ** rng.uniform(-10, 0.5, 60)
    got = boxes.log_interval_mass(mid - width / 2, mid + width / 2)
    for value, m, w in zip(got, mid, width, strict=True):
        want, _ = integrate.quad(stats.norm.pdf, m - w / 2, m + w / 2, epsabs=0, epsrel=1e-13)
        assert value == pytest.approx(math.log(want), rel=1e-12, abs=1e-12)


def test_interval_masses_match_high_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    rng = np.random.default_rng(9)
    mid = rng.normal(0, 1, 400) * 10 ** rng.uniform(-1, 2.5, 400)
    width = 10 ** rng.uniform(-9, 1, 400)
    lower, upper = mid - width / 2, mid + width / 2
    got = boxes.log_interval_mass(lower, upper)
    for value, a, b in zip(got, lower, upper, strict=True):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        mass_ab = mpmath.ncdf(-a) - mpmath.ncdf(-b) if a > 0 else mpmath.ncdf(b) - mpmath.ncdf(a)
        assert value == pytest.approx(float(mpmath.log(mass_ab)), rel=1e-12, abs=1e-12)


def test_far_rows_under_a_mixture_are_finite_and_exact():
    """One component: the box mass is the standard normal's, by the tail series; a full
    2-D mixture: the conditional moments from an inverse (not the Cholesky factor the
    code uses), and each component's tail mass by the series."""
    one = {"covariance_type": "diag", "weights": np.ones(1), "means": np.zeros((1, 1))}
    one["covariances"] = np.full((1, 1), 4.0)  # sd 2: the box [-201, -200) is at z = -100.5
    got = mass("gmm", one, [[-201.0]], [0], [1.0])[0]
    assert got == pytest.approx(asymptotic_log_mass(-100.5, -100.0), rel=1e-12)
    assert got < -5000

    params = gmm_params("full", 2, 2, seed=10)
    z, lower, width = 1.0, 60.0, 0.5
    got = mass("gmm", params, [[z, lower]], [1], [width])[0]
    terms = []
    for weight, mean, cov in zip(
        params["weights"], params["means"], params["covariances"], strict=True
    ):
        cond_mean = mean[1] + cov[1, 0] / cov[0, 0] * (z - mean[0])
        cond_sd = math.sqrt(cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0])
        marginal = stats.norm.logpdf(z, mean[0], math.sqrt(cov[0, 0]))
        a = (lower - cond_mean) / cond_sd
        terms.append(math.log(weight) + marginal + asymptotic_log_mass(a, a + width / cond_sd))
    assert got == pytest.approx(float(np.logaddexp(*terms)), rel=1e-12)


def test_far_rows_under_a_kernel_density_are_finite_and_exact():
    params = kde_params(2, 2, bandwidth=0.5, seed=11)
    z, lower, width = 0.3, -40.0, 0.2
    got = mass("kde", params, [[z, lower]], [1], [width])[0]
    terms = [
        stats.norm.logpdf(z, p[0], 0.5)
        + asymptotic_log_mass((lower - p[1]) / 0.5, (lower + width - p[1]) / 0.5)
        for p in params["points"]
    ]
    assert math.isfinite(got)
    assert got == pytest.approx(float(np.logaddexp(*terms)) - math.log(2), rel=1e-12)


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_rows_at_infinity_have_no_mass(family):
    params = gmm_params("diag", 2, 2) if family == "gmm" else kde_params(20, 2)
    Z = [[0.0, np.inf], [np.inf, 0.0], [0.0, -np.inf], [-np.inf, 0.0], [0.0, 0.0]]
    got = mass(family, params, Z, [1], [0.5])
    assert np.all(got[:4] == -np.inf)
    assert np.isfinite(got[4])


# -- the fast paths against a slow direct sum --------------------------------------------


def slow_kde_mass(params: dict, Z, discrete, widths) -> np.ndarray:
    """Every point, every row, with scipy.stats: the sum the module must reproduce."""
    points, h = params["points"], params["bandwidth"]
    continuous = [j for j in range(points.shape[1]) if j not in list(discrete)]
    out = []
    for row in Z:
        per_point = np.ones(points.shape[0])
        for j in continuous:
            per_point *= stats.norm.pdf(row[j], points[:, j], h)
        for j, width in zip(discrete, widths, strict=True):
            per_point *= stats.norm.cdf(row[j] + width, points[:, j], h) - stats.norm.cdf(
                row[j], points[:, j], h
            )
        out.append(math.log(per_point.mean()))
    return np.array(out)


def test_kde_blocks_tables_and_repeats_agree_with_a_slow_sum(monkeypatch):
    """Many blocks on two threads, tables for the whole call or per block, repeated rows
    scored once and repeated training points merged: all equal the direct sum."""
    rng = np.random.default_rng(12)
    params = kde_params(3000, 3, bandwidth=0.3, seed=12)
    params["points"][:1000] = params["points"][1000:2000]  # repeated training points
    Z = rng.normal(0, 1.2, (1500, 3))
    Z[:, 1] = np.floor(Z[:, 1] * 3) / 3  # few distinct box edges, repeated rows
    Z[:, 2] = np.floor(Z[:, 2] * 2) / 2
    Z[700:] = Z[:800]
    discrete, widths = np.array([1, 2]), np.array([1 / 3, 1 / 2])
    want = slow_kde_mass(params, Z[::15], discrete, widths)
    got = mass("kde", params, Z, discrete, widths)
    np.testing.assert_allclose(got[::15], want, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(boxes, "_TABLE_ENTRIES", 0)
    np.testing.assert_allclose(mass("kde", params, Z, discrete, widths), got, rtol=1e-13)


def test_kde_tiny_bandwidth_sums_differences_directly():
    """With h = 1e-4, |q|^2 + |p|^2 - 2 q.p would cancel 1e-7 nats: the squared
    differences are summed instead."""
    rng = np.random.default_rng(15)
    params = kde_params(200, 3, bandwidth=1e-4, seed=15)
    Z = params["points"][::10] + rng.normal(0, 1e-4, (20, 3))
    Z[:, 0] = np.floor(Z[:, 0] / 3e-4) * 3e-4
    got = mass("kde", params, Z, [0], [3e-4])
    np.testing.assert_allclose(got, slow_kde_mass(params, Z, [0], [3e-4]), rtol=0, atol=1e-9)


def test_gmm_blocks_agree_with_rows_one_at_a_time():
    params = gmm_params("diag", 5, 10, seed=13)
    Z = np.random.default_rng(13).normal(0, 2, (30_000, 10))  # past one block of rows
    discrete, widths = np.array([0, 4, 9]), np.array([0.3, 1.0, 0.05])
    got = mass("gmm", params, Z, discrete, widths)
    for i in range(0, Z.shape[0], 2999):
        assert got[i] == mass("gmm", params, Z[i : i + 1], discrete, widths)[0]


# -- what is supported, and refusals -----------------------------------------------------


@pytest.mark.parametrize(
    ("family", "params", "n_discrete", "expected"),
    [
        ("gmm", {"covariance_type": "diag"}, 5, True),
        ("gmm", {"covariance_type": "spherical"}, 3, True),
        ("gmm", {"covariance_type": "full"}, 1, True),
        ("gmm", {"covariance_type": "tied"}, 1, True),
        ("gmm", {"covariance_type": "full"}, 2, False),
        ("gmm", {"covariance_type": "tied"}, 3, False),
        ("gmm", {"covariance_type": "full"}, 0, True),
        ("kde", {"kernel": "gaussian"}, 4, True),
        ("kde", {"kernel": "gaussian", "rotation": np.eye(2)}, 1, False),
        ("kde", {"kernel": "tophat"}, 1, False),
        ("kde", {"kernel": "epanechnikov"}, 0, True),
        ("kde", {"kernel": "gaussian", "rotation": np.eye(2)}, 0, True),
        ("flow", {}, 1, False),
    ],
)
def test_supports(family, params, n_discrete, expected):
    assert boxes.supports(family, params, n_discrete) is expected


def test_unsupported_combinations_are_refused():
    with pytest.raises(ValueError, match="no closed form"):
        mass("gmm", gmm_params("full", 2, 3), np.zeros((2, 3)), [0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="no closed form"):
        mass("kde", {**kde_params(10, 2), "kernel": "tophat"}, np.zeros((2, 2)), [0], [0.5])
    rotated = kde_params(10, 2, rotation=np.eye(2))
    with pytest.raises(ValueError, match="no closed form"):
        mass("kde", rotated, np.zeros((2, 2)), [1], [0.5])


@pytest.mark.parametrize(
    ("discrete", "widths"),
    [([2, 0], [0.5, 0.5]), ([0, 0], [0.5, 0.5]), ([3], [0.5]), ([0], [0.0]), ([0], [])],
)
def test_bad_columns_or_widths_are_refused(discrete, widths):
    with pytest.raises(ValueError, match="Expected"):
        mass("gmm", gmm_params("diag", 2, 3), np.zeros((2, 3)), discrete, widths)
