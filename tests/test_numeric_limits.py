"""Numbers at the edges: constant columns, magnitudes near the float limits, extreme
bandwidths, held-out splits that leave too few rows, collinear columns.

Each class is checked in a real process (exit code, one ``Error:`` line, no traceback, no
output file, no RuntimeWarning on stderr) and, where it is a numbers case, against an
independent reference computed here: scipy.stats densities or direct log-sum-exp sums,
taken after an exact power-of-two rescaling so that 1e300-sized values neither overflow
nor underflow in the reference itself.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import gencli
from gencli.density.families.kernels import log_kernel_norm
from gencli.density.preprocess import split_rows
from gencli.errors import FitError, GencliError

RNG = np.random.default_rng(20250101)
BASE = RNG.normal(size=(120, 2)) @ np.array([[1.0, 0.5], [0.0, 1.0]])


def run_gencli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gencli", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 1, exactly one line on stderr (the error), no traceback; return the line."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def rows_of(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.zeros_like(x), x])


def write_csv(path: str, header: str, rows: list[str]) -> Path:
    Path(path).write_text(header + "\n" + "\n".join(rows) + "\n")
    return Path(path)


def powers_of_two(X: np.ndarray) -> np.ndarray:
    """Per-column powers of two bringing each column's largest magnitude near 1 (exact)."""
    return np.exp2(-np.floor(np.log2(np.max(np.abs(X), axis=0))))


def gaussian_reference(X: np.ndarray, Q: np.ndarray, reg_covar: float = 1e-6) -> np.ndarray:
    """The one-component ML Gaussian of X at Q (scipy), with gencli's regularizer
    (reg_covar x each column's variance on the diagonal), in rescaled units."""
    c = powers_of_two(X)
    S = X * c
    cov = np.atleast_2d(np.cov(S, rowvar=False, ddof=0)) + reg_covar * np.diag(S.var(axis=0))
    return stats.multivariate_normal(S.mean(axis=0), cov).logpdf(Q * c) + np.sum(np.log(c))


def gaussian_kde_reference(X: np.ndarray, Q: np.ndarray, bandwidth: float) -> np.ndarray:
    """A direct sum of Gaussian kernels of width bandwidth x each column's std."""
    c = powers_of_two(X)
    S, T = X * c, Q * c
    width = bandwidth * S.std(axis=0)
    u = (T[:, None, :] - S[None, :, :]) / width
    log_kernels = np.sum(-0.5 * u**2 - np.log(width) - 0.5 * math.log(2 * math.pi), axis=2)
    return logsumexp(log_kernels, axis=1) - math.log(len(X)) + np.sum(np.log(c))


