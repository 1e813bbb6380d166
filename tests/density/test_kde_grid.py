"""``--approx``: Gaussian gridding for the Gaussian KDE in 1-D and 2-D.

Referees written here from the formula: the closed-form Gaussian for a single pair, and
a direct log-sum-exp over every training point (``direct`` in test_kde_cells.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gencli.density.families import kde_exact, kde_grid
from tests.density.test_kde_cells import clusters, direct, rel_error


def gathered_sums(points: np.ndarray, Z: np.ndarray, h: float) -> np.ndarray:
    """The grid's kernel sums at Z (no fallback): NaN where the grid does not vouch."""
    grid = kde_grid._gridded_sums(points, h, None)
    assert grid is not None
    return np.exp(kde_grid._gather(grid, Z))


@pytest.mark.parametrize("h", [0.013, 1.0, 170.0])
def test_one_pair_is_relative_accurate_at_every_offset_within_reach(h: float) -> None:
    # The scheme's promise is per pair: whatever the point's and the row's offsets from the
    # grid nodes, and however far apart within reach, the error is a small relative one.
    rng = np.random.default_rng(1)
    point = np.array([[0.37 * h]])
    reach = kde_grid.GRID_REACH
    distance = np.concatenate([np.linspace(0, reach, 500), rng.uniform(0, reach, 500)]) * h
    Z = point + np.concatenate([distance, -distance])[:, None]
    grid = kde_grid._gridded_sums(point, h, None)
    assert grid is not None
    got = np.exp(kde_grid._gather(grid._replace(trusted=0.0), Z))
    expected = np.exp(-0.5 * ((Z[:, 0] - point[0, 0]) / h) ** 2)
    assert np.max(np.abs(got / expected - 1)) < 6e-5
    trusted = gathered_sums(point, Z, h)
    near = np.concatenate([distance, distance]) < 5.6 * h
    assert not np.any(np.isnan(trusted[near])), "rows within 5.6 bandwidths are trusted"


def test_one_pair_in_2d_multiplies_two_one_axis_errors() -> None:
    rng = np.random.default_rng(2)
    point = np.array([[0.1, -0.2]])
    angle = rng.uniform(0, 2 * math.pi, 3000)
    radius = rng.uniform(0, 5.6, 3000) * 0.3
    Z = point + np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    got = gathered_sums(point, Z, 0.3)
    expected = np.exp(-0.5 * np.sum((Z - point) ** 2, axis=1) / 0.09)
    assert not np.any(np.isnan(got))
    assert np.max(np.abs(got / expected - 1)) < 1e-4


def test_rows_beyond_reach_are_left_to_the_fallback() -> None:
    # 2000 points in one spot: a row 6.5 bandwidths away gets its whole density from pairs
    # the grid does not hold exactly; it must not be trusted, and approx must still be right.
    points = np.zeros((2000, 1))
    Z = np.array([[1.0], [5.0], [6.5], [9.0], [40.0]])
    got = gathered_sums(points, Z, 1.0)
    assert not np.any(np.isnan(got[:2])) and np.all(np.isnan(got[2:]))
    approx = kde_grid.approx_log_density(points, Z, "gaussian", 1.0)
    expected = direct(points, Z, 1.0)
    assert rel_error(approx[:2], expected[:2]) < 1e-4
    assert rel_error(approx[2:], expected[2:]) < 1e-9  # so few rows are summed exactly


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("h", [0.01, 0.05, 0.3, 3.0])
def test_approx_is_within_its_tolerance_of_a_direct_sum(d: int, h: float) -> None:
    points = clusters(1500, d, 0)
    queries = np.vstack(
        [clusters(900, d, 1), np.full((2, d), 9.0), np.full((2, d), -4.4), points[:5]]
    )
    got = kde_grid.approx_log_density(points, queries, "gaussian", h)
    assert rel_error(got, direct(points, queries, h)) < 2e-4  # promised: 1e-3


def test_a_grid_too_large_hands_the_model_to_the_fast_path() -> None:
    # Two clusters 1e5 bandwidths apart in 2-D would need 1e11 grid cells.
    points = np.vstack([clusters(300, 2, 3), clusters(300, 2, 4) + 1e4])
    assert kde_grid._gridded_sums(points, 0.1, None) is None
    queries = np.vstack([clusters(60, 2, 5), clusters(60, 2, 6) + 1e4])
    got = kde_grid.approx_log_density(points, queries, "gaussian", 0.1)
    assert rel_error(got, direct(points, queries, 0.1)) < kde_exact.FAST_RTOL


