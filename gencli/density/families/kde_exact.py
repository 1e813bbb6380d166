"""``--exact``: every kernel summed, in blocks of rows on both cores (any kernel, any
dimension), exact to rounding. The reference the quicker paths are held to (``FAST_RTOL``).

Works in the estimator's (standardized) space and returns natural logs.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gencli.density.families.kernels import log_normalizer, profile
from gencli.errors import Stopped
from gencli.native import max_threads

FAST_RTOL = 1e-6  # the relative error the quicker paths hold against this exact sum
SINGLE_RTOL = 1e-6  # tolerance that allows single-precision exponentials (3e-7 measured)
_BLOCK_ENTRIES = 1 << 20
_TILE_ENTRIES = 1 << 17  # a tile of the Gaussian sum: 1 MB, in cache
_TILE_COLUMNS = 16_384
SMALLEST_EXPONENT = -700.0
SINGLE_SMALLEST_EXPONENT = -80.0  # single precision's exp stays normal above -87
_CANCELLATION = 4 * np.finfo(np.float64).eps  # relative error of |q|^2 + |p|^2 - 2 q.p
_EXPONENT_TOLERANCE = 1e-8  # in nats: a relative density error of 1e-8
_ROOT_KERNELS = ("exponential", "linear", "cosine")  # profiles in u, not u^2


def total_weight(points: np.ndarray, weights: np.ndarray | None) -> float:
    """How many training points there are, counting repeats (the KDE's n)."""
    return float(points.shape[0]) if weights is None else float(weights.sum())


def run_in_threads(work: Callable[[Any], None], items: Iterable[Any], workers: int) -> None:
    """``work(item)`` for every item on ``workers`` threads (numpy releases the GIL).

    On Ctrl-C, SIGTERM or an error, items not yet started are dropped and, for a stop
    signal, nothing waits for the blocks in flight: the process is about to end.
    """
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
    shifted = np.maximum(a - safe[:, None], SMALLEST_EXPONENT)  # no subnormals: 20x faster
    with np.errstate(divide="ignore", under="ignore"):
        return np.where(finite, safe + np.log(np.sum(np.exp(shifted), axis=1)), top)


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
    values = profile(kernel, u2)
    if log_weights is not None:
        values *= np.exp(log_weights)
    with np.errstate(divide="ignore"):
        return np.log(values.sum(axis=1))


def exact_log_density(
    points: np.ndarray,
    Z: np.ndarray,
    kernel: str,
    bandwidth: float,
    *,
    workers: int = 2,
    weights: np.ndarray | None = None,
    rtol: float = 0.0,
) -> np.ndarray:
    """Every kernel summed, in blocks of rows on ``workers`` threads (exact to rounding);
    ``weights`` counts how often each point occurs (default once). With ``rtol`` of at
    least ``SINGLE_RTOL`` the Gaussian kernel's exponentials are taken in single precision
    with a correction (the default mode's dense path: relative error below 3e-7)."""
    n, d = points.shape
    log_weights = np.log(weights) if weights is not None else None
    # Distances are translation-invariant; centring avoids cancellation.
    centre = points.mean(axis=0) if n else np.zeros(d)
    P = points - centre
    Q = Z - centre
    out = np.empty(Q.shape[0])
    scale = 1.0 / (bandwidth * bandwidth)
    p_sq = np.einsum("ij,ij->i", P, P)
    p_top = float(p_sq.max()) if n else 0.0
    finite = np.all(np.isfinite(Q), axis=1)
    tame, rest = np.flatnonzero(finite), np.flatnonzero(~finite)
    if kernel == "gaussian" and n and tame.size:
        q_top = float(np.max(np.einsum("ij,ij->i", Q[tame], Q[tame])))
        # The factored sum loses eps (|q|^2 + |p|^2) / h^2 nats to cancellation, as the
        # distance expansion does; past _EXPONENT_TOLERANCE the differences are squared.
        if _CANCELLATION * (q_top + p_top) * scale <= _EXPONENT_TOLERANCE:
            out[tame] = _gaussian_log_sums(
                P, Q[tame], p_sq, scale, log_weights, workers, rtol >= SINGLE_RTOL
            )
            if rest.size:
                out[rest] = _generic_log_sums(P, Q[rest], kernel, scale, log_weights, workers)
            return out - log_normalizer(kernel, d, bandwidth, total_weight(points, weights))
    out[:] = _generic_log_sums(P, Q, kernel, scale, log_weights, workers)
    return out - log_normalizer(kernel, d, bandwidth, total_weight(points, weights))


def _gaussian_log_sums(
    P: np.ndarray,
    Q: np.ndarray,
    p_sq: np.ndarray,
    scale: float,
    log_weights: np.ndarray | None,
    workers: int,
    single: bool,
) -> np.ndarray:
    """log sum_j w_j exp(-|q - p_j|^2 scale / 2) for finite rows q, with one exp per pair
    (``single``: in single precision, see :func:`_exp_in_single_precision`).

    -|q - p|^2 / 2 = q.p - |p|^2 / 2 - |q|^2 / 2: the last term is the same for every point
    of a row, so it leaves the sum, and the rest is one matrix product minus a vector. Work
    goes in tiles of about ``_TILE_ENTRIES`` (a row block against a point block, in cache),
    rows combined across point blocks by a running log-sum-exp; each thread runs BLAS on
    one thread (two threads each starting their own BLAS threads wait on each other's locks).
    """
    n = P.shape[0]
    scaled = P * scale
    offsets = 0.5 * scale * p_sq
    if log_weights is not None:
        offsets = offsets - log_weights
    cols = min(n, _TILE_COLUMNS)
    block = max(1, _TILE_ENTRIES // cols)
    out = np.empty(Q.shape[0])

    def run(start: int) -> None:
        q = Q[start : start + block]
        top = np.full(q.shape[0], -np.inf)
        total = np.zeros(q.shape[0])
        tile = np.empty((q.shape[0], cols))
        if single:
            tile32 = np.empty(tile.shape, np.float32)
            exp32 = np.empty(tile.shape, np.float32)
        for first in range(0, n, cols):
            E = tile[:, : min(cols, n - first)]
            np.matmul(q, scaled[first : first + cols].T, out=E)
            E -= offsets[first : first + cols]
            new_top = np.maximum(top, E.max(axis=1))
            new_top[~np.isfinite(new_top)] = 0.0
            E -= new_top[:, None]
            if single:
                _exp_in_single_precision(E, tile32[:, : E.shape[1]], exp32[:, : E.shape[1]])
            else:
                np.maximum(E, SMALLEST_EXPONENT, out=E)  # no subnormals: 3x faster exp
                np.exp(E, out=E)
            with np.errstate(under="ignore"):
                total = total * np.exp(top - new_top) + E.sum(axis=1)
            top = new_top
        with np.errstate(divide="ignore"):
            out[start : start + block] = (
                np.log(total) + top - 0.5 * scale * np.einsum("ij,ij->i", q, q)
            )

    starts = range(0, Q.shape[0], block)
    with _one_blas_thread(workers, len(starts)):
        run_in_threads(run, starts, workers)
    return out


def _exp_in_single_precision(E: np.ndarray, rounded: np.ndarray, exp32: np.ndarray) -> None:
    """exp(E) in place for E <= 0, to a relative error below 3e-7 per term, 20% quicker.

    exp takes most of a Gaussian sum's time, and single precision's takes half as long.
    With r = E rounded to single precision, exp(E) = exp(r) exp(E - r), and
    exp(E - r) = 1 + (E - r) to 1e-11 (|E - r| <= 2^-24 |E| <= 5e-6 once E >= -80), so
    the rounding of the argument is corrected in double precision; what is left is
    exp(r)'s own error, under 2.5 ulp (3e-7). Terms below e^-80 of a row's largest
    (which is 1 here) are dropped: 1e-35 of the sum per training point.
    """
    np.maximum(E, SINGLE_SMALLEST_EXPONENT, out=E)
    np.copyto(rounded, E, casting="same_kind")
    np.exp(rounded, out=exp32)
    np.subtract(E, rounded, out=E)
    E += 1.0
    E *= exp32


class _OneBlasThread:
    """BLAS on one thread while any caller's worker threads multiply (re-entrant, shared).

    threadpoolctl's limit is process-wide, so overlapping calls from two threads each
    restoring what they saw would leave BLAS on one thread for good; here the first
    caller in sets it and the last one out restores it. The library scan behind it
    (3.5 ms) is done once.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.limit: Any = None

    def __enter__(self) -> None:
        with self.lock:
            if self.users == 0:
                self.limit = _blas_pools().limit(limits=1)
            self.users += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                self.limit.restore_original_limits()
                self.limit = None


_ONE_BLAS_THREAD = _OneBlasThread()


@functools.cache
def _blas_pools() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def _one_blas_thread(workers: int, tasks: int) -> Any:
    """:class:`_OneBlasThread` when ``tasks`` will run on several threads, else nothing."""
    if max_threads(workers) <= 1 or tasks <= 1:
        return contextlib.nullcontext()
    return _ONE_BLAS_THREAD


def _generic_log_sums(
    P: np.ndarray,
    Q: np.ndarray,
    kernel: str,
    scale: float,
    log_weights: np.ndarray | None,
    workers: int,
) -> np.ndarray:
    """Any kernel, any rows (infinite ones too): squared distances a block of rows at a time."""
    n = P.shape[0]
    p_sq = np.einsum("ij,ij->i", P, P)
    out = np.empty(Q.shape[0])
    block = max(1, _BLOCK_ENTRIES // max(n, 1))
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

    starts = range(0, Q.shape[0], block)
    with _one_blas_thread(workers, len(starts)):
        run_in_threads(run, starts, workers)
    return out
