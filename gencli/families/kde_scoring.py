"""Evaluating a kernel density at many rows: exact, fast with a stated tolerance, or gridded.

Why not scikit-learn's ``KernelDensity.score_samples``: its tree drifts from the exact sum
from about d = 24 (tens of nats at d = 64, scikit-learn issue #7492), misses by up to
half the density for rows in the far tails even in 2-D with its "exact" defaults, gives
the compact kernels a density of about e^-35 where no training point is in reach (the
true density is 0), and normalizes the cosine kernel wrongly in even dimensions. So:

- ``exact``: every kernel summed, in blocks (any kernel, any dimension).
- ``fast`` (default): only the training points near each row are summed, and each row
  carries a bound on what the points left out could add; a row whose bound exceeds
  ``FAST_RTOL`` (1e-6) of its density is summed in full. The Gaussian kernel in 1-D and
  2-D uses a grid of cells (:mod:`gencli.families.kde_cells`); other kernels and
  dimensions up to 12 use scipy's cKDTree with a per-row radius; compact kernels are
  summed exactly. Both cores work. Rows in more than 12 dimensions use ``exact``.
- ``approx`` (Gaussian kernel, 1-D and 2-D): Gaussian gridding, relative error below
  1e-3; see :mod:`gencli.families.kde_grid`.

Repeated rows are evaluated once: training points that repeat are summed once with a
weight (how many times each occurs), and query rows that repeat are scored once. On
integer-valued data (300k rows, 100 distinct) that turns billions of kernels into
thousands. Work is done in blocks whose size is bounded, so memory stays flat.

All functions work in the estimator's (standardized) space and return natural logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gencli.errors import Stopped
from gencli.families.kde_repeats import distinct_points, distinct_rows

FAST_RTOL = 1e-6
FAST_MAX_DIM = 12
COMPACT = ("tophat", "epanechnikov", "linear", "cosine")
_BLOCK_ENTRIES = 1 << 20
_PAIRS_PER_CHUNK = 1 << 21
# Above this share of all (row, point) pairs, the direct sum beats the tree (measured).
DENSE_FRACTION = 0.15
_SMALLEST_EXPONENT = -700.0
_CANCELLATION = 4 * np.finfo(np.float64).eps  # relative error of |q|^2 + |p|^2 - 2 q.p
_EXPONENT_TOLERANCE = 1e-8  # in nats: a relative density error of 1e-8
_ROOT_KERNELS = ("exponential", "linear", "cosine")  # profiles in u, not u^2
_FULL_SUM_PAIRS = 20_000_000  # below this many kernels, summing unsettled rows in full wins


def total_weight(points: np.ndarray, weights: np.ndarray | None) -> float:
    """How many training points there are, counting repeats (the KDE's n)."""
    return float(points.shape[0]) if weights is None else float(weights.sum())


def run_in_threads(work: Callable[[Any], None], items: Iterable[Any], workers: int) -> None:
    """``work(item)`` for every item on ``workers`` threads (numpy releases the GIL).

    On Ctrl-C, SIGTERM or an error, items not yet started are dropped and, for a stop
    signal, nothing waits for the blocks in flight: the process is about to end.
    """
    from gencli.native import max_threads

    items = list(items)
    if max_threads(workers) <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    pool = ThreadPoolExecutor(workers)
    stopping = False
    try:
        for future in [pool.submit(work, item) for item in items]:
            future.result()
    except (Stopped, MemoryError):
        stopping = True
        raise
    finally:
        pool.shutdown(wait=not stopping, cancel_futures=True)


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=1)
    finite = np.isfinite(top)
    safe = np.where(finite, top, 0.0)
    shifted = np.maximum(a - safe[:, None], _SMALLEST_EXPONENT)  # no subnormals: 20x faster
    with np.errstate(divide="ignore", under="ignore"):
        return np.where(finite, safe + np.log(np.sum(np.exp(shifted), axis=1)), top)


def _profile(kernel: str, u2: np.ndarray) -> np.ndarray:
    """The compact kernels' profiles at squared scaled distances (zero outside radius 1)."""
    inside = u2 < 1.0
    if kernel == "tophat":
        return inside.astype(np.float64)
    if kernel == "epanechnikov":
        return np.where(inside, 1.0 - u2, 0.0)
    u = np.sqrt(u2)
    if kernel == "linear":
        return np.where(inside, 1.0 - u, 0.0)
    if kernel == "cosine":
        return np.where(inside, np.cos(0.5 * np.pi * u), 0.0)
    raise ValueError(f"unknown kernel {kernel!r}")


