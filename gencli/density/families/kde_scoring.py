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
  2-D uses a grid of cells (:mod:`gencli.density.families.kde_cells`); other kernels and
  dimensions up to 12 use scipy's cKDTree with a per-row radius; compact kernels are
  summed exactly. Both cores work. Rows in more than 12 dimensions use ``exact``.
- ``approx`` (Gaussian kernel, 1-D and 2-D): Gaussian gridding, relative error below
  1e-3; see :mod:`gencli.density.families.kde_grid`.

Repeated rows are evaluated once: training points that repeat are summed once with a
weight (how many times each occurs), and query rows that repeat are scored once. On
integer-valued data (300k rows, 100 distinct) that turns billions of kernels into
thousands. Work is done in blocks whose size is bounded, so memory stays flat.

All functions work in the estimator's (standardized) space and return natural logs.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from gencli.density.families.kde_cells import CELL_SPLIT, cell_log_sums
from gencli.density.families.kde_exact import FAST_RTOL, exact_log_density, total_weight
from gencli.density.families.kde_grid import approx_log_density
from gencli.density.families.kde_repeats import distinct_points, distinct_rows
from gencli.density.families.kde_tree import FAST_MAX_DIM, fast_log_density, pairs_within_reach
from gencli.density.families.kernels import log_normalizer

_FULL_SUM_PAIRS = 20_000_000  # below this many kernels, summing unsettled rows in full wins
SMALL_PAIRS = 4_000_000  # below this many kernels the exact sum takes milliseconds: no set-up
# Rows of the sample each path is timed on: enough kernels that the exact sum's fixed
# cost (10 ms: threads, tiles) is a small part of its time, at most an eighth of the rows.
_PILOT_PAIRS = 8_000_000
_PILOT_MIN = 16
# The tree's time per row on the sample was 0.75-0.8 of its time per row on all rows
# (5-D, 20k rows: its chunks search to their widest row's radius), so it must win by this.
_TREE_MARGIN = 1.3
# What trying the tree costs before it scores a row: importing scipy.spatial (0.3-0.4 s
# measured, a third of a 10k x 10k 10-D exact run) or, once imported, building the tree.
_TREE_TRIAL_SECONDS = 2.0
_TREE_BUILT_SECONDS = 0.25
_HOPELESS = 4.0  # a tree this many times slower on a few rows (fixed costs and all) is dropped
# When the tolerance radius takes in this share of the points, the tree's pairs (each dearer
# than a pair of the exact sum) cannot win: it is not even timed.
_SURELY_DENSE = 0.5


def default_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
    timed: bool = True,
) -> np.ndarray:
    """The default mode: relative error at most FAST_RTOL, by the cheapest method that bounds it
    (``timed``: chosen by timing from 3-D up; else by fixed rules, the same on every run)."""
    n, d = points.shape
    if Z.shape[0] == 0 or not np.all(np.abs(Z) < 1e150):  # distances would overflow
        return exact_log_density(points, Z, kernel, bandwidth, weights=weights)
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
    if not timed:
        if d > 2:
            return exact_log_density(points, Z, kernel, bandwidth, weights=weights, rtol=FAST_RTOL)
        return fast_log_density(points, Z, kernel, bandwidth, cache=cache, weights=weights)
    return measured_path_log_density(points, Z, kernel, bandwidth, cache=cache, weights=weights)