def fit_quietly(X: np.ndarray, model: str, **options) -> gencli.DensityModel:
    """gencli.fit with every RuntimeWarning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return gencli.fit(X, model, **options)


# ----------------------------------------------------------------------------- constant columns

CONSTANT_SPELLINGS = {
    "4.2": ["4.2"] * 40,
    "0.1": ["0.1"] * 40,
    "1e300": ["1e300"] * 40,
    "ints": ["7"] * 40,
    "mixed-spellings": ["4.2", "4.20", "42e-1", "4.2e0", "0.42e1"] * 8,
    "signed-zeros": ["0.0", "-0.0", "0", "-0"] * 10,
}


@pytest.mark.parametrize("spelling", CONSTANT_SPELLINGS, ids=list(CONSTANT_SPELLINGS))
def test_constant_column_is_refused_under_every_spelling(spelling):
    values = CONSTANT_SPELLINGS[spelling]
    other = RNG.normal(size=len(values))
    write_csv("c.csv", "y,x", [f"{o:.17g},{v}" for o, v in zip(other, values, strict=True)])
    result = run_gencli("fit", "c.csv", "-o", "m.pkl")
    line = assert_refused(result, "c.csv", "'x'", "constant", "--columns")
    assert "'y'" not in line
    assert not Path("m.pkl").exists()


@pytest.mark.parametrize("model", ["gmm", "kde"])
@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("value", [4.2, 0.1, -3e-250, 7.0])
def test_constant_column_is_refused_for_every_model_and_setting(model, standardize, value):
    X = BASE.copy()
    X[:, 1] = value
    with pytest.raises(FitError, match=r"'x1' is constant .*with columns"):
        gencli.fit(X, model, standardize=standardize, validation=0.0)


def test_column_constant_on_the_training_rows_is_refused_in_a_real_process():
    x = np.full(40, 2.5)
    x[[3, 17]] = 9.0
    # A seed whose held-out rows (20%) take both 9.0s, leaving 2.5 alone to train on.
    seed = next(s for s in range(1000) if {3, 17} <= set(split_rows(40, 0.2, s)[1].tolist()))
    rows = [f"{a:.17g},{b:.17g}" for a, b in zip(RNG.normal(size=40), x, strict=True)]
    write_csv("t.csv", "a,b", rows)
    result = run_gencli("fit", "t.csv", "--seed", str(seed), "-o", "m.pkl")
    assert_refused(result, "'b'", "constant", "32 training rows", "--validation 0")
    assert not Path("m.pkl").exists()
    # ... while every row together is a fine column (two values).
    assert np.all(np.isfinite(gencli.fit("t.csv", validation=0.0).score_samples(rows_of(x))))


# ----------------------------------------------------------------------------- collinear columns


def _integral_over_a_ridge(model: gencli.DensityModel, slope: float, intercept: float) -> float:
    """Integral of the 2-D density over (x, y) in coordinates u = x, v = y - slope x -
    intercept (Jacobian 1), with v on a geometric grid fine enough for any ridge width
    from 1e-9 to 1e3."""
    mean, std = model.shift[0], model.scale[0]
    u = np.linspace(mean - 8 * std, mean + 8 * std, 161)
    half = np.geomspace(1e-9, 1e3, 400) * model.scale[1]
    v = np.concatenate([-half[::-1], [0.0], half])
    U, V = np.meshgrid(u, v, indexing="ij")
    points = np.column_stack([U.ravel(), (V + slope * U + intercept).ravel()])
    density = np.exp(model.score_samples(points)).reshape(U.shape)
    return float(np.trapezoid(np.trapezoid(density, v, axis=1), u))


@pytest.mark.parametrize("model", ["gmm", "kde"])
@pytest.mark.parametrize(("slope", "intercept"), [(1.0, 0.0), (-0.5, 3.0)])
def test_collinear_columns_still_give_a_density_that_integrates_to_one(model, slope, intercept):
    x = RNG.normal(size=100)
    X = np.column_stack([x, slope * x + intercept])
    options = {"components": 2} if model == "gmm" else {}
    fitted = fit_quietly(X, model, validation=0.0, **options)
    assert np.all(np.isfinite(fitted.score_samples(X)))
    assert _integral_over_a_ridge(fitted, slope, intercept) == pytest.approx(1.0, abs=0.02)


# ----------------------------------------------------------------------------- magnitudes

NEAR_1E300 = 1e300 * (3.0 + BASE)
FULL_SPAN = np.column_stack([1.7e308 * RNG.uniform(-1.0, 1.0, 120), BASE[:, 0]])
FULL_SPAN[:2, 0] = [-1.7e308, 1.7e308]
# Differences overflow here too (1.7e308 - -1.7e308), but the spread is small enough
# for the density's tails to stay within the double range.
OUTLIERS = RNG.normal(size=(1200, 2)) * [1e306, 1.0]
OUTLIERS[:2, 0] = [-1e308, 1e308]


@pytest.mark.parametrize(
    "X", [NEAR_1E300, OUTLIERS, 1e-300 * (3.0 + BASE)], ids=["1e300", "outliers", "1e-300"]
)
def test_extreme_magnitudes_fit_and_score_like_the_reference(X):
    gmm = fit_quietly(X, "gmm", components=1, validation=0.2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        np.testing.assert_allclose(gmm.score_samples(X), gaussian_reference(X, X), rtol=1e-7)
        kde = fit_quietly(X, "kde", bandwidth=0.4, validation=0.2, seed=1)
        np.testing.assert_allclose(
            kde.score_samples(X), gaussian_kde_reference(X, X, 0.4), rtol=1e-7
        )
    for fitted in (gmm, kde):
        record = fitted.metadata["validation"]
        assert record["heldout_rows"] == round(0.2 * len(X))
        assert math.isfinite(record["heldout_mean_log_likelihood"])


def test_samples_near_1e300_have_the_data_spread():
    gmm = fit_quietly(NEAR_1E300, "gmm", components=1, validation=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        drawn = gmm.sample(4000, seed=3)
    c = powers_of_two(NEAR_1E300)
    np.testing.assert_allclose((drawn * c).mean(axis=0), (NEAR_1E300 * c).mean(axis=0), rtol=0.01)
    np.testing.assert_allclose((drawn * c).std(axis=0), (NEAR_1E300 * c).std(axis=0), rtol=0.05)


@pytest.mark.parametrize("model", ["gmm", "kde"])
def test_data_whose_density_reaches_past_the_largest_double_is_refused(model):
    with pytest.raises(FitError, match=r"'x0' spans -1.7e\+308 to 1.7e\+308.*divide the column"):
        gencli.fit(FULL_SPAN, model)


def test_sampling_past_the_largest_double_is_refused():
    # A bandwidth of 1e9 standard deviations on data near 1e300: draws reach 1e309.
    kde = fit_quietly(NEAR_1E300, "kde", bandwidth=1e9, validation=0.0)
    with pytest.raises(GencliError, match="beyond the largest double"):
        kde.sample(1000, seed=0)


def test_no_standardize_refuses_magnitudes_it_cannot_square():
    with pytest.raises(FitError, match=r"'x0' has values as large as .*drop standardize=False"):
        gencli.fit(NEAR_1E300, "gmm", standardize=False, validation=0.0)
    with pytest.raises(FitError, match=r"'x0' varies by only .*reg_covar"):
        gencli.fit(1e-300 * (3.0 + BASE), "gmm", standardize=False, validation=0.0)
    with pytest.raises(FitError, match=r"scott bandwidth .* is outside the range"):
        gencli.fit(1e-300 * (3.0 + BASE), "kde", standardize=False, validation=0.0)


def test_values_near_1e300_through_real_processes(tmp_path):
    np.savetxt("big.csv", NEAR_1E300, delimiter=",", header="a,b", comments="", fmt="%.17g")
    args = ["--model", "kde", "--bandwidth", "0.4", "--validation", "0.2", "-o", "m.pkl"]
    fitted = run_gencli("fit", "big.csv", *args)
    assert fitted.returncode == 0, fitted.stderr
    assert "Warning" not in fitted.stderr and "Traceback" not in fitted.stderr, fitted.stderr
    scored = run_gencli("score", "m.pkl", "big.csv", "-o", "s.csv")
    assert scored.returncode == 0 and "Warning" not in scored.stderr, scored.stderr
    got = np.loadtxt("s.csv", delimiter=",", skiprows=1)
    expected = gaussian_kde_reference(NEAR_1E300, NEAR_1E300, 0.4)
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    # The full span: its density would reach past the largest double. One line.
    np.savetxt("span.csv", FULL_SPAN, delimiter=",", header="a,b", comments="", fmt="%.17g")
    refused = run_gencli("fit", "span.csv", "-o", "span.pkl")
    assert_refused(refused, "'a' spans -1.7e+308 to 1.7e+308", "divide the column")
    assert not Path("span.pkl").exists()
    # A model whose draws leave the double range anyway (a huge bandwidth): one line.
    fit_quietly(NEAR_1E300, "kde", bandwidth=1e9, validation=0.0).save("wide.pkl")
    drawn = run_gencli("sample", "wide.pkl", "-n", "1000", "-o", "out.csv")
    assert_refused(drawn, "beyond the largest double", "smaller units")
    assert not Path("out.csv").exists()


# ----------------------------------------------------------------------------- bandwidths


def direct_kde(model: gencli.DensityModel, Q: np.ndarray) -> np.ndarray:
    """log-density of a gencli KDE at Q, summed directly in bandwidth units."""
    points = model.params["points"]
    h, kernel = model.params["bandwidth"], model.params["kernel"]
    d = points.shape[1]
    Z = (Q - model.shift) / model.scale
    u = (Z[:, None, :] - points[None, :, :]) / h  # in bandwidths: no h^2 to overflow
    u2 = np.sum(u * u, axis=2)
    if kernel == "gaussian":
        log_sums = logsumexp(-0.5 * u2, axis=1)
    else:  # tophat
        with np.errstate(divide="ignore"):
            log_sums = np.log(np.sum(u2 < 1.0, axis=1).astype(float))
    normalizer = log_kernel_norm(kernel, d) + d * math.log(h) + math.log(len(points))
    return log_sums - normalizer - np.sum(np.log(model.scale))


@pytest.mark.parametrize("bandwidth", [2e-100, 1e-30, 1e30, 5e99])
@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize(
    ("kernel", "d"), [("gaussian", 1), ("gaussian", 2), ("gaussian", 3), ("tophat", 2)]
)
def test_extreme_bandwidths_score_like_a_direct_sum(bandwidth, standardize, kernel, d):
    X = RNG.normal(size=(80, d)) * 3.0 + 1.0
    Q = np.vstack([X[:10], RNG.normal(size=(10, d))])
    model = fit_quietly(
        X, "kde", bandwidth=bandwidth, kernel=kernel, standardize=standardize, validation=0.0
    )
    reference = direct_kde(model, Q)
    modes = ["fast", "exact"] + (["approx"] if kernel == "gaussian" and d <= 2 else [])
    for mode in modes:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            got = model.score_samples(Q, mode=mode)
        assert np.array_equal(np.isfinite(got), np.isfinite(reference)), mode
        finite = np.isfinite(reference)
        # Log-densities reach -1e197 for rows between kernels 1e-100 wide: relative there,
        # else the promised density error (1e-6, gridded 1e-3) as an error in the log.
        within = 1e-3 if mode == "approx" else 1e-6
        np.testing.assert_allclose(got[finite], reference[finite], rtol=1e-9, atol=within)
    drawn = model.sample(50, seed=0)
    assert np.all(np.isfinite(drawn))


@pytest.mark.parametrize("unit", [1e80, 1e-80])
def test_huge_and_tiny_data_scales_without_standardizing_score_like_a_direct_sum(unit):
    X = unit * (RNG.normal(size=(100, 2)) + 5.0)
    model = fit_quietly(X, "kde", standardize=False, validation=0.0)
    assert model.params["bandwidth"] == pytest.approx(unit * 0.46, rel=0.3)  # Scott, data units
    Q = np.vstack([X[:5], unit * RNG.normal(5.0, 2.0, (5, 2))])
    for mode in ("fast", "exact"):
        np.testing.assert_allclose(
            model.score_samples(Q, mode=mode), direct_kde(model, Q), atol=1e-6
        )


@pytest.mark.parametrize("bandwidth", ["1e-300", "1e300", "1e-101"])
def test_bandwidth_outside_the_computable_range_is_refused_in_a_real_process(bandwidth):
    np.savetxt("d.csv", BASE, delimiter=",", header="a,b", comments="")
    result = run_gencli("fit", "d.csv", "--model", "kde", "--bandwidth", bandwidth, "-o", "m.pkl")
    assert_refused(result, f"--bandwidth {float(bandwidth):g}", "1e-100", "1e+100", "Scott")
    assert not Path("m.pkl").exists()


# ----------------------------------------------------------------------------- held-out split


def test_validation_leaving_no_rows_is_refused_in_a_real_process():
    np.savetxt("d.csv", BASE[:50], delimiter=",", header="a,b", comments="")
    result = run_gencli("fit", "d.csv", "--validation", "0.99", "-o", "m.pkl")
    assert_refused(result, "--validation 0.99", "holds out 50 of the 50 rows", "leaves 0")
    assert not Path("m.pkl").exists()


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"validation": 0.99}, ["holds out 50 of the 50", "leaves 0", "validation=0.5 or less"]),
        ({"validation": 0.97}, ["holds out 48", "leaves 2", "a 3-component", "at least 3"]),
        (
            {"model": "kde", "bandwidth": "cv", "validation": 0.95},
            ["holds out 48", "leaves 2", "bandwidth='cv' with 5 folds"],
        ),
        ({"model": "kde", "validation": 0.98}, ["leaves 1", "a kernel density needs at least 2"]),
    ],
)
def test_validation_that_leaves_too_few_rows_is_refused_from_python(options, fragments):
    options = {"model": "gmm", "components": 3} | options
    with pytest.raises(FitError) as info:
        gencli.fit(BASE[:50], options.pop("model"), **options)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize("fraction", [1.0, -0.1, float("nan"), 1.5])
def test_validation_outside_zero_to_one_is_refused_from_python(fraction):
    with pytest.raises(FitError, match="validation must be at least 0 and below 1"):
        gencli.fit(BASE, "gmm", validation=fraction)


def test_validation_that_leaves_enough_rows_fits():
    model = gencli.fit(BASE[:50], "gmm", components=3, validation=0.5, seed=0)
    assert model.metadata["validation"]["heldout_rows"] == 25


# ----------------------------------------------------------------------------- sample counts


@pytest.mark.parametrize("n", [2**63, -1, 1.5, float("inf"), "10", True])
def test_sample_counts_that_are_not_int64_rows_are_refused(n):
    model = gencli.fit(BASE, "gmm", components=1, validation=0.0)
    with pytest.raises(GencliError, match="number of rows to draw"):
        model.sample(n)
    with pytest.raises(GencliError, match="number of rows to draw"):
        next(model.iter_samples(n))


def test_a_sample_too_large_to_hold_is_refused_before_it_is_drawn(monkeypatch):
    model = gencli.fit(BASE, "gmm", components=1, validation=0.0)
    monkeypatch.setenv("GENCLI_MEMORY_LIMIT", "64M")
    with pytest.raises(GencliError, match=r"drawing 9223372036854775807 rows .* iter_samples"):
        model.sample(2**63 - 1)
