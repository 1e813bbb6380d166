"""gencli.evaluate: every metric on cases with a known answer, and the energy statistic
against a direct implementation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gencli
from gencli.errors import DataError
from gencli.evaluate import energy_test, evaluate

MEAN = np.array([0.0, 5.0, -1.0])
SD = np.array([1.0, 2.0, 3.0])
N = 1000


@pytest.fixture(scope="module")
def gaussian_model() -> gencli.DensityModel:
    """One Gaussian fitted to many draws: its samples are N(MEAN, diag(SD^2)) to within
    sampling error far below what the tests look at."""
    rng = np.random.default_rng(123)
    return gencli.fit(rng.normal(MEAN, SD, size=(50_000, 3)), "gmm", components=1)


def fresh(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(MEAN, SD, size=(n, 3))


def test_same_distribution_shows_no_difference(gaussian_model) -> None:
    result = evaluate(gaussian_model, fresh(1), seed=0)
    assert [c["column"] for c in result["per_column"]] == ["x0", "x1", "x2"]
    for column in result["per_column"]:
        assert column["ks_pvalue"] > 0.001
        assert column["ks_statistic"] < 0.08
    clf = result["classifier"]
    assert clf["standard_error"] == pytest.approx(math.sqrt(0.25 / (2 * N)), rel=0.05)
    assert abs(clf["accuracy"] - 0.5) < 4 * clf["standard_error"]
    assert result["energy"]["pvalue"] > 0.01
    assert abs(result["energy"]["statistic"]) < 0.01
    assert result["correlation"]["max_abs_difference"] < 0.1
    assert result["training_rows_warning"] is False
    assert result["rows"] == result["generated_rows"] == N


def test_a_shifted_mean_is_detected_on_that_column_only(gaussian_model) -> None:
    real = fresh(2)
    real[:, 1] += 1.0 * SD[1]  # one standard deviation
    result = evaluate(gaussian_model, real, seed=0)
    ks = {c["column"]: c for c in result["per_column"]}
    # KS statistic of N(0,1) vs N(1,1): sup |Phi(x) - Phi(x - 1)| = 2 Phi(0.5) - 1 = 0.383
    assert ks["x1"]["ks_statistic"] == pytest.approx(2 * stats.norm.cdf(0.5) - 1, abs=0.05)
    assert ks["x1"]["ks_pvalue"] < 1e-20
    assert ks["x1"]["real_mean"] - ks["x1"]["generated_mean"] == pytest.approx(SD[1], rel=0.1)
    for name in ("x0", "x2"):
        assert ks[name]["ks_statistic"] < 0.08 and ks[name]["ks_pvalue"] > 0.001
    assert result["energy"]["pvalue"] < 0.01
    clf = result["classifier"]
    # The best possible accuracy here is Phi(0.5) = 0.69; a fitted classifier gets close.
    assert clf["accuracy"] > 0.6 and clf["accuracy"] > 0.5 + 5 * clf["standard_error"]
    assert clf["pvalue"] < 1e-6
    assert result["correlation"]["max_abs_difference"] < 0.1  # a shift leaves them alone


def test_a_changed_correlation_shows_in_the_correlation_difference(gaussian_model) -> None:
    rho = 0.8
    R = np.eye(3)
    R[0, 2] = R[2, 0] = rho
    cov = np.diag(SD) @ R @ np.diag(SD)
    real = np.random.default_rng(3).multivariate_normal(MEAN, cov, size=N)
    result = evaluate(gaussian_model, real, seed=0)
    corr = result["correlation"]
    assert corr["worst_pair"] == ["x0", "x2"]
    assert corr["max_abs_difference"] == pytest.approx(rho, abs=0.06)
    assert corr["frobenius"] == pytest.approx(rho * math.sqrt(2), abs=0.1)
    assert np.asarray(corr["real"])[0, 2] == pytest.approx(rho, abs=0.05)
    # The marginals are unchanged, so the per-column tests cannot see it ...
    assert all(c["ks_pvalue"] > 0.001 for c in result["per_column"])
    # ... but the joint tests do.
    assert result["energy"]["pvalue"] < 0.01
    assert result["classifier"]["accuracy"] > 0.6


def direct_energy(a: np.ndarray, b: np.ndarray, unbiased: bool = True) -> float:
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| on pooled-standardized columns, by brute force."""
    pooled = np.vstack([a, b])
    sd = pooled.std(axis=0)
    za, zb = (a - pooled.mean(0)) / sd, (b - pooled.mean(0)) / sd

    def mean_distance(u: np.ndarray, v: np.ndarray, same: bool) -> float:
        total = sum(float(np.linalg.norm(x - y)) for x in u for y in v)
        pairs = len(u) * (len(v) - 1) if same and unbiased else len(u) * len(v)
        return total / pairs

    return (
        2 * mean_distance(za, zb, False) - mean_distance(za, za, True) - mean_distance(zb, zb, True)
    )