def _direct_u2(q: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Squared distances between the rows of q and P from their differences, axis by axis."""
    u2 = np.zeros((q.shape[0], P.shape[0]))
    step = np.empty_like(u2)
    for j in range(q.shape[1]):
        np.subtract.outer(q[:, j], P[:, j], out=step)
        np.square(step, out=step)
        u2 += step
    return u2


def _log_sums_from_u2(
    kernel: str, u2: np.ndarray, log_weights: np.ndarray | None = None
) -> np.ndarray:
    """log of the (weighted) sum over each row of the kernel profile at squared scaled
    distances."""
    if kernel in ("gaussian", "exponential"):
        exponent = -0.5 * u2 if kernel == "gaussian" else -np.sqrt(u2)
        if log_weights is not None:
            exponent += log_weights
        return _logsumexp_rows(exponent)
    profile = _profile(kernel, u2)
    if log_weights is not None:
        profile *= np.exp(log_weights)
    with np.errstate(divide="ignore"):
        return np.log(profile.sum(axis=1))


def log_normalizer(kernel: str, d: int, bandwidth: float, n: float) -> float:
    """log of n * h^d * (integral of the kernel profile over R^d)."""
    from gencli.families.kde import log_kernel_norm

    return log_kernel_norm(kernel, d) + d * math.log(bandwidth) + math.log(n)


def exact_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    workers: int = 2,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Every kernel summed, in blocks of rows on ``workers`` threads (exact to rounding);
    ``weights`` counts how often each point occurs (default once)."""
    n, d = points.shape
    log_weights = np.log(weights) if weights is not None else None
    # Distances are translation-invariant; centring avoids cancellation.
    centre = points.mean(axis=0)
    P = points - centre
    Q = Z - centre
    p_sq = np.einsum("ij,ij->i", P, P)
    out = np.empty(Q.shape[0])
    block = max(1, _BLOCK_ENTRIES // max(n, 1))
    scale = 1.0 / (bandwidth * bandwidth)

    p_top = float(p_sq.max()) if n else 0.0

    def run(start: int) -> None:
        q = Q[start : start + block]
        q_sq = np.einsum("ij,ij->i", q, q)
        # |q|^2 + |p|^2 - 2 q.p is one matrix product, but it loses up to
        # eps (|q|^2 + |p|^2) / h^2 of u^2 to cancellation: nothing for the usual bandwidths,
        # 1e-5 of the density for h = 1e-5 on unit-scale data. Then the differences are
        # squared directly instead (d passes over the block).
        slack = _CANCELLATION * (float(q_sq.max()) + p_top) * scale
        with np.errstate(over="ignore", invalid="ignore"):
            if slack > _EXPONENT_TOLERANCE:
                u2 = _direct_u2(q, P)
            else:
                u2 = q_sq[:, None] + p_sq[None, :] - 2.0 * (q @ P.T)
                u2 = np.where(np.isnan(u2), np.inf, u2)  # inf - inf: the row is infinitely far
                np.maximum(u2, 0.0, out=u2)
                if kernel in _ROOT_KERNELS:
                    # These use u = sqrt(u^2), which turns a slack s near u = 0 into sqrt(s):
                    # entries that close are recomputed from their differences.
                    close = np.nonzero(u2 * scale < (slack / _EXPONENT_TOLERANCE) ** 2)
                    if close[0].size:
                        u2[close] = np.sum((q[close[0]] - P[close[1]]) ** 2, axis=1)
            u2 *= scale
        out[start : start + block] = _log_sums_from_u2(kernel, u2, log_weights)

    run_in_threads(run, range(0, Q.shape[0], block), workers)
    return out - log_normalizer(kernel, d, bandwidth, total_weight(points, weights))


def _tree(points: np.ndarray, cache: dict[str, Any] | None) -> Any:
    if cache is not None and "tree" in cache:
        return cache["tree"]
    from gencli import native

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
) -> np.ndarray:
    """Kernel sums over the training points within a per-row radius, relative error <= rtol.

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
    if kernel in COMPACT:
        nearest = np.zeros(Z.shape[0])
        radius = np.full(Z.shape[0], h)
        floor = np.zeros(Z.shape[0])
    else:
        nearest, nearest_index = tree.query(Z, k=1, workers=workers)
        # The nearest point always counts, with its weight (a distance of exactly the
        # radius may be dropped by the pair search).
        floor = weights[nearest_index] if weights is not None else np.ones(Z.shape[0])
        reach = math.log(total / rtol)
        if kernel == "gaussian":
            radius = np.sqrt(nearest**2 + 2.0 * h * h * reach)
        else:
            radius = nearest + h * reach
    counts = np.asarray(tree.query_ball_point(Z, radius, return_length=True, workers=workers))
    if counts.sum() > DENSE_FRACTION * n * Z.shape[0]:
        # A wide kernel reaches most points anyway: summing them all is cheaper than pairs.
        return exact_log_density(points, Z, kernel, h, workers=workers, weights=weights)
    order = np.argsort(radius, kind="stable")
    out = np.empty(Z.shape[0])
    pair = _PairSums(tree, kernel, h, weights)

    def run(rows: np.ndarray) -> None:
        out[rows] = pair.log_sums(Z[rows], nearest[rows], radius[rows], floor[rows])

    run_in_threads(run, _chunks(order, counts[order]), workers)
    return out - log_normalizer(kernel, d, h, total)


def default_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The default mode: relative error at most FAST_RTOL, by the cheapest method that bounds it."""
    n, d = points.shape
    if Z.shape[0] == 0 or not np.all(np.abs(Z) < 1e150):  # distances would overflow
        return exact_log_density(points, Z, kernel, bandwidth, weights=weights)
    from gencli.families.kde_cells import CELL_SPLIT, cell_log_sums

    if kernel == "gaussian" and d in CELL_SPLIT:
        result = cell_log_sums(points, Z, bandwidth, cache=cache, weights=weights)
        if result is not None:
            log_sums, unsure = result
            out = log_sums - log_normalizer(kernel, d, bandwidth, total_weight(points, weights))
            left = np.flatnonzero(unsure)
            if left.size * n > _FULL_SUM_PAIRS:  # many sparse rows: let the tree find theirs
                out[left] = fast_log_density(
                    points, Z[left], kernel, bandwidth, cache=cache, weights=weights
                )
            elif left.size:
                out[left] = exact_log_density(points, Z[left], kernel, bandwidth, weights=weights)
            return out
    return fast_log_density(points, Z, kernel, bandwidth, cache=cache, weights=weights)


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
            weights = np.exp(np.maximum(exponent, _SMALLEST_EXPONENT))
            offset = -0.5 * (nearest / h) ** 2
        elif kernel == "exponential":
            weights = np.exp(np.maximum(-(distance - nearest[rows]) / h, _SMALLEST_EXPONENT))
            offset = -nearest / h
        else:
            weights = _profile(kernel, (distance / h) ** 2)
            offset = np.zeros(m)
        if self.weights is not None:
            weights *= self.weights[pairs["j"]]
        sums = np.bincount(rows, weights=weights, minlength=m)
        if kernel in ("gaussian", "exponential"):
            sums = np.maximum(sums, floor)
        with np.errstate(divide="ignore"):
            return np.log(sums) + offset


def log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    mode: str = "fast",
    cache: dict[str, Any] | None = None,
) -> np.ndarray:
    """The KDE's log-density at each row of Z by ``mode``: 'fast', 'exact' or 'approx'.

    Repeated training points are summed once with their counts as weights, and repeated
    rows of Z are scored once (see :func:`distinct_rows`).
    """
    points, weights = distinct_points(points, cache)
    repeated = distinct_rows(Z)
    rows = Z if repeated is None else repeated[0]
    if mode == "exact":
        out = exact_log_density(points, rows, kernel, bandwidth, weights=weights)
    elif mode == "approx":
        from gencli.families.kde_grid import approx_log_density

        out = approx_log_density(points, rows, kernel, bandwidth, cache=cache, weights=weights)
    else:
        out = default_log_density(points, rows, kernel, bandwidth, cache=cache, weights=weights)
    return out if repeated is None else out[repeated[1]]
