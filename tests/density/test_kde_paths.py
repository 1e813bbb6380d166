"""The kernel sums behind ``score`` from 3-D up: the blocked exact sum, its single-precision
variant, and the default mode's measured choice between the exact sum and the tree.

The referee is written here from the formula (scipy's logsumexp over the explicit
differences of every pair), independent of gencli's factored sums and tiling.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from gencli.density.families import kde_exact, kde_scoring, kde_tree


def direct(
    points: np.ndarray, Z: np.ndarray, h: float, weights: np.ndarray | None = None
) -> np.ndarray:
    n, d = points.shape
    w = np.ones(n) if weights is None else weights
    out = np.empty(Z.shape[0])
    for i, z in enumerate(Z):
        u2 = np.sum((z - points) ** 2, axis=1) / (h * h)
        out[i] = logsumexp(-0.5 * u2, b=w)
    return out - math.log(w.sum()) - 0.5 * d * math.log(2 * math.pi * h * h)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative density error, less what rounding the log-density itself costs
    (a log-density of -3e6 is only known to 1e-9 nats in double precision)."""
    with np.errstate(invalid="ignore"):
        error = np.abs(np.expm1(a - b)) - 4e-16 * np.abs(b)
    return float(np.max(np.where(np.isnan(error), np.inf, error)))


def data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, size=(3, d))
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d))


@pytest.mark.parametrize("d", [1, 3, 10])
@pytest.mark.parametrize("h", [0.05, 0.5, 4.0])
def test_blocked_exact_sum_matches_a_direct_sum(d: int, h: float, monkeypatch) -> None:
    # Small tiles, so rows run across several point blocks (the running log-sum-exp).
    monkeypatch.setattr(kde_exact, "_TILE_COLUMNS", 128)
    monkeypatch.setattr(kde_exact, "_TILE_ENTRIES", 1024)
    points, queries = data(700, d, 0), data(90, d, 1)
    queries[0] = 40.0  # far from everything: its terms sit deep in the exponent's tail
    got = kde_exact.exact_log_density(points, queries, "gaussian", h)
    assert rel_error(got, direct(points, queries, h)) <= 1e-11


def test_weights_count_repeated_points() -> None:
    points, queries = data(300, 4, 2), data(50, 4, 3)
    weights = np.random.default_rng(4).integers(1, 5, 300).astype(float)
    repeated = np.repeat(points, weights.astype(int), axis=0)
    got = kde_exact.exact_log_density(points, queries, "gaussian", 0.4, weights=weights)
    assert rel_error(got, direct(repeated, queries, 0.4)) <= 1e-11


@pytest.mark.parametrize("d", [2, 5, 10])
@pytest.mark.parametrize("h", [0.02, 0.3, 3.0])
def test_single_precision_exponentials_stay_within_the_tolerance(d: int, h: float) -> None:
    points, queries = data(2000, d, 5), data(300, d, 6)
    queries[:3] = points[:3]  # exactly on a point: one term dominates
    got = kde_exact.exact_log_density(points, queries, "gaussian", h, rtol=kde_exact.FAST_RTOL)
    assert rel_error(got, direct(points, queries, h)) <= 0.5 * kde_exact.FAST_RTOL


def test_rows_with_infinite_values_score_minus_infinity_beside_finite_ones() -> None:
    points = data(200, 3, 7)
    queries = np.vstack([data(5, 3, 8), [[np.inf, 0.0, 0.0]], data(5, 3, 9)])
    got = kde_exact.exact_log_density(points, queries, "gaussian", 0.5)
    assert got[5] == -np.inf
    finite = np.r_[0:5, 6:11]
    assert rel_error(got[finite], direct(points, queries[finite], 0.5)) <= 1e-11


@pytest.mark.parametrize("kernel", ["gaussian", "exponential", "epanechnikov"])
def test_pairs_within_reach_is_a_count_of_points_inside_the_radius(kernel: str) -> None:
    points, queries = data(1500, 3, 10), data(40, 3, 11)
    h, n = 0.2, 1500
    distances = np.linalg.norm(queries[:, None, :] - points[None, :, :], axis=2)
    nearest = distances.min(axis=1)
    reach = math.log(n / kde_exact.FAST_RTOL)
    radius = {
        "gaussian": np.sqrt(nearest**2 + 2 * h * h * reach),
        "exponential": nearest + h * reach,
        "epanechnikov": np.full(40, h),
    }[kernel]
    expected = np.mean(np.sum(distances <= radius[:, None], axis=1))
    assert kde_tree.pairs_within_reach(points, queries, kernel, h) == pytest.approx(expected)


@pytest.mark.parametrize("path", [None, "trial", "exact", "tree"])
@pytest.mark.parametrize("h", [0.05, 0.6])
def test_the_measured_path_scores_every_row_once_within_the_tolerance(
    path: str | None, h: float, monkeypatch
) -> None:
    """Whatever the timing decides (or a path remembered from a previous chunk), every row
    is scored, by the pilot or by the path chosen after it, within FAST_RTOL. 'trial':
    the tree is timed on its share of the rows however short the exact sum would be."""
    points, queries = data(3000, 3, 12), data(2500, 3, 13)  # past the small-job shortcut
    if path == "trial":
        monkeypatch.setattr(kde_scoring, "_TREE_TRIAL_SECONDS", 0.0)
        monkeypatch.setattr(kde_scoring, "_TREE_BUILT_SECONDS", 0.0)
    key = ("kde_path", "gaussian", h)
    cache: dict = {key: (path, 50.0)} if path in ("exact", "tree") else {}
    got = kde_scoring.measured_path_log_density(points, queries, "gaussian", h, cache=cache)
    assert cache[key][0] in ("exact", "tree")
    assert rel_error(got, reference_3d(h)) <= kde_exact.FAST_RTOL


@functools.cache
def reference_3d(h: float) -> np.ndarray:
    return direct(data(3000, 3, 12), data(2500, 3, 13), h)


def test_the_default_mode_in_3d_and_up_matches_the_exact_mode() -> None:
    points, queries = data(4000, 6, 14), data(1500, 6, 15)
    exact = kde_scoring.log_density(points, queries, "gaussian", 0.3, mode="exact")
    fast = kde_scoring.log_density(points, queries, "gaussian", 0.3, mode="fast", cache={})
    assert rel_error(fast, exact) <= kde_exact.FAST_RTOL
    assert rel_error(exact, direct(points, queries, 0.3)) <= 1e-11


def test_overlapping_sums_on_two_threads_leave_blas_threads_as_they_were() -> None:
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    points, queries = data(3000, 4, 16), data(2000, 4, 17)
    workers = [
        threading.Thread(
            target=kde_exact.exact_log_density, args=(points, queries, "gaussian", 0.3)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert blas_threads() == before