def test_energy_statistic_matches_a_direct_implementation() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 3)), rng.normal(0.5, 1.3, size=(30, 3))
    result = energy_test(a, b, n_permutations=50, rng=np.random.default_rng(0))
    assert result["statistic"] == pytest.approx(direct_energy(a, b), rel=1e-10)
    assert result["rows_used"] == [40, 30]
    assert 1 / 51 <= result["pvalue"] <= 1


def test_the_direct_energy_agrees_with_scipy_in_one_dimension() -> None:
    # scipy's energy_distance is the square root of the biased (V-statistic) version.
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(25, 1)), rng.normal(1, 2, size=(35, 1))
    pooled = np.vstack([a, b])
    za, zb = ((x - pooled.mean()) / pooled.std() for x in (a, b))
    expected = stats.energy_distance(za[:, 0], zb[:, 0]) ** 2
    assert direct_energy(a, b, unbiased=False) == pytest.approx(expected, rel=1e-10)


def test_energy_permutation_p_value_is_uniformish_under_the_null_and_none_without() -> None:
    rng = np.random.default_rng(6)
    pvalues = [
        energy_test(rng.normal(size=(30, 2)), rng.normal(size=(30, 2)), n_permutations=99, rng=rng)[
            "pvalue"
        ]
        for _ in range(40)
    ]
    assert 0.3 < np.mean(pvalues) < 0.7
    assert min(pvalues) >= 0.01
    none = energy_test(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), n_permutations=0)
    assert none["pvalue"] is None and none["permutations"] == 0


def test_energy_subsamples_each_side() -> None:
    rng = np.random.default_rng(7)
    result = energy_test(rng.normal(size=(300, 2)), rng.normal(size=(250, 2)), max_rows=100)
    assert result["rows_used"] == [100, 100]


def test_training_rows_are_flagged(tmp_path) -> None:
    rows = np.random.default_rng(8).normal(size=(200, 2))
    model = gencli.fit(rows, "gmm", components=1)
    assert evaluate(model, rows, n_permutations=10)["training_rows_warning"] is True
    assert evaluate(model, rows[:-1], n_permutations=10)["training_rows_warning"] is False


def test_the_same_seed_gives_the_same_result_and_another_seed_another(gaussian_model) -> None:
    real = fresh(9, 300)
    one = evaluate(gaussian_model, real, seed=4, n_permutations=20)
    two = evaluate(gaussian_model, real, seed=4, n_permutations=20)
    other = evaluate(gaussian_model, real, seed=5, n_permutations=20)
    for key in ("per_column", "correlation", "energy", "classifier"):
        assert one[key] == two[key]
    assert one["per_column"] != other["per_column"]


def test_dataframe_columns_are_matched_by_name() -> None:
    named = gencli.fit(pd.DataFrame(fresh(10, 500), columns=["a", "b", "c"]), "gmm", components=1)
    real = fresh(11, 200)
    frame = pd.DataFrame(real[:, ::-1], columns=["c", "b", "a"])
    by_name = evaluate(named, frame, n_permutations=10)
    by_array = evaluate(named, real, n_permutations=10)
    assert [c["column"] for c in by_name["per_column"]] == ["a", "b", "c"]
    assert by_name["per_column"] == by_array["per_column"]


def test_rounded_data_gets_a_note(gaussian_model) -> None:
    result = evaluate(gaussian_model, np.round(fresh(11, 400)), n_permutations=10)
    assert result["notes"] and "x1" in result["notes"][0]
    assert evaluate(gaussian_model, fresh(11, 400), n_permutations=10)["notes"] == []


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros((3, 3)), "at least 5 rows"),
        (np.zeros((50, 2)), "expected 3 columns"),
        (np.full((50, 3), np.nan), "missing or infinite"),
    ],
)
def test_bad_rows_are_a_data_error(gaussian_model, rows, message) -> None:
    with pytest.raises(DataError, match=message):
        evaluate(gaussian_model, rows)
