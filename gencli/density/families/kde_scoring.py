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

from typing import Any

import numpy as np

from gencli.density.families.kde_cells import CELL_SPLIT, cell_log_sums
from gencli.density.families.kde_exact import exact_log_density, total_weight
from gencli.density.families.kde_grid import approx_log_density
from gencli.density.families.kde_repeats import distinct_points, distinct_rows
from gencli.density.families.kde_tree import fast_log_density
from gencli.density.families.kernels import log_normalizer

_FULL_SUM_PAIRS = 20_000_000  # below this many kernels, summing unsettled rows in full wins


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
        out = default_log_density(points, rows, kernel, bandwidth, cache=cache, weights=weights)
    return out if repeated is None else out[repeated[1]]
