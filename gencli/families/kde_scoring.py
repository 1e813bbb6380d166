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
  2-D uses a grid of cells (no tree to build, dense blocks of kernels evaluated as
  small matrix products); other kernels and dimensions up to 12 use scipy's cKDTree with
  a per-row radius; compact kernels are summed exactly. Both cores work. Rows in more than
  12 dimensions use ``exact``.
- ``approx`` (Gaussian kernel, 1-D and 2-D): Gaussian gridding (see GRID_REACH). The
  kernel is split into three narrower Gaussians: one spreads the training points onto a
  grid, one is applied to the grid by FFT, one gathers each row's value from the grid.
  The error is relative for every pair of row and point (about 1e-4); rows too far out
  for the grid to vouch for are summed exactly if few, else by ``fast``, and so is every
  row when the grid would be much larger than the data. Relative error below 1e-3.

All functions work in the estimator's (standardized) space and return natural logs.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FAST_RTOL = 1e-6
APPROX_RTOL = 1e-3
FAST_MAX_DIM = 12
COMPACT = ("tophat", "epanechnikov", "linear", "cosine")
_BLOCK_ENTRIES = 1 << 20
_PAIRS_PER_CHUNK = 1 << 21
# Above this share of all (row, point) pairs, the direct sum beats the tree (measured).
DENSE_FRACTION = 0.15
_SMALLEST_EXPONENT = -700.0
# Cells per reach (the distance beyond which a point cannot matter) on each axis, by
# dimension: smaller cells waste fewer pairs, more cells cost more Python (measured).
_CELL_SPLIT = {1: 3, 2: 2}
_CELL_BLOCK_ENTRIES = 1 << 17  # kernels per block: small enough to stay in cache
_CANCELLATION = 4 * np.finfo(np.float64).eps  # relative error of |q|^2 + |p|^2 - 2 q.p
_EXPONENT_TOLERANCE = 1e-8  # in nats: a relative density error of 1e-8
_ROOT_KERNELS = ("exponential", "linear", "cosine")  # profiles in u, not u^2
_THREADED_ROWS = 4096  # fewer rows spread over sparse cells: threads cost more than they save
_FULL_SUM_PAIRS = 20_000_000  # below this many kernels, summing unsettled rows in full wins
# --approx, "Gaussian gridding": a Gaussian of variance h^2 is the convolution of three of
# variances a^2 + b^2 + c^2. Each point is spread onto a grid with the narrow one (a), the
# grid is convolved with the wide one (b) by FFT, and each row gathers from the grid with
# the narrow one (c). Both sums over the grid are the trapezoidal rule for a Gaussian
# integral, whose relative error is below 2 exp(-2 pi^2 (width / step)^2) wherever the
# Gaussian sits (Poisson summation): the error is relative for every (row, point) pair, in
# the tails as much as in the bulk. With these settings it is below 6e-5 per axis for pairs
# within GRID_REACH bandwidths, where the stencils hold the narrow Gaussians (checked at
# many offsets out to GRID_REACH in tests/test_kde_grid.py).
GRID_STEPS_PER_BANDWIDTH = 3.0
_GRID_WIDTH = 0.8  # a = c, in grid steps
_GRID_STENCIL = 5  # nodes each side of a point that its narrow Gaussian reaches
GRID_REACH = 7.0  # in bandwidths
_BEYOND_REACH_SHARE = 2e-4  # most that points beyond reach may add to a trusted row
# Grid size: at most _CELLS_PER_POINT cells per training point, but always up to
# _MIN_GRID_CELLS (an FFT over that many takes about 3 ms), and never above
# _MAX_GRID_CELLS (32 MiB of float64, about 0.2 s of FFT).
_MAX_GRID_CELLS = 1 << 22
_MIN_GRID_CELLS = 1 << 16
_CELLS_PER_POINT = 64
_SPREAD_POINTS = 1 << 15  # points spread per block
_FEW_PAIRS = 1 << 18  # so few untrusted (row, point) pairs are summed directly
_GATHER_ROWS = 1 << 13  # rows per block: n x 100 weights stay in cache


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


def _log_sums_from_u2(kernel: str, u2: np.ndarray) -> np.ndarray:
    """log of the sum over each row of the kernel profile at squared scaled distances."""
    if kernel == "gaussian":
        return _logsumexp_rows(-0.5 * u2)
    if kernel == "exponential":
        return _logsumexp_rows(-np.sqrt(u2))
    with np.errstate(divide="ignore"):
        return np.log(_profile(kernel, u2).sum(axis=1))


