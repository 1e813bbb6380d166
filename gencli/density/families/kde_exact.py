"""``--exact``: every kernel summed, in blocks of rows on both cores (any kernel, any
dimension), exact to rounding. The reference the quicker paths are held to (``FAST_RTOL``).

Works in the estimator's (standardized) space and returns natural logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gencli.density.families.kernels import log_normalizer, profile
from gencli.errors import Stopped

FAST_RTOL = 1e-6  # the relative error the quicker paths hold against this exact sum
_BLOCK_ENTRIES = 1 << 20
SMALLEST_EXPONENT = -700.0
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