def measured_path_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The exact sum or the tree, whichever is quicker on this data, measured on it.

    Neither wins everywhere: the tree prunes the far points of narrow kernels, but where
    the tolerance radius takes in a large share of the points (Scott's bandwidth from
    about d = 3) its per-pair cost loses to the blocked exact sum. So a seeded sample of
    the rows is scored both ways first, timed, and the rest goes the quicker way; the
    sample's exact scores are kept. The choice is remembered in ``cache`` (one model, the
    next chunks of the same stream). Small jobs are summed exactly at once.
    """
    n, d = points.shape
    m = Z.shape[0]
    key = ("kde_path", kernel, bandwidth)  # the quicker path depends on the bandwidth
    chosen = cache.get(key) if cache is not None else None  # type: ignore[call-overload]
    if chosen is None and (d > FAST_MAX_DIM or m * n <= SMALL_PAIRS or m < 8 * _PILOT_MIN):
        return exact_log_density(points, Z, kernel, bandwidth, weights=weights, rtol=FAST_RTOL)
    if chosen is not None:
        path, pairs = chosen
        if path == "exact":
            return exact_log_density(points, Z, kernel, bandwidth, weights=weights, rtol=FAST_RTOL)
        return fast_log_density(
            points, Z, kernel, bandwidth, cache=cache, weights=weights, pairs_per_row=pairs
        )
    size = max(_PILOT_MIN, min(_PILOT_PAIRS // max(n, 1), m // 8))
    order = np.random.default_rng(0).permutation(m)
    out = np.empty(m)
    pilot = np.sort(order[:size])
    started = time.perf_counter()
    out[pilot] = exact_log_density(
        points, Z[pilot], kernel, bandwidth, weights=weights, rtol=FAST_RTOL
    )
    exact_per_row = (time.perf_counter() - started) / size
    done = size
    path, pairs = "exact", float(n)
    # The tree's own fixed cost (importing scipy.spatial, building it) must be worth
    # risking: the exact sum of the other rows has to take several times that.
    trial = _TREE_TRIAL_SECONDS if "scipy.spatial" not in sys.modules else _TREE_BUILT_SECONDS
    if exact_per_row * (m - size) > trial or (cache is not None and "tree" in cache):
        pairs = pairs_within_reach(
            points, Z[pilot], kernel, bandwidth, cache=cache, weights=weights
        )
    if pairs < _SURELY_DENSE * n:
        # Then as many other rows by the tree, a sixteenth first: a tree far behind on
        # those is not timed further. Its scores are kept too. Its cost per row is not the
        # pairs: in 5-D a search that finds 10 points may visit thousands of nodes.
        for share, behind in ((max(1, size // 16), _HOPELESS), (size, 1.0)):
            tried = np.sort(order[done : done + share])
            started = time.perf_counter()
            out[tried] = fast_log_density(
                points,
                Z[tried],
                kernel,
                bandwidth,
                cache=cache,
                weights=weights,
                pairs_per_row=pairs,
            )
            done += tried.size
            tree_per_row = (time.perf_counter() - started) / max(tried.size, 1)
            if _TREE_MARGIN * tree_per_row > behind * exact_per_row:
                break
        else:
            path = "tree"
    if cache is not None:
        cache[key] = (path, pairs)  # type: ignore[index]
    rest = np.sort(order[done:])
    if rest.size == 0:
        return out
    if path == "exact":
        out[rest] = exact_log_density(
            points, Z[rest], kernel, bandwidth, weights=weights, rtol=FAST_RTOL
        )
    else:
        out[rest] = fast_log_density(
            points, Z[rest], kernel, bandwidth, cache=cache, weights=weights, pairs_per_row=pairs
        )
    return out


def log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    mode: str = "fast",
    cache: dict[str, Any] | None = None,
    point_weights: np.ndarray | None = None,
) -> np.ndarray:
    """The KDE's log-density at each row of Z by ``mode``: 'fast', 'exact' or 'approx', or
    'fixed': 'fast' without timing, so that a fit is the same on every run (the timed choice
    may differ between runs, and its paths agree to FAST_RTOL, not bit for bit).

    Repeated training points are summed once with their counts as weights, and repeated
    rows of Z are scored once (see :func:`distinct_rows`).
    """
    points, weights = distinct_points(points, cache, point_weights)
    repeated = distinct_rows(Z)
    rows = Z if repeated is None else repeated[0]
    if mode == "exact":
        out = exact_log_density(points, rows, kernel, bandwidth, weights=weights)
    elif mode == "approx":
        out = approx_log_density(
            points,
            rows,
            kernel,
            bandwidth,
            cache=cache,
            weights=weights,
            fallback=default_log_density,
        )
    else:
        timed = mode != "fixed"
        out = default_log_density(
            points, rows, kernel, bandwidth, cache=cache, weights=weights, timed=timed
        )
    return out if repeated is None else out[repeated[1]]
