"""Probability mass of integer boxes: exact scores for discrete columns, in closed form.

Integer-coded columns are fitted dequantized (on x + U[0,1)) and a row is scored as the
density over its continuous columns times the probability of its integer box over the
discrete ones:

    log P(row) = log  integral over [l_1, l_1 + w_1) x ... x [l_m, l_m + w_m) of p(z_c, t) dt

so that exp(score), summed over the integers and integrated over the continuous columns,
is 1. Everything here works in the estimator's (standardized) space: a discrete column j's
box is [lower_j, lower_j + width_j) in z, with width_j = 1 / scale_j, and continuous
densities are per z unit (the caller adds the continuous columns' Jacobian only).

The integral is a product of 1-D Gaussian masses wherever the density factorizes given the
continuous columns: a mixture with diagonal or spherical covariances (any number of
discrete columns), a mixture with full or tied covariances and one discrete column (its
conditional given the continuous columns is a 1-D Gaussian), and a kernel density with the
round Gaussian kernel. :func:`supports` says which; the other combinations are refused.

Masses are computed in log space (:func:`log_interval_mass`), so a box far in a tail gets
its true log-mass (say -5000), not -inf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gencli.density.families import gmm, kde
from gencli.density.families.kde_exact import (
    _CANCELLATION,
    _EXPONENT_TOLERANCE,
    SMALLEST_EXPONENT,
    _direct_u2,
    run_in_threads,
    total_weight,
)
from gencli.density.families.kde_repeats import distinct_points, distinct_rows

_BLOCK_ENTRIES = 1 << 20  # rows x points (or rows x components x columns) per block
_TABLE_ENTRIES = 1 << 22  # distinct values x points kept for a whole call, per call
_NARROW = 1e-3  # width x (1 + |midpoint|) below which the midpoint series is used
_FAR = -30.0  # below this, Phi (about 1e-198) is taken in logs before it underflows
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_WORKERS = 2


def supports(family: str, params: dict[str, Any], n_discrete: int) -> bool:
    """Whether the box mass is exact in closed form for this model and number of discrete
    columns.

    - ``gmm``: diag and spherical covariances for any number of discrete columns; full
      and tied only for at most one (its conditional given the continuous columns is a
      1-D Gaussian; two or more would need the multivariate normal CDF).
    - ``kde``: the Gaussian kernel without a rotation (the kernel is then a product of
      1-D Gaussians).

    With no discrete columns every gmm and kde is supported: the score is the ordinary
    log-density.
    """
    if n_discrete < 0:
        raise ValueError(f"Expected n_discrete >= 0 but got {n_discrete}")
    if family not in ("gmm", "kde"):
        return False
    if n_discrete == 0:
        return True
    if family == "gmm":
        covariance_type = params.get("covariance_type")
        return covariance_type in ("diag", "spherical") or (
            covariance_type in ("full", "tied") and n_discrete <= 1
        )
    return params.get("kernel") == "gaussian" and "rotation" not in params


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0, accurate near 0 and for x far below (Maechler 2012)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -math.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log_interval_mass(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """log(Phi(upper) - Phi(lower)) elementwise for lower < upper, the standard normal's
    mass of [lower, upper), accurate in both tails and for narrow intervals.

    The interval is first reflected so that its midpoint is <= 0 (Phi(b) - Phi(a) =
    Phi(-a) - Phi(-b)): then Phi(a) and Phi(b) are accurate to rounding relative to
    themselves and their difference never cancels more than the interval is narrow.
    Where Phi(a) would come near the underflow (a < -30) the difference is taken in logs,
    log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))), finite as far out as log Phi is.
    An interval narrow against the curvature (width x (1 + |midpoint|) < 1e-3) uses the
    midpoint series w phi(m) (1 + (m^2 - 1) w^2 / 24), whose next term is below 1e-15.
    """
    from scipy.special import log_ndtr, ndtr

    a = np.asarray(lower, dtype=np.float64)
    b = np.asarray(upper, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        flip = a + b > 0
        lo = np.where(flip, -b, a)
        hi = np.where(flip, -a, b)
        out = np.asarray(np.log(ndtr(hi) - ndtr(lo)))  # an array even for scalars
        far = lo < _FAR
        if np.any(far):
            lo_far, log_hi = lo[far], log_ndtr(hi[far])
            in_logs = log_hi + _log1mexp(log_ndtr(lo_far) - log_hi)
            out[far] = np.where(log_hi == -np.inf, -np.inf, in_logs)  # a box at infinity
        width = hi - lo
        mid = 0.5 * (hi + lo)
        narrow = width * (1.0 + np.abs(mid)) < _NARROW
        if np.any(narrow):
            w, m = width[narrow], mid[narrow]
            out[narrow] = (
                np.log(w) - 0.5 * m * m - _LOG_SQRT_2PI + np.log1p((m * m - 1) * w * w / 24)
            )
    return out


def _check(Z: np.ndarray, discrete: Any, widths: Any, d: int) -> tuple[np.ndarray, np.ndarray]:
    if Z.ndim != 2 or Z.shape[1] != d:
        raise ValueError(f"Expected rows of {d} columns but got an array of shape {Z.shape}")
    columns = np.asarray(discrete, dtype=np.intp).reshape(-1)
    box = np.asarray(widths, dtype=np.float64).reshape(-1)
    if columns.size and (np.any(np.diff(columns) <= 0) or columns[0] < 0 or columns[-1] >= d):
        raise ValueError(
            f"Expected sorted, distinct discrete column indices in [0, {d}) but got {columns}"
        )
    if box.shape != columns.shape or not np.all((box > 0) & np.isfinite(box)):
        raise ValueError(
            f"Expected one positive, finite width per discrete column ({columns.size}) but "
            f"got {box}"
        )
    return columns, box


def _refuse(family: str, params: dict[str, Any], n_discrete: int) -> None:
    if not supports(family, params, n_discrete):
        what = (
            f"covariance_type={params.get('covariance_type')!r}"
            if family == "gmm"
            else f"kernel={params.get('kernel')!r}, rotation={'rotation' in params}"
        )
        raise ValueError(
            f"the box mass of {n_discrete} discrete columns has no closed form for a {family} "
            f"with {what}; see boxes.supports"
        )


def gmm_log_mass(
    params: dict[str, Any],
    Z: np.ndarray,
    discrete: np.ndarray,
    widths: np.ndarray,
    upper: np.ndarray | None = None,
) -> np.ndarray:
    """log of [density over the continuous columns x mass of the discrete box] per row,
    under a Gaussian mixture (estimator space).

    ``Z`` holds each row's z-value in the continuous columns and its box's lower edge in
    the ``discrete`` ones (sorted indices); ``widths`` are the boxes' widths in z, or
    ``upper`` (rows x discrete columns) their upper edges, for boxes of uneven width (a
    bounded column's, seen through its transform; a lower edge may be -inf). Per
    component: the continuous marginal N(z_c; mu_c, S_cc) times the box's mass under
    t | z_c (a product of 1-D masses for diag/spherical; for full/tied, with one discrete
    column, a 1-D Gaussian with the conditional mean and variance); then a log-sum-exp
    over components with the weights.
    """
    Z = np.asarray(Z, dtype=np.float64)
    means = np.asarray(params["means"], dtype=np.float64)
    weights = np.asarray(params["weights"], dtype=np.float64)
    k, d = means.shape
    columns, box = _check(Z, discrete, widths, d)
    _refuse("gmm", params, columns.size)
    if columns.size == 0:
        return gmm.log_density(params, Z)
    continuous = np.setdiff1d(np.arange(d), columns)
    whiten, shift, log_norm, cond_mean, cond_sd = _conditionals(params, continuous, columns)
    with np.errstate(divide="ignore"):
        log_norm = log_norm + np.log(weights)
    Zc, Zd = Z[:, continuous], Z[:, columns]
    Zu = Zd + box[None, :] if upper is None else np.asarray(upper, dtype=np.float64)
    out = np.empty(Z.shape[0])
    block = max(1, _BLOCK_ENTRIES // (k * d))

    def run(start: int) -> None:
        zc, zd = Zc[start : start + block], Zd[start : start + block]
        zu = Zu[start : start + block]
        with np.errstate(over="ignore", invalid="ignore"):
            if whiten.ndim == 2:  # diagonal: whiten[k, c] = 1 / sd
                y = zc[:, None, :] * whiten[None] - shift[None]
            else:  # y = L_cc^-1 (z_c - mu_c), per component
                y = np.einsum("rc,kjc->rkj", zc, whiten) - shift[None]
            log_prob = log_norm[None] - 0.5 * np.einsum("rkj,rkj->rk", y, y)
            mean = cond_mean[None] if whiten.ndim == 2 else _full_mean(y, cond_mean)
            # zd - mean: (rows, k, discrete) in units of the conditional sd
            lower = (zd[:, None, :] - mean) / cond_sd[None]
            top = (zu[:, None, :] - mean) / cond_sd[None]
        log_prob += log_interval_mass(lower, top).sum(axis=2)
        out[start : start + block] = _logsumexp_rows(log_prob)

    run_in_threads(run, range(0, Z.shape[0], block), _WORKERS)
    return out


def _full_mean(y: np.ndarray, cond_mean: np.ndarray) -> np.ndarray:
    """Conditional mean of the one discrete column, mu_t + l_tc . y, as (rows, k, 1);
    ``cond_mean`` packs [mu_t, l_tc] per component."""
    return (cond_mean[None, :, 0] + np.einsum("rkj,kj->rk", y, cond_mean[:, 1:]))[..., None]


def _conditionals(
    params: dict[str, Any], continuous: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per component: how to whiten the continuous part (1/sd, or L_cc^-1), the whitened
    means, the log-normalizer of the continuous marginal, and the discrete columns'
    conditional means (diag: the means; full: [mu_t, l_tc] to combine with y) and sds."""
    covariance_type = params["covariance_type"]
    means = np.asarray(params["means"], dtype=np.float64)
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    k, d = means.shape
    c = continuous.size
    if covariance_type in ("diag", "spherical"):
        variances = covariances if covariance_type == "diag" else covariances[:, None]
        sd = np.sqrt(np.broadcast_to(variances, (k, d)))
        inv_c = 1.0 / sd[:, continuous]
        log_norm = -c * _LOG_SQRT_2PI + np.sum(np.log(inv_c), axis=1)
        return inv_c, means[:, continuous] * inv_c, log_norm, means[:, columns], sd[:, columns]
    # Full or tied, one discrete column t: the Cholesky factor of the covariance ordered
    # (continuous, t) is [[L_cc, 0], [l_tc, l_tt]]: t | z_c ~ N(mu_t + l_tc . y, l_tt^2)
    # with y = L_cc^-1 (z_c - mu_c), the whitened continuous part.
    stack = np.broadcast_to(covariances, (k, d, d)) if covariance_type == "tied" else covariances
    order = np.concatenate([continuous, columns])
    lower = np.linalg.cholesky(stack[:, order][:, :, order])
    inv = np.linalg.inv(lower[:, :c, :c]) if c else np.zeros((k, 0, 0))
    shift = np.einsum("kc,kjc->kj", means[:, continuous], inv)
    log_norm = -c * _LOG_SQRT_2PI - np.sum(np.log(np.diagonal(lower[:, :c, :c], 0, 1, 2)), axis=1)
    cond_mean = np.concatenate([means[:, columns], lower[:, c, :c]], axis=1)
    return inv, shift, log_norm, cond_mean, lower[:, c, c][:, None]


def kde_log_mass(
    params: dict[str, Any],
    Z: np.ndarray,
    discrete: np.ndarray,
    widths: np.ndarray,
    cache: dict | None = None,
    upper: np.ndarray | None = None,
) -> np.ndarray:
    """log of [density over the continuous columns x mass of the discrete box] per row,
    under a kernel density with the round Gaussian kernel (estimator space).

    Per training point: the Gaussian kernel over the continuous columns times the product
    of the 1-D kernel masses of the box; a log-sum-exp over points, minus log n. Exact to
    rounding; every point is summed, in blocks of rows on both cores. The kernel masses
    are tabulated once per distinct box edge (discrete columns take few values) and rows
    that repeat are scored once. With no discrete columns this is ``kde.log_density``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    points_all = np.asarray(params["points"], dtype=np.float64)
    columns, box = _check(Z, discrete, widths, points_all.shape[1])
    _refuse("kde", params, columns.size)
    if columns.size == 0:
        return kde.log_density(params, Z, cache=cache)
    if upper is not None:  # boxes of uneven width: each upper edge goes with its row
        Z = np.concatenate([Z, np.asarray(upper, dtype=np.float64)], axis=1)
    repeated = distinct_rows(Z)
    rows = Z if repeated is None else repeated[0]
    ups = None
    if upper is not None:
        rows, ups = rows[:, : points_all.shape[1]], rows[:, points_all.shape[1] :]
    points, weights = distinct_points(points_all, cache, params.get("weights"))
    out = _kde_sum(points, weights, rows, columns, box, float(params["bandwidth"]), ups)
    return out if repeated is None else out[repeated[1]]


def _kde_sum(
    points: np.ndarray,
    weights: np.ndarray | None,
    rows: np.ndarray,
    columns: np.ndarray,
    box: np.ndarray,
    h: float,
    ups: np.ndarray | None = None,
) -> np.ndarray:
    """The sum over every point, in blocks of rows sorted by their boxes (whose upper edges
    are ``ups`` when given, else lower edge + ``box``).

    Rows are sorted by their tuple of box edges, so a block holds few distinct tuples;
    each tuple's per-point log-masses (sums of per-column tables), with the points'
    log-weights and -|p|^2 / 2h^2, form one small table per block that is gathered once
    per row, and the exponent is q.p / h^2 + table - |q|^2 / 2h^2 (the last term outside
    the log-sum-exp). Where that product would cancel more than 1e-8 nats (tiny
    bandwidths far from the origin), squared differences are summed directly instead.
    """
    n, d = points.shape
    continuous = np.setdiff1d(np.arange(d), columns)
    centre = points[:, continuous].mean(axis=0)
    P = points[:, continuous] - centre  # distances are translation-invariant
    scale = 1.0 / (h * h)
    p_sq = np.einsum("ij,ij->i", P, P)
    p_top = float(p_sq.max(initial=0.0))
    per_point = np.zeros(n) if weights is None else np.log(weights)
    edges = points[:, columns] / h
    spans = box / h
    lows = rows[:, columns] / h
    order = np.lexsort(lows.T[::-1])
    lows = lows[order]
    highs = lows + spans[None, :] if ups is None else ups[order] / h
    Q = rows[order][:, continuous] - centre
    fresh = np.ones(rows.shape[0], dtype=bool)
    fresh[1:] = np.any(lows[1:] != lows[:-1], axis=1)
    group = np.cumsum(fresh) - 1  # each sorted row's tuple
    firsts = np.flatnonzero(fresh)  # each tuple's first row
    # Per column, the kernel masses of each distinct edge: for the whole call when they
    # fit in _TABLE_ENTRIES (discrete columns take few values), else per block.
    whole = [np.unique(lows[:, j], return_inverse=True) for j in range(columns.size)]
    if sum(values.size for values, _ in whole) * n > _TABLE_ENTRIES:
        whole = []
    tables = [
        _mass_table(values, _tops(values, lows[:, j], highs[:, j]), edges[:, j])
        for j, (values, _) in enumerate(whole)
    ]
    out = np.empty(rows.shape[0])
    block = max(1, _BLOCK_ENTRIES // n)

    def tuple_table(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The block's tuples' log-masses per point (plus per-point terms), and each
        row's tuple among them."""
        first = int(group[start])
        heads = firsts[first : int(group[stop - 1]) + 1]
        table = np.broadcast_to(per_point, (heads.size, n)).copy()
        for j in range(columns.size):
            if whole:
                table += tables[j][whole[j][1][heads]]
            else:
                values, index = np.unique(lows[heads, j], return_inverse=True)
                tops = _tops(values, lows[heads, j], highs[heads, j])
                table += _mass_table(values, tops, edges[:, j])[index]
        return table, group[start:stop] - first

    def run(start: int) -> None:
        stop = min(start + block, rows.shape[0])
        table, index = tuple_table(start, stop)
        q = Q[start:stop]
        q_sq = np.einsum("ij,ij->i", q, q)
        with np.errstate(over="ignore", invalid="ignore"):
            if _CANCELLATION * (float(q_sq.max(initial=0.0)) + p_top) * scale > _EXPONENT_TOLERANCE:
                exponent = _direct_u2(q, P)
                exponent *= -0.5 * scale
                exponent += table[index]
                out[start:stop] = _logsumexp_rows(exponent)
            else:
                table -= (0.5 * scale) * p_sq
                exponent = (scale * q) @ P.T
                exponent += table[index]
                out[start:stop] = _logsumexp_rows(exponent) - (0.5 * scale) * q_sq

    run_in_threads(run, range(0, rows.shape[0], block), _WORKERS)
    c = continuous.size
    normalizer = math.log(total_weight(points, weights)) + c * (math.log(h) + _LOG_SQRT_2PI)
    result = np.empty_like(out)
    result[order] = out - normalizer
    return result


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log of the sum of exp over each row, overwriting ``a`` (no temporaries the size of
    ``a``); terms below e^-700 of a row's largest are dropped (no subnormals)."""
    top = np.max(a, axis=1)
    finite = np.isfinite(top)
    safe = np.where(finite, top, 0.0)
    with np.errstate(invalid="ignore"):
        a -= safe[:, None]
    np.maximum(a, SMALLEST_EXPONENT, out=a)
    np.exp(a, out=a)
    with np.errstate(divide="ignore"):
        return np.where(finite, safe + np.log(a.sum(axis=1)), top)


def _mass_table(values: np.ndarray, tops: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """log kernel mass of [v, top) around each point, (distinct values, points),
    everything in bandwidth units."""
    return log_interval_mass(values[:, None] - edges[None, :], tops[:, None] - edges[None, :])


def _tops(values: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """The upper edge of each distinct lower edge ``values`` (a box's upper edge is a
    function of its lower one), read from the rows' ``lows`` and ``highs``."""
    order = np.argsort(lows, kind="stable")
    return highs[order[np.searchsorted(lows[order], values)]]
