"""``--approx``: Gaussian gridding of a Gaussian-kernel density in 1-D and 2-D.

The kernel is split into three narrower Gaussians: one spreads the training points onto a
grid, one is applied to the grid by FFT, one gathers each row's value from the grid. The
error is relative for every pair of row and point (about 1e-4); rows too far out for the
grid to vouch for are summed exactly if few, else by the default path, and so is every row
when the grid would be much larger than the data. Relative error below 1e-3.

Training points may come with ``weights`` (how many times each occurs): a point repeated
k times is spread once with weight k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gencli.density.families.kde_exact import exact_log_density, total_weight
from gencli.density.families.kernels import log_normalizer

APPROX_RTOL = 1e-3
# --approx, "Gaussian gridding": a Gaussian of variance h^2 is the convolution of three of
# variances a^2 + b^2 + c^2. Each point is spread onto a grid with the narrow one (a), the
# grid is convolved with the wide one (b) by FFT, and each row gathers from the grid with
# the narrow one (c). Both sums over the grid are the trapezoidal rule for a Gaussian
# integral, whose relative error is below 2 exp(-2 pi^2 (width / step)^2) wherever the
# Gaussian sits (Poisson summation): the error is relative for every (row, point) pair, in
# the tails as much as in the bulk. With these settings it is below 6e-5 per axis for pairs
# within GRID_REACH bandwidths, where the stencils hold the narrow Gaussians (checked at
# many offsets out to GRID_REACH in tests/density/test_kde_grid.py).
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


def approx_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    cache: dict[str, Any] | None = None,
    weights: np.ndarray | None = None,
    fallback: Callable[..., np.ndarray] | None = None,
) -> np.ndarray:
    """Gaussian gridding for the Gaussian kernel in 1-D and 2-D (relative error < 1e-3).

    Rows too far out for the grid are summed exactly when few, else by ``fallback`` (the
    default mode's evaluation, passed in by the caller; exact when None)."""
    from gencli.errors import DataError

    d = points.shape[1]
    n = total_weight(points, weights)
    if kernel != "gaussian" or d > 2:
        raise DataError(
            f"--approx works for the gaussian kernel in 1-D and 2-D; this model is a "
            f"{kernel} kernel in {d}-D: score without --approx"
        )
    normalizer = log_normalizer(kernel, d, bandwidth, n)
    grid = _gridded_sums(points, bandwidth, cache, weights)
    out = np.full(Z.shape[0], np.nan)
    if grid is not None:
        for start in range(0, Z.shape[0], _GATHER_ROWS):
            out[start : start + _GATHER_ROWS] = _gather(grid, Z[start : start + _GATHER_ROWS])
    unsure = np.isnan(out)
    few = np.count_nonzero(unsure) * points.shape[0] <= _FEW_PAIRS  # so few: sum directly
    if fallback is None or few:
        out[unsure] = (
            exact_log_density(points, Z[unsure], kernel, bandwidth, weights=weights) + normalizer
        )
    else:
        out[unsure] = (
            fallback(points, Z[unsure], kernel, bandwidth, cache=cache, weights=weights)
            + normalizer
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


def _gridded_sums(
    points: np.ndarray,
    h: float,
    cache: dict[str, Any] | None,
    weights: np.ndarray | None = None,
) -> _Grid | None:
    """Spread the points with the narrow Gaussian and convolve with the wide one, or None
    when the grid would cost more than the default path (which then scores every row)."""
    key = ("gridded", h)
    if cache is not None and cache.get("gridded_key") == key:
        return cast("_Grid | None", cache["gridded"])
    d = points.shape[1]
    n = total_weight(points, weights)
    step = h / GRID_STEPS_PER_BANDWIDTH
    pad = math.ceil(GRID_REACH * GRID_STEPS_PER_BANDWIDTH) + _GRID_STENCIL + 1
    origin = points.min(axis=0)
    extent = (points.max(axis=0) - origin) / step + 2 * pad + 1
    # The FFT costs about 40 ns a cell and spreading 0.5 us a point (measured): a grid much
    # larger than the data costs more than the default path saves on its rows.
    most = min(_MAX_GRID_CELLS, max(_MIN_GRID_CELLS, _CELLS_PER_POINT * points.shape[0]))
    grid: _Grid | None = None
    if np.all(extent < most) and float(np.prod(extent)) < most:
        shape = tuple(int(e) for e in np.ceil(extent))
        values = _spread((points - origin) / step + pad, shape, weights)
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


def _spread(
    position: np.ndarray, shape: tuple[int, ...], weights: np.ndarray | None = None
) -> np.ndarray:
    """Sum of the narrow Gaussians centred on the points (times their weights), at every
    grid node.

    The points go in order along the first axis, so each block of them touches only a
    band of the grid: the work grows with points + cells, not their product.
    """
    cells = math.prod(shape)
    stride = cells // shape[0]
    values = np.zeros(cells)
    span = np.arange(2 * _GRID_STENCIL)
    if position.shape[0] > _SPREAD_POINTS:
        order = np.argsort(position[:, 0], kind="stable")
        position = position[order]
        weights = weights[order] if weights is not None else None
    for start in range(0, position.shape[0], _SPREAD_POINTS):
        part = position[start : start + _SPREAD_POINTS]
        first, weight = _narrow_weights(part[:, 0])
        if weights is not None:
            weight *= weights[start : start + _SPREAD_POINTS, None]
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