def test_the_grid_is_built_once_for_every_chunk() -> None:
    points = clusters(1200, 2, 7)
    queries = clusters(600, 2, 8)
    cache: dict = {}
    whole = kde_grid.approx_log_density(points, queries, "gaussian", 0.2, cache=cache)
    grid = cache["gridded"]
    parts = [
        kde_grid.approx_log_density(points, part, "gaussian", 0.2, cache=cache)
        for part in np.array_split(queries, 7)
    ]
    assert cache["gridded"] is grid
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@settings(max_examples=40, deadline=None)
@given(
    d=st.sampled_from([1, 2]),
    n=st.integers(1, 200),
    log_h=st.floats(-2.5, 0.7),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_approx_keeps_its_tolerance_for_any_data(
    d: int, n: int, log_h: float, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    points = rng.standard_t(3, size=(n, d)) * scale
    h = 10**log_h * scale
    queries = np.vstack(
        [
            rng.standard_t(3, size=(40, d)) * scale,
            points[: min(n, 5)] + h * rng.normal(size=(min(n, 5), d)) * 3,
            points[:1] + 6 * h,  # at the edge of reach
        ]
    )
    got = kde_grid.approx_log_density(points, queries, "gaussian", h)
    assert rel_error(got, direct(points, queries, h)) < kde_grid.APPROX_RTOL


def test_rows_too_far_for_integer_grid_indices_fall_back() -> None:
    # 1e18 bandwidths out, the grid index does not fit in int64: it must not wrap around.
    points = clusters(600, 2, 9)
    queries = np.array([[1e18, 0.0], [0.0, -1e19], [0.1, 0.2]])
    got = kde_grid.approx_log_density(points, queries, "gaussian", 0.3)
    expected = direct(points, queries, 0.3)
    np.testing.assert_allclose(got[:2], expected[:2], rtol=1e-12)  # logs near -5e36
    assert rel_error(got[2:], expected[2:]) < 1e-4
    beyond_float = np.array([[1e300, 1e300]])  # the squared distance overflows: density 0
    assert kde_grid.approx_log_density(points, beyond_float, "gaussian", 0.3)[0] == -np.inf


@pytest.mark.parametrize("d", [1, 2])
def test_data_at_a_large_offset_keep_their_grid_margin(d: int) -> None:
    # At 1e15 the float spacing is 0.125: 1e15 - 7h rounds back to 1e15 for h = 0.004, so
    # the grid must not be placed by that coordinate.
    rng = np.random.default_rng(10)
    points = 1e15 + np.round(rng.normal(size=(300, d)) * 4) * 0.125
    queries = np.vstack([points[:20], points[:5] + 0.125])
    got = kde_grid.approx_log_density(points, queries, "gaussian", 0.004)
    assert rel_error(got, direct(points - 1e15, queries - 1e15, 0.004)) < 1e-4


def test_a_grid_much_larger_than_the_data_is_not_built() -> None:
    # 1000 points spread over 1800 x 1800 grid cells: the FFT would cost far more than
    # the default path's sums for these sparse rows.
    rng = np.random.default_rng(11)
    points = rng.uniform(0, 1, size=(1000, 2))
    assert kde_grid._gridded_sums(points, 0.00166, None) is None
    assert kde_grid._gridded_sums(points, 0.05, None) is not None
    queries = rng.uniform(0, 1, size=(50, 2))
    got = kde_grid.approx_log_density(points, queries, "gaussian", 0.00166)
    assert rel_error(got, direct(points, queries, 0.00166)) < kde_exact.FAST_RTOL


@pytest.mark.parametrize("d", [1, 2])
def test_many_points_are_spread_in_sorted_blocks(d: int) -> None:
    # More points than one spreading block: they are sorted along the first axis and each
    # block fills its own band of the grid.
    points = clusters(3 * kde_grid._SPREAD_POINTS // 2, d, 12)
    queries = np.vstack([clusters(150, d, 13), np.full((2, d), 4.5)])
    got = kde_grid.approx_log_density(points, queries, "gaussian", 0.04)
    assert rel_error(got, direct(points, queries, 0.04)) < 2e-4
