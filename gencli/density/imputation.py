"""Filling gaps from a fitted density: the conditional mean of the missing cells given the
observed ones (or draws from that conditional), and a mixture's component probabilities.

For a Gaussian mixture, given a row's observed continuous cells o, the other cells r follow
the mixture of the components' conditionals N(mu_r + S_ro S_oo^-1 (z_o - mu_o), S_rr - S_ro
S_oo^-1 S_or), weighted by w_k N(z_o; mu_o, S_oo); a Gaussian kernel density is the same with
one component per training point, all sharing the kernel's covariance. Rows are handled in
groups that share which cells are missing, so each group costs a few matrix products.

Whole-number (discrete) columns were fitted as x + U[0, 1): an observed value v is the box
[v, v + 1), which weights each component by its probability (and, for a full or tied
mixture, whose one discrete column may be correlated with the others, shifts the other
cells by the regression on the box's truncated mean); a missing one is floor(x), whose
conditional mean is E[floor(x)] (summed over the integers, or by its Fourier series when the
spread is wide) and whose draws are whole numbers. Everything is exact in closed form where
:func:`gencli.density.families.boxes.supports` says the model's box masses are.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gencli.density.conditional import kernel_shape, regression
from gencli.errors import DataError

_LOG_2PI = math.log(2.0 * math.pi)
#: Kernel-density weights are computed for this many (row, point, column) numbers at a time.
_BLOCK_NUMBERS = 4_000_000
#: E[floor(x)] for x ~ N(m, s^2): summed over the integers within this many sd of m when
#: s < 1 (at most 81 of them), else by the Fourier series of frac(x) (3 terms: the next is
#: below e^-(32 pi^2) relative).
_FLOOR_REACH = 40.0


def check_supported(model: Any, what: str) -> None:
    """Refuse, in one line, models whose conditionals gencli does not have in closed form."""
    if model.family == "kde" and model.params.get("kernel") != "gaussian":
        raise DataError(
            f"{what}: needs the gaussian kernel (this model's is {model.params.get('kernel')}); "
            "refit with --kernel gaussian, or use a mixture"
        )
    if model.discrete:
        from gencli.density.families import boxes

        if not boxes.supports(model.family, model.params, len(model.discrete)):
            raise DataError(
                f"{what}: the model's whole-number columns ({', '.join(model.discrete_columns)}) "
                "have no closed-form conditionals under it; refit with --discrete none"
            )


def fill(
    model: Any, X: np.ndarray, draws: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``X`` (data units, model columns) with its NaN cells filled: the conditional mean, or
    with ``draws`` the rows repeated ``draws`` times, each with its own conditional draw."""
    X = np.asarray(X, dtype=np.float64)
    missing = np.isnan(X)
    repeat = 1 if draws is None else draws
    out = np.repeat(X, repeat, axis=0)
    if not missing.any():
        return out
    patterns, groups = np.unique(missing, axis=0, return_inverse=True)
    groups = groups.reshape(-1)
    for index, pattern in enumerate(patterns):
        if not pattern.any():
            continue
        rows = np.flatnonzero(groups == index)
        parts = _Parts(model, np.flatnonzero(~pattern), np.flatnonzero(pattern))
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            values = parts.fill(X[rows], draws, rng)  # far-out rows: refused in one line
        targets = (rows[:, None] * repeat + np.arange(repeat)).reshape(-1)
        out[np.ix_(targets, parts.m)] = values
    return out


def component_log_probabilities(model: Any, X: np.ndarray) -> np.ndarray:
    """log P(component k | row) for a mixture, rows by components: the same in the data's
    units as in the standardized ones (the Jacobian cancels); whole-number columns count
    as their boxes, as in the model's scores."""
    X = np.asarray(X, dtype=np.float64)
    parts = _Parts(model, np.arange(model.n_features), np.zeros(0, dtype=int))
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        log_r, _ = parts.weigh(X)
    if not np.all(np.isfinite(np.max(log_r, axis=1))):
        raise DataError(
            "a row lies where every component's density is zero (to double precision), so "
            "no component can be said to be likelier; check the row"
        )
    top = np.max(log_r, axis=1, keepdims=True)
    return log_r - (top + np.log(np.sum(np.exp(log_r - top), axis=1, keepdims=True)))