def log_normalizer(kernel: str, d: int, bandwidth: float, n: int) -> float:
    """log of n * h^d * (integral of the kernel profile over R^d)."""
    from gencli.families.kde import log_kernel_norm

    return log_kernel_norm(kernel, d) + d * math.log(bandwidth) + math.log(n)


def exact_log_density(
    points: np.ndarray, Z: np.ndarray, kernel: str, bandwidth: float, *, workers: int = 2
) -> np.ndarray:
    """Every kernel summed, in blocks of rows on ``workers`` threads (exact to rounding)."""
    n, d = points.shape
    centre = points.mean(
        axis=0
    )  # distances are translation-invariant; centring avoids cancellation
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
        out[start : start + block] = _log_sums_from_u2(kernel, u2)

    starts = range(0, Q.shape[0], block)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL in these loops
            list(pool.map(run, starts))
    else:
        for start in starts:
            run(start)
    return out - log_normalizer(kernel, d, bandwidth, n)


def _tree(points: np.ndarray, cache: dict[str, Any] | None) -> Any:
    from scipy.spatial import cKDTree

    if cache is not None and "tree" in cache:
        return cache["tree"]
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
) -> np.ndarray:
    """Kernel sums over the training points within a per-row radius, relative error <= rtol.

    For the Gaussian kernel, with r0 the distance to the nearest training point, every
    point beyond R = sqrt(r0^2 + 2 h^2 log(n / rtol)) adds less than rtol/n of the
    nearest point's kernel, so together they add less than rtol of the density; for the
    exponential kernel R = r0 + h log(n / rtol). Compact kernels vanish beyond h.
    """
    n, d = points.shape
    if d > FAST_MAX_DIM or Z.shape[0] == 0:
        return exact_log_density(points, Z, kernel, bandwidth)
    tree = _tree(points, cache)
    h = bandwidth
    if kernel in COMPACT:
        nearest = np.zeros(Z.shape[0])
        radius = np.full(Z.shape[0], h)
    else:
        nearest, _ = tree.query(Z, k=1, workers=workers)
        reach = math.log(n / rtol)
        if kernel == "gaussian":
            radius = np.sqrt(nearest**2 + 2.0 * h * h * reach)
        else:
            radius = nearest + h * reach
    counts = np.asarray(tree.query_ball_point(Z, radius, return_length=True, workers=workers))
    if counts.sum() > DENSE_FRACTION * n * Z.shape[0]:
        # A wide kernel reaches most points anyway: summing them all is cheaper than pairs.
        return exact_log_density(points, Z, kernel, h, workers=workers)
    order = np.argsort(radius, kind="stable")
    chunks = _chunks(order, counts[order])
    out = np.empty(Z.shape[0])

    def run(rows: np.ndarray) -> None:
        out[rows] = _chunk_log_sums(tree, Z[rows], nearest[rows], radius[rows], kernel, h)

    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, chunks))
    else:
        for rows in chunks:
            run(rows)
    return out - log_normalizer(kernel, d, h, n)


def _row_major_strides(shape: np.ndarray) -> np.ndarray:
    """Multipliers that turn a grid position into its row-major flat index."""
    return np.append(np.cumprod(shape[::-1])[:-1][::-1], 1).astype(np.int64)


def _cell_layout(points: np.ndarray, side: float, cache: dict[str, Any] | None) -> Any:
    """Training points sorted by grid cell (row-major key), with the grid's origin and shape."""
    key = ("cells", side)
    if cache is not None and cache.get("cells_key") == key:
        return cache["cells"]
    lo = points.min(axis=0)
    shape = np.floor((points.max(axis=0) - lo) / side).astype(np.int64) + 1
    strides = _row_major_strides(shape)
    cells = np.minimum(((points - lo) / side).astype(np.int64), shape - 1)
    keys = cells @ strides
    order = np.argsort(keys, kind="stable")
    layout = (lo, shape, strides, points[order], keys[order])
    if cache is not None:
        cache["cells_key"] = key
        cache["cells"] = layout
    return layout


