"""The default path for Gaussian kernels in 1-D and 2-D: kernel sums over grid cells.

No tree to build: the training points are sorted by cell once, each row sums the points
in its block of neighbouring cells (dense blocks of kernels evaluated as small matrix
products), and carries a bound on what the points outside the block could add, so that
:func:`gencli.density.families.kde_scoring.default_log_density` can sum the few unsettled rows in
full. Repeated points come with weights (how often each occurs).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from gencli.density.families.kde_exact import FAST_RTOL, run_in_threads, total_weight

# Cells per reach (the distance beyond which a point cannot matter) on each axis, by
# dimension: smaller cells waste fewer pairs, more cells cost more Python (measured).
CELL_SPLIT = {1: 3, 2: 2}
_CELL_BLOCK_ENTRIES = 1 << 17  # kernels per block: small enough to stay in cache
_THREADED_ROWS = 4096  # fewer rows spread over sparse cells: threads cost more than they save


def _row_major_strides(shape: np.ndarray) -> np.ndarray:
    """Multipliers that turn a grid position into its row-major flat index."""
    return np.append(np.cumprod(shape[::-1])[:-1][::-1], 1).astype(np.int64)


def _cell_layout(
    points: np.ndarray, side: float, cache: dict[str, Any] | None, weights: np.ndarray | None
) -> Any:
    """Training points sorted by grid cell (row-major key), with the grid's origin and
    shape, their log-weights in the same order and the running total of their weights."""
    key = ("cells", side)
    if cache is not None and cache.get("cells_key") == key:
        return cache["cells"]
    lo = points.min(axis=0)
    shape = np.floor((points.max(axis=0) - lo) / side).astype(np.int64) + 1
    strides = _row_major_strides(shape)
    cells = np.minimum(((points - lo) / side).astype(np.int64), shape - 1)
    keys = cells @ strides
    order = np.argsort(keys, kind="stable")
    sorted_weights = weights[order] if weights is not None else np.ones(points.shape[0])
    running = np.concatenate([[0.0], np.cumsum(sorted_weights)])
    log_weights = np.log(sorted_weights) if weights is not None else None
    layout = (lo, shape, strides, points[order], keys[order], log_weights, running)
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
    weights: np.ndarray | None = None,
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
    d = points.shape[1]
    n = total_weight(points, weights)
    m = Z.shape[0]
    split = CELL_SPLIT[d]
    h = bandwidth
    reach = h * math.sqrt(2.0 * math.log(n / rtol))  # a point's kernel times n < rtol beyond
    side = reach / split
    cells_per_axis = np.floor((points.max(axis=0) - points.min(axis=0)) / side) + 1 + 2 * split
    if math.prod(float(c) for c in cells_per_axis) > 2.0**62 or cells_per_axis.max() > 2.0**40:
        return None  # cell keys would overflow int64, or cell centres lose float precision
    layout = _cell_layout(points, side, cache, weights)
    lo, shape, strides, sorted_points, sorted_keys, sorted_log_weights, running = layout
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
        spans = []
        for offset in offsets:  # every axis but the last; the last is one contiguous run
            lead = [c + o for c, o in zip(at, offset, strict=False)]
            if any(not f <= x <= t for x, f, t in zip(lead, first, last, strict=False)):
                continue
            base = sum(x * stride for x, stride in zip(lead, strides_list, strict=False))
            start, stop = np.searchsorted(sorted_keys, [base + first[-1], base + last[-1] + 1])
            if stop > start:
                pieces.append(sorted_points[start:stop])
                spans.append((start, stop))
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
        counts[rows] = sum(running[stop] - running[start] for start, stop in spans)
        log_weights = -0.5 * inv_h2 * np.einsum("ij,ij->i", near_points, near_points)
        if sorted_log_weights is not None:
            log_weights += np.concatenate([sorted_log_weights[a:b] for a, b in spans])
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

    run_in_threads(run, groups, workers if m >= _THREADED_ROWS else 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left_out = np.log(np.maximum(n - counts, 0.0)) - 0.5 * inv_h2 * gaps**2
    unsure = ~near | ~(left_out <= math.log(rtol) + log_sums)
    return log_sums, unsure