# ----------------------------------------------------------------------------- internals


class _Parts:
    """One missingness pattern: the observed columns ``o`` (continuous ``oc``, discrete
    ``od``) and the missing ones ``m``. Per component (one shared by every kernel of a
    kernel density): the Cholesky factor of S_oc,oc, the regression of r = od + m on oc and
    the covariance of r given oc."""

    def __init__(self, model: Any, o: np.ndarray, m: np.ndarray) -> None:
        self.model, self.m = model, m
        discrete = set(model.discrete)
        self.oc = np.array([j for j in o if j not in discrete], dtype=int)
        self.od = np.array([j for j in o if j in discrete], dtype=int)
        self.r = np.concatenate([self.od, m]).astype(int)
        self.m_discrete = np.array([j in discrete for j in m], dtype=bool)
        params = model.params
        if model.family == "gmm":
            self.means = np.asarray(params["means"], dtype=np.float64)
            self.log_w = np.log(np.asarray(params["weights"], dtype=np.float64))
            covariances = _full_covariances(params, self.means.shape[1])
            self.correlated = params["covariance_type"] in ("full", "tied")
        else:
            self.means = np.asarray(params["points"], dtype=np.float64)
            weights = params.get("weights")
            with np.errstate(divide="ignore"):
                self.log_w = np.zeros(len(self.means)) if weights is None else np.log(weights)
            covariances = [float(params["bandwidth"]) ** 2 * kernel_shape(params)]
            self.correlated = "rotation" in params
        self.shared = len(covariances) == 1
        self.blocks = [self._blocks(s) for s in covariances]

    def _blocks(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        oc, r = self.oc, self.r
        if not oc.size:
            return np.zeros((0, 0)), np.zeros((r.size, 0)), s[np.ix_(r, r)], 0.0
        lower, gain, conditional = regression(s, r, oc)
        return lower, gain, conditional, float(np.sum(np.log(np.diag(lower))))

    # -- weights and conditional means ------------------------------------------------------

    def weigh(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's log-weight per component given its observed cells, and the
        components' conditional means of r (rows x k x |r|), standardized."""
        model, oc, od = self.model, self.oc, self.od
        Z = model.to_z(X)  # a bounded column through its transform; NaN cells stay NaN
        means, k = self.means, self.means.shape[0]
        log_r = np.tile(self.log_w, (X.shape[0], 1))
        cond = np.empty((X.shape[0], k, self.r.size))
        for c, (lower, gain, _cov, log_det) in enumerate(self.blocks):
            members = slice(None) if self.shared else slice(c, c + 1)
            centre = means[members]
            if oc.size:
                offsets = Z[:, None, oc] - centre[None][:, :, oc]
                y = np.linalg.solve(lower, offsets.reshape(-1, oc.size).T).T
                quad = np.sum(y * y, axis=1).reshape(offsets.shape[:2])
                log_r[:, members] += -0.5 * quad - log_det - 0.5 * oc.size * _LOG_2PI
                cond[:, members] = centre[None][:, :, self.r] + offsets @ gain.T
            else:
                cond[:, members] = centre[None][:, :, self.r]
        if od.size:
            from gencli.density.families.boxes import log_interval_mass

            lo, hi = self._box_bounds(X, cond)
            log_r += np.sum(log_interval_mass(lo, hi), axis=2)
        return log_r, cond

    def _box_bounds(self, X: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The observed boxes [v, v + 1) in units of each component's conditional sd."""
        model, od = self.model, self.od
        lower_z, upper_z = model.box_edges(X)  # through a bounded column's transform
        at = [model.discrete.index(j) for j in od]
        lower_z = lower_z[:, od]
        upper_z = lower_z + 1.0 / model.scale[od] if upper_z is None else upper_z[:, at]
        sd = self._sd(np.arange(od.size))  # (k or 1) x |od|
        centre = cond[:, :, : od.size]
        return (lower_z[:, None, :] - centre) / sd[None], (upper_z[:, None, :] - centre) / sd[None]

    def _sd(self, positions: np.ndarray) -> np.ndarray:
        return np.array([np.sqrt(np.diag(cov)[positions]) for _l, _g, cov, _d in self.blocks])

    # -- filling --------------------------------------------------------------------------

    def fill(self, X: np.ndarray, draws: int | None, rng: np.random.Generator | None) -> np.ndarray:
        """The missing cells of rows ``X`` (data units): means, or ``draws`` per row."""
        k = self.means.shape[0]
        per_row = max(1, k * max(1, self.oc.size, self.r.size))
        block = X.shape[0] if not self.shared else max(1, _BLOCK_NUMBERS // per_row)
        pieces = [
            self._fill_block(X[start : start + block], draws, rng)
            for start in range(0, X.shape[0], block)
        ]
        return np.concatenate(pieces)

    def _fill_block(
        self, X: np.ndarray, draws: int | None, rng: np.random.Generator | None
    ) -> np.ndarray:
        model, m, nd = self.model, self.m, self.od.size
        log_r, cond = self.weigh(X)
        top = np.max(log_r, axis=1, keepdims=True)
        if not np.all(np.isfinite(top)):
            raise DataError(
                "a row's observed values lie where the model's density is zero (to double "
                "precision), so its missing cells cannot be filled; check the row"
            )
        resp = np.exp(log_r - top)
        resp /= resp.sum(axis=1, keepdims=True)
        means_m = cond[:, :, nd:]
        slope = self._box_slope()
        if slope is not None:  # one observed discrete column, correlated with the others
            lo, hi = self._box_bounds(X, cond)
            shift = _truncated_mean(lo[:, :, 0], hi[:, :, 0]) * self._sd(np.array([0]))[None, :, 0]
            means_m = means_m + shift[:, :, None] * slope[None]
        scale, centre = model.scale[m], model.shift[m]
        bounds = model.bounds
        if draws is None:
            if bounds is not None:  # E[t^-1(y)] per component, then their weighted sum
                sd = self._sd(nd + np.arange(m.size))[None] * scale
                cells = bounds.inverse_mean(means_m * scale + centre, sd, m)
                values = np.einsum("rk,rkm->rm", resp, cells)
            else:
                values = np.einsum("rk,rkm->rm", resp, means_m) * scale + centre
            if self.m_discrete.any():
                sd = self._sd(nd + np.flatnonzero(self.m_discrete))
                mean_x = (
                    means_m[:, :, self.m_discrete] * scale[self.m_discrete]
                    + centre[self.m_discrete]
                )
                floors = _expected_floor(mean_x, sd[None] * scale[self.m_discrete])
                if bounds is not None:  # through a bounded column's transform
                    sd_y = sd[None] * scale[self.m_discrete]
                    for i, j in enumerate(m[self.m_discrete]):
                        if j in bounds.columns:
                            floors[..., i] = bounds.expected_floor(mean_x[..., i], sd_y[..., i], j)
                values[:, self.m_discrete] = np.einsum("rk,rkm->rm", resp, floors)
            return values
        assert rng is not None
        values = self._draw(X, resp, cond, draws, rng, slope) * scale + centre
        if bounds is not None:
            values = bounds.inverse(values, m)
        values[:, self.m_discrete] = np.floor(values[:, self.m_discrete])  # whole numbers
        return values

    def _box_slope(self) -> np.ndarray | None:
        """For a full or tied mixture with one observed discrete column: the regression of
        the missing cells on it (per component); None where the box leaves them alone."""
        if not (self.correlated and self.od.size == 1 and self.m.size):
            return None
        return np.array([cov[1:, 0] / cov[0, 0] for _l, _g, cov, _d in self.blocks])

    def _draw(
        self,
        X: np.ndarray,
        resp: np.ndarray,
        cond: np.ndarray,
        draws: int,
        rng: np.random.Generator,
        slope: np.ndarray | None,
    ) -> np.ndarray:
        """``draws`` conditional draws of the missing cells per row (standardized units, not
        yet floored)."""
        n_rows = resp.shape[0]
        nd, m = self.od.size, self.m
        picks = _pick(resp, rng.random((n_rows, draws)))
        rows = np.arange(n_rows)[:, None]
        centre = cond[rows, picks][:, :, nd:]  # rows x draws x |m|
        noise = rng.standard_normal((n_rows, draws, m.size))
        which = np.zeros_like(picks) if self.shared else picks
        if slope is not None:
            from scipy.stats import truncnorm

            lo, hi = self._box_bounds(X, cond)
            t = truncnorm.rvs(lo[rows, picks, 0], hi[rows, picks, 0], random_state=rng)
            sd0 = self._sd(np.array([0]))[which, 0]
            centre = centre + (t * sd0)[:, :, None] * slope[which]
        spread = np.empty_like(noise)
        for c, (_l, _g, cov, _d) in enumerate(self.blocks):
            cov_m = cov[nd:, nd:]
            if slope is not None:
                cov_m = cov_m - np.outer(cov[nd:, 0], cov[0, nd:]) / cov[0, 0]
            factor = np.linalg.cholesky(0.5 * (cov_m + cov_m.T))
            chosen = which == c
            spread[chosen] = noise[chosen] @ factor.T
        return (centre + spread).reshape(-1, m.size)


def _pick(resp: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The component of each draw: the first k with cumulative weight above u, per row. One
    sorted search over the rows' cumulative weights laid end to end (row r's shifted by r),
    so memory is rows x components plus rows x draws, never their product."""
    n_rows, k = resp.shape
    cumulative = np.cumsum(resp, axis=1)
    cumulative[:, -1] = 1.0
    shift = np.arange(n_rows, dtype=np.float64)[:, None]
    found = np.searchsorted((cumulative + shift).ravel(), (u + shift).ravel(), side="right")
    within = found.reshape(u.shape) - (np.arange(n_rows) * k)[:, None]
    return np.clip(within, 0, k - 1)


def _full_covariances(params: dict[str, Any], d: int) -> list[np.ndarray]:
    kind = params["covariance_type"]
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    if kind == "full":
        return list(covariances)
    if kind == "tied":
        return [covariances]
    if kind == "diag":
        return [np.diag(c) for c in covariances]
    return [np.eye(d) * c for c in covariances]


def _truncated_mean(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """E[t | lo <= t < hi] for a standard normal t, stable in the tails:
    (phi(lo) - phi(hi)) / (Phi(hi) - Phi(lo)), each ratio taken in logs."""
    from gencli.density.families.boxes import log_interval_mass

    log_mass = log_interval_mass(lo, hi)
    log_phi = lambda v: -0.5 * v * v - 0.5 * _LOG_2PI  # noqa: E731
    return np.asarray(np.exp(log_phi(lo) - log_mass) - np.exp(log_phi(hi) - log_mass))


def _expected_floor(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[floor(x)] for x ~ N(mean, sd^2), elementwise (broadcast), exact to rounding."""
    from gencli.density.families.boxes import log_interval_mass

    mean, sd = np.broadcast_arrays(np.asarray(mean, float), np.asarray(sd, float))
    out = np.empty(mean.shape)
    narrow = sd < 1.0
    if np.any(narrow):
        m, s = mean[narrow], sd[narrow]
        start = np.floor(m - _FLOOR_REACH * s)
        steps = np.arange(int(2 * _FLOOR_REACH) + 2)
        v = start[:, None] + steps[None]
        mass = np.exp(
            log_interval_mass((v - m[:, None]) / s[:, None], (v + 1 - m[:, None]) / s[:, None])
        )
        out[narrow] = np.sum(v * mass, axis=1)
    wide = ~narrow
    if np.any(wide):
        m, s = mean[wide], sd[wide]
        series = sum(
            np.exp(-2.0 * (math.pi * n * s) ** 2) * np.sin(2.0 * math.pi * n * m) / (math.pi * n)
            for n in (1, 2, 3)
        )
        out[wide] = m - 0.5 + series
    return out
