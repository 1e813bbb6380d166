"""The tree path of the default mode: kernel sums over the training points within a
per-row radius (scipy's cKDTree), each row carrying a bound on what the points left out
could add, so the relative error stays below ``FAST_RTOL`` (any kernel, up to 12 dimensions).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gencli import native
from gencli.density.families.kde_exact import (
    FAST_RTOL,
    SMALLEST_EXPONENT,
    exact_log_density,
    run_in_threads,
    total_weight,
)
from gencli.density.families.kernels import COMPACT, log_normalizer, profile

FAST_MAX_DIM = 12
_PAIRS_PER_CHUNK = 1 << 21
# Above this share of all (row, point) pairs, the direct sum beats the tree (measured).
DENSE_FRACTION = 0.15


def pairs_within_reach(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
    rtol: float = FAST_RTOL,
    weights: np.ndarray | None = None,
) -> float:
    """The mean number of training points :func:`fast_log_density` sums per row of Z."""
    tree = _tree(points, cache)
    _, _, radius = _reach(tree, Z, kernel, bandwidth, total_weight(points, weights), rtol, 1)
    return float(np.mean(tree.query_ball_point(Z, radius, return_length=True)))


def _reach(
    tree: Any, Z: np.ndarray, kernel: str, h: float, total: float, rtol: float, workers: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Each row's nearest distance, its nearest point (None for compact kernels) and the
    radius beyond which the points left out add less than ``rtol`` of its density."""
    if kernel in COMPACT:
        return np.zeros(Z.shape[0]), None, np.full(Z.shape[0], h)
    nearest, nearest_index = tree.query(Z, k=1, workers=workers)
    reach = math.log(total / rtol)
    if kernel == "gaussian":
        return nearest, nearest_index, np.sqrt(nearest**2 + 2.0 * h * h * reach)
    return nearest, nearest_index, nearest + h * reach


def _tree(points: np.ndarray, cache: dict[str, Any] | None) -> Any:
    if cache is not None and "tree" in cache:
        return cache["tree"]
    native.load(["scipy.spatial"], "scoring with a kernel density")  # under ulimit -v
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    if cache is not None:
        cache["tree"] = tree
    return tree


def fast_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
    rtol: float = FAST_RTOL,
    workers: int = 2,
    weights: np.ndarray | None = None,
    pairs_per_row: float | None = None,
) -> np.ndarray:
    """Kernel sums over the training points within a per-row radius, relative error <= rtol.

    ``pairs_per_row``, when the caller has measured it on a sample of the rows, spares
    counting every row's pairs (a full count was 61% of a 10-D run) and the check that
    summing everything would be cheaper: the caller has decided that already.

    For the Gaussian kernel, with r0 the distance to the nearest training point, every
    point beyond R = sqrt(r0^2 + 2 h^2 log(n / rtol)) adds less than rtol/n of the
    nearest point's kernel, so together they add less than rtol of the density; for the
    exponential kernel R = r0 + h log(n / rtol). Compact kernels vanish beyond h.
    """
    n, d = points.shape
    if d > FAST_MAX_DIM or Z.shape[0] == 0:
        return exact_log_density(points, Z, kernel, bandwidth, weights=weights)
    total = total_weight(points, weights)
    tree = _tree(points, cache)
    h = bandwidth
    nearest, nearest_index, radius = _reach(tree, Z, kernel, h, total, rtol, workers)
    if nearest_index is None:  # compact kernels vanish beyond h
        floor = np.zeros(Z.shape[0])
    else:
        # The nearest point always counts, with its weight (a distance of exactly the
        # radius may be dropped by the pair search).
        floor = weights[nearest_index] if weights is not None else np.ones(Z.shape[0])
    if pairs_per_row is None:
        counts = np.asarray(tree.query_ball_point(Z, radius, return_length=True, workers=workers))
        if counts.sum() > DENSE_FRACTION * n * Z.shape[0]:
            # A wide kernel reaches most points anyway: summing them all beats pairs.
            return exact_log_density(points, Z, kernel, h, workers=workers, weights=weights)
    else:
        counts = np.full(Z.shape[0], max(1, round(pairs_per_row)))
    order = np.argsort(radius, kind="stable")
    out = np.empty(Z.shape[0])
    pair = _PairSums(tree, kernel, h, weights)

    def run(rows: np.ndarray) -> None:
        out[rows] = pair.log_sums(Z[rows], nearest[rows], radius[rows], floor[rows])

    run_in_threads(run, _chunks(order, counts[order]), workers)
    return out - log_normalizer(kernel, d, h, total)