def cell_log_sums(
    points: np.ndarray,
    Z: np.ndarray,
    bandwidth: float,
    *,
    rtol: float = FAST_RTOL,
    cache: dict[str, Any] | None = None,
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Gaussian kernel sums over each row's neighbouring grid cells (1-D and 2-D).

    Returns the log of each row's sum (unnormalized) and a mask of the rows whose sum may
    miss more than ``rtol`` of the density: every point outside a row's block of cells is
    at least ``gap`` away, so together they add at most (n - k) exp(-gap^2 / 2h^2). Within
    a cell, exp(-|q-p|^2/2h^2) = exp(-|q|^2/2h^2) exp(q.p/h^2) exp(-|p|^2/2h^2) in
    coordinates centred on the cell, which keeps every factor far from overflow and turns
    a block of kernels into one small matrix product. Returns None when the rows spread
    over so many cells that a tree is cheaper.
    """
    n, d = points.shape
    m = Z.shape[0]
    split = _CELL_SPLIT[d]
    h = bandwidth
    reach = h * math.sqrt(2.0 * math.log(n / rtol))  # a point's kernel times n < rtol beyond
    side = reach / split
    cells_per_axis = np.floor((points.max(axis=0) - points.min(axis=0)) / side) + 1 + 2 * split
    if math.prod(float(c) for c in cells_per_axis) > 2.0**62 or cells_per_axis.max() > 2.0**40:
        return None  # cell keys would overflow int64, or cell centres lose float precision
    lo, shape, strides, sorted_points, sorted_keys = _cell_layout(points, side, cache)
    position = np.floor((Z - lo) / side)
    near = np.all((position >= -split) & (position <= shape - 1 + split), axis=1)
    rows_near = np.flatnonzero(near)
    cells = position[rows_near].astype(np.int64)
    wide = shape + 2 * split  # query cells may lie up to `split` cells outside the grid
    query_keys = (cells + split) @ _row_major_strides(wide)
    order = np.argsort(query_keys, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(query_keys[order])) + 1) if order.size else []
    if len(groups) > max(2048, m // 4):  # ~60 us a cell: past this a tree is cheaper
        return None
    inv_h2 = 1.0 / (h * h)
    log_sums = np.full(m, -np.inf)
    gaps = np.zeros(m)
    counts = np.zeros(m)
    offsets = list(itertools.product(range(-split, split + 1), repeat=d - 1))

    shape_list, strides_list = shape.tolist(), strides.tolist()

    def run(group: np.ndarray) -> None:
        cell = cells[group[0]]
        rows = rows_near[group]
        # Plain ints here: this runs once per cell, and numpy's per-call cost adds up.
        at = cell.tolist()
        first = [max(c - split, 0) for c in at]
        last = [min(c + split, size - 1) for c, size in zip(at, shape_list, strict=True)]
        pieces = []
        for offset in offsets:  # every axis but the last; the last is one contiguous run
            lead = [c + o for c, o in zip(at, offset, strict=False)]
            if any(not f <= x <= t for x, f, t in zip(lead, first, last, strict=False)):
                continue
            base = sum(x * stride for x, stride in zip(lead, strides_list, strict=False))
            start, stop = np.searchsorted(sorted_keys, [base + first[-1], base + last[-1] + 1])
            if stop > start:
                pieces.append(sorted_points[start:stop])
        rel = Z[rows] - (lo + (cell - split) * side)
        below = np.where(cell - split > 0, rel, np.inf)
        above = np.where(cell + split < shape - 1, (2 * split + 1) * side - rel, np.inf)
        gaps[rows] = np.min(np.minimum(below, above), axis=1)
        if not pieces:
            counts[rows] = 0
            return
        centre = lo + (cell + 0.5) * side
        near_points = (np.concatenate(pieces) if len(pieces) > 1 else pieces[0]) - centre
        k = near_points.shape[0]
        counts[rows] = k
        log_weights = -0.5 * inv_h2 * np.einsum("ij,ij->i", near_points, near_points)
        scaled = near_points.T * inv_h2
        q = Z[rows] - centre
        q_term = 0.5 * inv_h2 * np.einsum("ij,ij->i", q, q)
        sums = np.empty(len(rows))
        step = max(1, _CELL_BLOCK_ENTRIES // k)
        for i in range(0, len(rows), step):
            # Elementwise, not BLAS: a row's sum does not depend on which rows share its
            # block. (Across chunks, rows the bound leaves unsettled may still be summed
            # by another method, so chunked scores agree within FAST_RTOL, not bitwise.)
            block = np.multiply.outer(q[i : i + step, 0], scaled[0])
            block += log_weights
            for j in range(1, d):
                block += np.multiply.outer(q[i : i + step, j], scaled[j])
            np.exp(block, out=block)
            sums[i : i + step] = block.sum(axis=1)
        with np.errstate(divide="ignore"):
            log_sums[rows] = np.log(sums) - q_term

    if workers > 1 and len(groups) > 1 and m >= _THREADED_ROWS:
        with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL in these loops
            list(pool.map(run, groups))
    else:
        for group in groups:
            run(group)
    with np.errstate(divide="ignore"):
        left_out = np.log(n - counts) - 0.5 * inv_h2 * gaps**2
    unsure = ~near | ~(left_out <= math.log(rtol) + log_sums)
    return log_sums, unsure


def default_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
) -> np.ndarray:
    """The default mode: relative error at most FAST_RTOL, by the cheapest method that bounds it."""
    n, d = points.shape
    if Z.shape[0] == 0 or not np.all(np.abs(Z) < 1e150):  # distances would overflow
        return exact_log_density(points, Z, kernel, bandwidth)
    if kernel == "gaussian" and d in _CELL_SPLIT:
        result = cell_log_sums(points, Z, bandwidth, cache=cache)
        if result is not None:
            log_sums, unsure = result
            out = log_sums - log_normalizer(kernel, d, bandwidth, n)
            left = np.flatnonzero(unsure)
            if left.size * n > _FULL_SUM_PAIRS:  # many sparse rows: let the tree find theirs
                out[left] = fast_log_density(points, Z[left], kernel, bandwidth, cache=cache)
            elif left.size:
                out[left] = exact_log_density(points, Z[left], kernel, bandwidth)
            return out
    return fast_log_density(points, Z, kernel, bandwidth, cache=cache)


def _chunks(order: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Consecutive groups of rows (in radius order) of about _PAIRS_PER_CHUNK pairs each."""
    cumulative = np.cumsum(counts + 1)
    cuts = np.searchsorted(
        cumulative, np.arange(_PAIRS_PER_CHUNK, cumulative[-1], _PAIRS_PER_CHUNK)
    )
    return [rows for rows in np.split(order, np.unique(cuts)) if rows.size]


def _chunk_log_sums(
    tree: Any,
    Q: np.ndarray,
    nearest: np.ndarray,
    radius: np.ndarray,
    kernel: str,
    h: float,
) -> np.ndarray:
    from scipy.spatial import cKDTree

    pairs = cKDTree(Q).sparse_distance_matrix(
        tree, max_distance=float(radius.max()), output_type="ndarray"
    )
    rows = pairs["i"]
    distance = pairs["v"]
    if kernel == "gaussian":
        exponent = -(distance**2 - nearest[rows] ** 2) / (2.0 * h * h)
        weights = np.exp(np.maximum(exponent, _SMALLEST_EXPONENT))
        offset = -(nearest**2) / (2.0 * h * h)
    elif kernel == "exponential":
        weights = np.exp(np.maximum(-(distance - nearest[rows]) / h, _SMALLEST_EXPONENT))
        offset = -nearest / h
    else:
        weights = _profile(kernel, (distance / h) ** 2)
        offset = np.zeros(Q.shape[0])
    sums = np.bincount(rows, weights=weights, minlength=Q.shape[0])
    if kernel in ("gaussian", "exponential"):
        # The nearest point always counts (a distance of exactly the radius may be dropped).
        sums = np.maximum(sums, 1.0)
    with np.errstate(divide="ignore"):
        return np.log(sums) + offset


def approx_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
) -> np.ndarray:
    """Gaussian gridding for the Gaussian kernel in 1-D and 2-D (relative error < 1e-3)."""
    from gencli.errors import DataError

    n, d = points.shape
    if kernel != "gaussian" or d > 2:
        raise DataError(
            f"--approx works for the gaussian kernel in 1-D and 2-D; this model is a "
            f"{kernel} kernel in {d}-D: score without --approx"
        )
    normalizer = log_normalizer(kernel, d, bandwidth, n)
    grid = _gridded_sums(points, bandwidth, cache)
    out = np.full(Z.shape[0], np.nan)
    if grid is not None:
        for start in range(0, Z.shape[0], _GATHER_ROWS):
            out[start : start + _GATHER_ROWS] = _gather(grid, Z[start : start + _GATHER_ROWS])
    unsure = np.isnan(out)
    if np.count_nonzero(unsure) * n <= _FEW_PAIRS:  # summing so few beats building cells
        out[unsure] = exact_log_density(points, Z[unsure], kernel, bandwidth) + normalizer
    else:
        out[unsure] = (
            default_log_density(points, Z[unsure], kernel, bandwidth, cache=cache) + normalizer
        )
    return out - normalizer


