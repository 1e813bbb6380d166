"""Evaluating a kernel density at many rows: exact, fast with a stated tolerance, or binned.

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
- ``approx`` (Gaussian kernel, 1-D and 2-D): training points binned linearly on a grid,
  convolved with the kernel by FFT, and the log-density interpolated; rows where the
  binned density is too small to trust fall back to ``fast``. Relative error below 1e-3.

All functions work in the estimator's (standardized) space and return natural logs.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

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
BINS_PER_BANDWIDTH = 12.0
MIN_KERNELS = 30.0  # exp() of anything lower is a subnormal: slow and useless


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
    """Binned FFT evaluation for the Gaussian kernel in 1-D and 2-D (relative error < 1e-3)."""
    from gencli.errors import DataError

    n, d = points.shape
    if kernel != "gaussian" or d > 2:
        raise DataError(
            f"--approx works for the gaussian kernel in 1-D and 2-D; this model is a "
            f"{kernel} kernel in {d}-D: score without --approx"
        )
    grid = _binned_grid(points, Z, bandwidth, cache)
    log_grid, lo, step, floor = grid
    position = (Z - lo) / step
    out = _interpolate(log_grid, position)
    unsure = ~(out > floor) | ~np.isfinite(out)
    if np.any(unsure):
        out[unsure] = default_log_density(
            points, Z[unsure], kernel, bandwidth, cache=cache
        ) + log_normalizer(kernel, d, bandwidth, n)
    return out - log_normalizer(kernel, d, bandwidth, n)


def _binned_grid(
    points: np.ndarray, Z: np.ndarray, h: float, cache: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """log of the unnormalized kernel sum on a grid covering the points and the queries."""
    d = points.shape[1]
    lo = np.minimum(points.min(axis=0), Z.min(axis=0)) - 8 * h
    hi = np.maximum(points.max(axis=0), Z.max(axis=0)) + 8 * h
    key = ("grid", tuple(np.round(lo, 12)), tuple(np.round(hi, 12)))
    if cache is not None and cache.get("grid_key") == key:
        return cache["grid"]
    max_bins = 1 << 16 if d == 1 else 1 << 11
    bins = np.minimum(np.ceil((hi - lo) / (h / BINS_PER_BANDWIDTH)).astype(int) + 1, max_bins)
    step = (hi - lo) / (bins - 1)
    position = (points - lo) / step
    base = np.floor(position).astype(int)
    frac = position - base
    strides = _row_major_strides(bins)
    indices, weights = [], []
    for corner in range(1 << d):  # each point shares its weight among its grid cell's corners
        offsets = np.array([(corner >> j) & 1 for j in range(d)])
        weights.append(np.prod(np.where(offsets == 1, frac, 1.0 - frac), axis=1))
        indices.append(np.minimum(base + offsets, bins - 1) @ strides)
    size = int(np.prod(bins))
    counts = np.bincount(
        np.concatenate(indices), weights=np.concatenate(weights), minlength=size
    ).reshape(tuple(bins))
    half = np.ceil(8 * h / step).astype(int)
    # Linear binning smooths each point by a hat function of variance step^2 / 6 per axis;
    # a kernel narrower by that much undoes it to fourth order in step / h.
    width2 = np.maximum(h * h - step**2 / 6.0, (0.5 * h) ** 2)
    sums = counts
    for axis in range(d):  # the Gaussian is a product over axes: convolve one axis at a time
        offsets = np.arange(-half[axis], half[axis] + 1) * step[axis]
        kernel = np.exp(-0.5 * offsets**2 / width2[axis]) * (h / math.sqrt(width2[axis]))
        sums = _fft_convolve_same(sums, kernel, axis)
    # Where fewer than MIN_KERNELS kernels' worth of mass makes up the sum, its log curves
    # too sharply between kernels for the grid: those rows go to the fast path instead.
    floor = math.log(MIN_KERNELS)
    log_grid = np.log(np.maximum(sums, sums.max() * 1e-30))
    result = (log_grid, lo, step, floor)
    if cache is not None:
        cache["grid_key"] = key
        cache["grid"] = result
    return result


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


def _interpolate(log_grid: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Cubic (Catmull-Rom) interpolation of the log-density grid at fractional positions."""
    d = position.shape[1]
    shape = np.array(log_grid.shape)
    base = np.clip(np.floor(position).astype(int), 1, shape - 3)
    t = position - base
    # Catmull-Rom weights of the four grid values at offsets -1, 0, 1, 2, per axis.
    weights = np.stack(
        [
            0.5 * (-(t**3) + 2 * t**2 - t),
            0.5 * (3 * t**3 - 5 * t**2 + 2),
            0.5 * (-3 * t**3 + 4 * t**2 + t),
            0.5 * (t**3 - t**2),
        ]
    )  # (4, rows, d)
    out = np.zeros(position.shape[0])
    for corner in np.ndindex(*([4] * d)):
        index = tuple((base[:, j] + corner[j] - 1) for j in range(d))
        weight = np.prod([weights[corner[j], :, j] for j in range(d)], axis=0)
        out += weight * log_grid[index]
    return out


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