def _chunks(order: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Consecutive groups of rows (in radius order) of about _PAIRS_PER_CHUNK pairs each."""
    cumulative = np.cumsum(counts + 1)
    cuts = np.searchsorted(
        cumulative, np.arange(_PAIRS_PER_CHUNK, cumulative[-1], _PAIRS_PER_CHUNK)
    )
    return [rows for rows in np.split(order, np.unique(cuts)) if rows.size]


class _PairSums:
    """Kernel sums over the (row, point) pairs within each row's radius, a block at a time.

    A block's pairs are found with one search at the block's largest radius, so a block
    mixing near rows (small radius) with far ones (a radius as wide as the data) would
    find every pair of every row: scoring 300k integer-valued rows against a 2,000-row
    model built 10^8 pairs a block and took 13 GB. Blocks whose pairs at that radius
    exceed twice the target are counted first (a dual-tree count, nothing stored) and
    halved until they fit.
    """

    def __init__(self, tree: Any, kernel: str, h: float, weights: np.ndarray | None) -> None:
        self.tree, self.kernel, self.h, self.weights = tree, kernel, h, weights

    def log_sums(
        self, Q: np.ndarray, nearest: np.ndarray, radius: np.ndarray, floor: np.ndarray
    ) -> np.ndarray:
        from scipy.spatial import cKDTree

        queries = cKDTree(Q)
        reach = float(radius.max())
        if Q.shape[0] > 1 and queries.count_neighbors(self.tree, reach) > 2 * _PAIRS_PER_CHUNK:
            half = Q.shape[0] // 2  # rows come in radius order: each half reaches less far
            return np.concatenate(
                [
                    self.log_sums(Q[:half], nearest[:half], radius[:half], floor[:half]),
                    self.log_sums(Q[half:], nearest[half:], radius[half:], floor[half:]),
                ]
            )
        pairs = queries.sparse_distance_matrix(self.tree, max_distance=reach, output_type="ndarray")
        return self._sums(Q.shape[0], pairs, nearest, floor)

    def _sums(
        self, m: int, pairs: np.ndarray, nearest: np.ndarray, floor: np.ndarray
    ) -> np.ndarray:
        with np.errstate(over="ignore"):  # past 1e154 bandwidths the log-density is -inf
            return self._overflowing_sums(m, pairs, nearest, floor)

    def _overflowing_sums(
        self, m: int, pairs: np.ndarray, nearest: np.ndarray, floor: np.ndarray
    ) -> np.ndarray:
        rows = pairs["i"]
        distance = pairs["v"]
        kernel, h = self.kernel, self.h
        if kernel == "gaussian":
            # (d^2 - r0^2) / 2h^2 as a product of (d - r0) / h and (d + r0) / h: squares
            # of distances over tiny bandwidths would overflow.
            exponent = -0.5 * ((distance - nearest[rows]) / h) * ((distance + nearest[rows]) / h)
            weights = np.exp(np.maximum(exponent, SMALLEST_EXPONENT))
            offset = -0.5 * (nearest / h) ** 2
        elif kernel == "exponential":
            weights = np.exp(np.maximum(-(distance - nearest[rows]) / h, SMALLEST_EXPONENT))
            offset = -nearest / h
        else:
            weights = profile(kernel, (distance / h) ** 2)
            offset = np.zeros(m)
        if self.weights is not None:
            weights *= self.weights[pairs["j"]]
        sums = np.bincount(rows, weights=weights, minlength=m)
        if kernel in ("gaussian", "exponential"):
            sums = np.maximum(sums, floor)
        with np.errstate(divide="ignore"):
            return np.log(sums) + offset