class _Grid(NamedTuple):
    """The kernel sums convolved down to the gathering width, on a regular grid."""

    values: np.ndarray  # in grid units: gather and divide by ``scale`` for kernel sums
    origin: np.ndarray  # the smallest training value on each axis
    pad: int  # grid nodes below ``origin``
    step: float
    scale: float
    trusted: float  # smallest kernel sum a row may have and keep its grid value

    def position(self, X: np.ndarray) -> np.ndarray:
        """Rows in grid steps from node 0. Measured from ``origin`` rather than from the
        grid's own first node: that node's coordinate can round away the margin when the
        data sit at a large offset with a small bandwidth (1e15 + k / 8, h = 0.004)."""
        return (X - self.origin) / self.step + self.pad


def _narrow_weights(position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First node index and the narrow Gaussian's weight at each of the stencil's nodes.

    ``position`` is in grid steps, finite and within int64; the nodes run from
    ``floor(position) - STENCIL + 1`` to ``floor(position) + STENCIL``.
    """
    first = np.floor(position).astype(np.int64) - (_GRID_STENCIL - 1)
    distance = (position - first)[:, None] - np.arange(2 * _GRID_STENCIL)
    return first, np.exp(distance * distance * (-0.5 / _GRID_WIDTH**2))


def _gridded_sums(points: np.ndarray, h: float, cache: dict[str, Any] | None) -> _Grid | None:
    """Spread the points with the narrow Gaussian and convolve with the wide one, or None
    when the grid would cost more than the default path (which then scores every row)."""
    key = ("gridded", h)
    if cache is not None and cache.get("gridded_key") == key:
        return cast("_Grid | None", cache["gridded"])
    n, d = points.shape
    step = h / GRID_STEPS_PER_BANDWIDTH
    pad = math.ceil(GRID_REACH * GRID_STEPS_PER_BANDWIDTH) + _GRID_STENCIL + 1
    origin = points.min(axis=0)
    extent = (points.max(axis=0) - origin) / step + 2 * pad + 1
    # The FFT costs about 40 ns a cell and spreading 0.5 us a point (measured): a grid much
    # larger than the data costs more than the default path saves on its rows.
    most = min(_MAX_GRID_CELLS, max(_MIN_GRID_CELLS, _CELLS_PER_POINT * n))
    grid: _Grid | None = None
    if np.all(extent < most) and float(np.prod(extent)) < most:
        shape = tuple(int(e) for e in np.ceil(extent))
        values = _spread((points - origin) / step + pad, shape)
        wide = GRID_STEPS_PER_BANDWIDTH**2 - 2 * _GRID_WIDTH**2  # b^2, in steps^2
        half = math.ceil((GRID_REACH + 1) * GRID_STEPS_PER_BANDWIDTH)
        offsets = np.arange(-half, half + 1, dtype=np.float64)
        kernel = np.exp(offsets * offsets * (-0.5 / wide))
        for axis in range(d):  # the Gaussian is a product over axes
            values = _fft_convolve_same(values, kernel, axis)
        # Three Gaussians of variances a^2, b^2, c^2 (in steps) convolve to one of k^2, with
        # this factor per axis for unnormalized profiles summed over unit steps.
        scale = (2 * math.pi * _GRID_WIDTH**2 * math.sqrt(wide) / GRID_STEPS_PER_BANDWIDTH) ** d
        # A row is trusted when what the points beyond reach could add is a negligible
        # share of its sum. That threshold, n * 1.1e-7, is also far above the FFT's
        # round-off: about 1e-15 of the largest sum, which is at most n.
        trusted = n * math.exp(-0.5 * GRID_REACH**2) / _BEYOND_REACH_SHARE
        # Gathered in single precision: every term is positive, so the sum keeps a relative
        # error near 1e-7, and half the bytes to move makes the gather twice as fast.
        grid = _Grid(values.astype(np.float32), origin, pad, step, scale, trusted)
    if cache is not None:
        cache["gridded_key"] = key
        cache["gridded"] = grid
    return grid


def _spread(position: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum of the narrow Gaussians centred on the points, at every grid node.

    The points go in order along the first axis, so each block of them touches only a
    band of the grid: the work grows with points + cells, not their product.
    """
    cells = math.prod(shape)
    stride = cells // shape[0]
    values = np.zeros(cells)
    span = np.arange(2 * _GRID_STENCIL)
    if position.shape[0] > _SPREAD_POINTS:
        position = position[np.argsort(position[:, 0], kind="stable")]
    for start in range(0, position.shape[0], _SPREAD_POINTS):
        part = position[start : start + _SPREAD_POINTS]
        first, weight = _narrow_weights(part[:, 0])
        low = int(first.min()) * stride
        band = (int(first.max()) + span.size) * stride - low
        if len(shape) == 1:
            index = first[:, None] + span - low
            values[low : low + band] += np.bincount(index.ravel(), weight.ravel(), band)
            continue
        first_y, weight_y = _narrow_weights(part[:, 1])
        row = first[:, None] * stride + first_y[:, None] + span - low
        for offset in range(span.size):  # one x-offset at a time keeps the arrays small
            index = row + offset * stride
            values[low : low + band] += np.bincount(
                index.ravel(), (weight[:, offset, None] * weight_y).ravel(), band
            )
    return values.reshape(shape)


def _gather(grid: _Grid, Z: np.ndarray) -> np.ndarray:
    """log kernel sum at each row, NaN where the grid cannot be trusted."""
    d = Z.shape[1]
    span = 2 * _GRID_STENCIL
    shape = np.array(grid.values.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        position = grid.position(Z)
        # Checked before the cast to integers: a row 1e18 bandwidths out would wrap around.
        inside = np.all((position > -span) & (position < shape + span), axis=1)
    position[~inside] = 0.0
    placed = [_narrow_weights(position[:, axis]) for axis in range(d)]
    first = np.stack([f for f, _ in placed], axis=1)
    inside &= np.all((first >= 0) & (first + span <= shape), axis=1)
    first[~inside] = 0
    windows = sliding_window_view(grid.values, (span,) * d)
    weights = [w.astype(np.float32) for _, w in placed]
    if d == 1:
        sums = np.einsum("ni,ni->n", weights[0], windows[first[:, 0]])
    else:
        block = windows[first[:, 0], first[:, 1]]
        sums = (weights[0][:, None, :] @ block @ weights[1][:, :, None]).ravel()
    sums = sums.astype(np.float64) / grid.scale
    trusted = inside & (sums >= grid.trusted)
    out = np.full(Z.shape[0], np.nan)
    out[trusted] = np.log(sums[trusted])
    return out


def _fast_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: the FFT is fast at such sizes, with less padding than 2^a."""
    best = 1 << max(0, math.ceil(math.log2(n)))
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three
            while size < n:
                size *= 2
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def _fft_convolve_same(grid: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.signal.fftconvolve(grid, kernel, mode="same")`` along one axis, with numpy's
    FFT (scipy.signal takes half a second to import, more than the whole evaluation)."""
    length = grid.shape[axis]
    size = _fast_size(length + kernel.size - 1)
    spectrum = np.fft.rfft(kernel, size)
    shape = [1] * grid.ndim
    shape[axis] = spectrum.size
    product = np.fft.rfft(grid, size, axis=axis) * spectrum.reshape(shape)
    full = np.fft.irfft(product, size, axis=axis)
    start = (kernel.size - 1) // 2
    window = [slice(None)] * grid.ndim
    window[axis] = slice(start, start + length)
    return full[tuple(window)]


def log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    mode: str = "fast",
    cache: dict[str, Any] | None = None,
) -> np.ndarray:
    """The KDE's log-density at each row of Z by ``mode``: 'fast', 'exact' or 'approx'."""
    if mode == "exact":
        return exact_log_density(points, Z, kernel, bandwidth)
    if mode == "approx":
        return approx_log_density(points, Z, kernel, bandwidth, cache=cache)
    return default_log_density(points, Z, kernel, bandwidth, cache=cache)
