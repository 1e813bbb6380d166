"""The default Gaussian KDE path in 1-D and 2-D (grid cells) against a direct sum.

The referee is written here from the formula, with scipy's logsumexp over every training
point: log p(z) = logsumexp(-|z - x_i|^2 / 2h^2) - log n - (d/2) log(2 pi h^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from gencli.density.families import kde_cells, kde_exact, kde_scoring


def direct(points: np.ndarray, Z: np.ndarray, h: float) -> np.ndarray:
    n, d = points.shape
    out = np.empty(Z.shape[0])
    for i, z in enumerate(Z):
        u2 = np.sum((z - points) ** 2, axis=1) / (h * h)
        out[i] = logsumexp(-0.5 * u2)
    return out - math.log(n) - 0.5 * d * math.log(2 * math.pi * h * h)


def clusters(n: int, d: int, seed: int, scale: float = 0.7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]])[:, :d]
    return np.vstack([rng.normal(c, scale, size=(n // 3, d)) for c in centres])


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.expm1(a - b))))


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("h", [0.01, 0.05, 0.3, 3.0])
def test_default_gaussian_path_is_within_its_tolerance_of_a_direct_sum(d: int, h: float) -> None:
    points = clusters(1500, d, 0)
    queries = np.vstack(
        [
            clusters(900, d, 1),
            np.full((2, d), 9.0),  # far outside the training box
            np.full((2, d), -4.4),  # just outside it
            points[:5],  # exactly on training points
        ]
    )
    got = kde_scoring.log_density(points, queries, "gaussian", h)
    assert rel_error(got, direct(points, queries, h)) <= kde_exact.FAST_RTOL


def test_rows_far_from_the_cells_are_flagged_and_summed_in_full() -> None:
    points = clusters(1500, 2, 0)
    queries = np.vstack([clusters(300, 2, 1), [[40.0, -40.0], [6.0, 6.0]]])
    result = kde_cells.cell_log_sums(points, queries, 0.3)
    assert result is not None
    _, unsure = result
    assert unsure[-2:].all()  # nothing near them: their sums cannot be trusted
    assert unsure[:-2].mean() < 0.05  # most rows are settled by their own cells
    got = kde_scoring.log_density(points, queries, "gaussian", 0.3)
    assert rel_error(got, direct(points, queries, 0.3)) <= kde_exact.FAST_RTOL


def test_many_unsettled_rows_go_to_the_tree_with_the_same_tolerance(monkeypatch) -> None:
    points = clusters(1500, 2, 0)
    queries = clusters(600, 2, 1)
    h = 0.05  # narrow for 500 points a cluster: many sums are below one kernel's worth
    result = kde_cells.cell_log_sums(points, queries, h)
    assert result is not None and result[1].mean() > 0.1
    calls = []
    tree = kde_scoring.fast_log_density
    monkeypatch.setattr(kde_scoring, "_FULL_SUM_PAIRS", 0)
    monkeypatch.setattr(
        kde_scoring, "fast_log_density", lambda *a, **k: calls.append(1) or tree(*a, **k)
    )
    got = kde_scoring.log_density(points, queries, "gaussian", h)
    assert calls
    assert rel_error(got, direct(points, queries, h)) <= kde_exact.FAST_RTOL


def test_rows_that_are_all_far_away_are_summed_in_full() -> None:
    points = clusters(300, 2, 0)
    queries = np.array([[50.0, 50.0], [-60.0, 0.0]])
    result = kde_cells.cell_log_sums(points, queries, 0.1)
    assert result is not None and result[1].all()
    got = kde_scoring.log_density(points, queries, "gaussian", 0.1)
    assert rel_error(got, direct(points, queries, 0.1)) <= kde_exact.FAST_RTOL


def test_settled_rows_keep_the_bound_they_claim() -> None:
    points = clusters(3000, 2, 2, scale=0.4)
    queries = clusters(1200, 2, 3, scale=0.6)
    h = 0.08
    result = kde_cells.cell_log_sums(points, queries, h)
    assert result is not None
    log_sums, unsure = result
    n, d = points.shape
    got = log_sums - math.log(n) - 0.5 * d * math.log(2 * math.pi * h * h)
    reference = direct(points, queries, h)
    settled = ~unsure
    assert settled.sum() > 1000
    # A truncated sum only ever misses mass: it is below the truth, by at most rtol.
    assert np.all(got[settled] <= reference[settled] + 1e-12)
    assert rel_error(got[settled], reference[settled]) <= kde_exact.FAST_RTOL


def test_a_dense_cell_is_evaluated_in_blocks_with_the_same_result() -> None:
    rng = np.random.default_rng(4)
    points = rng.normal(0.0, 0.01, size=(6000, 2))  # one cell holds every point
    queries = rng.normal(0.0, 0.01, size=(400, 2))
    h = 0.05
    got = kde_scoring.log_density(points, queries, "gaussian", h)
    assert kde_cells._CELL_BLOCK_ENTRIES < 400 * 6000  # so the block loop runs
    assert rel_error(got, direct(points, queries, h)) <= kde_exact.FAST_RTOL


def test_rows_spread_over_many_cells_go_to_the_tree() -> None:
    rng = np.random.default_rng(5)
    points = rng.uniform(-50, 50, size=(2000, 2))
    queries = rng.uniform(-50, 50, size=(2500, 2))
    h = 0.01
    assert kde_cells.cell_log_sums(points, queries, h) is None
    got = kde_scoring.log_density(points, queries, "gaussian", h)
    assert rel_error(got, direct(points, queries, h)) <= kde_exact.FAST_RTOL


def test_chunks_scored_with_a_shared_cache_match_one_call() -> None:
    points = clusters(3000, 2, 6)
    queries = clusters(2400, 2, 7)
    whole = kde_scoring.log_density(points, queries, "gaussian", 0.1)
    cache: dict = {}
    parts = [
        kde_scoring.log_density(points, part, "gaussian", 0.1, cache=cache)
        for part in np.array_split(queries, 3)
    ]
    assert "cells" in cache
    # Within the tolerance; here (every row settled by its cells) bit for bit.
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@settings(max_examples=60, deadline=None)
@given(
    d=st.sampled_from([1, 2]),
    n=st.integers(1, 200),
    m=st.integers(1, 60),
    log_h=st.floats(-3.0, 1.0),
    spread=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_small_problem_matches_a_direct_sum(
    d: int, n: int, m: int, log_h: float, spread: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(0.0, 1.0, size=(n, d)) * spread
    points[: n // 2] = points[0]  # repeated training points
    queries = np.vstack([rng.normal(0.0, 1.0, size=(m, d)) * (spread + 1.0), points[:3]])
    h = 10.0**log_h
    got = kde_scoring.log_density(points, queries, "gaussian", h)
    reference = direct(points, queries, h)
    finite = np.isfinite(reference)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    assert rel_error(got[finite], reference[finite]) <= kde_exact.FAST_RTOL


@pytest.mark.parametrize("mode", ["fast", "exact"])
@pytest.mark.parametrize("d", [1, 2])
def test_a_bandwidth_far_below_the_data_scale_keeps_the_tolerance(mode: str, d: int) -> None:
    # |q|^2 + |p|^2 - 2 q.p would lose 1e-5 of the density to cancellation here.
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, d)) * 3
    h = 1e-5
    queries = points[:50] + 6 * h  # six bandwidths from a training point
    got = kde_scoring.log_density(points, queries, "gaussian", h, mode=mode)
    assert rel_error(got, direct(points, queries, h)) <= kde_exact.FAST_RTOL


def test_a_grid_too_fine_for_its_cell_keys_goes_to_the_tree() -> None:
    # 1e10 wide at bandwidth 1: about 2^64 cells in 2-D, more than int64 keys can number.
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 1e10, size=(300, 2))
    queries = np.vstack([points[:40], rng.uniform(0, 1e10, size=(20, 2))])
    assert kde_cells.cell_log_sums(points, queries, 1.0) is None
    got = kde_scoring.log_density(points, queries, "gaussian", 1.0)
    reference = direct(points, queries, 1.0)
    assert rel_error(got[:40], reference[:40]) <= kde_exact.FAST_RTOL  # on training rows
    # Between them, the nearest point is ~1e8 bandwidths away: a log-density near -1e16,
    # known only to about eps * 1e16 nats by any method.
    np.testing.assert_allclose(got[40:], reference[40:], rtol=1e-12)


@pytest.mark.parametrize(("kernel", "d", "h"), [("exponential", 16, 0.03), ("linear", 64, 0.03)])
def test_kernels_of_the_distance_itself_keep_the_tolerance_on_training_rows(
    kernel: str, d: int, h: float
) -> None:
    # exp(-u) and 1 - u take a square root of u^2: a rounding slack s in u^2 becomes
    # sqrt(s) at u = 0, so rows on top of a training point are where it would show.
    rng = np.random.default_rng(1)
    points = rng.normal(size=(2000, d))
    queries = points[:200]
    sums = []
    for z in queries:
        u = np.sqrt(np.sum(((z - points) / h) ** 2, axis=1))
        sums.append(np.sum(np.exp(-u)) if kernel == "exponential" else np.sum(np.maximum(1 - u, 0)))
    got = kde_scoring.log_density(points, queries, kernel, h, mode="exact")
    got += kde_scoring.log_normalizer(kernel, d, h, len(points))  # back to plain sums
    assert rel_error(got, np.log(sums)) <= kde_exact.FAST_RTOL
