"""EM for Gaussian mixtures on rows with missing cells (Ghahramani & Jordan 1994).

A missing cell is a latent variable, as the component is. Under component k a row's observed
cells z_o are N(mu_o, S_oo), which weighs the components; its missing cells, given z_o, are
N(mu_m + S_mo S_oo^-1 (z_o - mu_o), S_mm - S_mo S_oo^-1 S_om). The E-step replaces each row by
its conditional mean and adds the conditional covariance to the scatter, which gives the same
:class:`~gencli.fitting.em_stats.Statistics` a complete table gives, so the M-step, the
convergence rule and the repairs of :mod:`gencli.fitting.em_stats` apply unchanged; with no
missing cell the statistics are em_stats' own. The log-likelihood is that of the observed
cells, the quantity EM never decreases. Everything is in standardized units.

Rows are grouped by their pattern of missing cells, so the regressions cost one Cholesky
factor per pattern and component, not per row; diagonal and spherical covariances need no
regression (a missing cell's conditional is its component's marginal) and no grouping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.density.families import gmm
from gencli.errors import raise_if_stopped
from gencli.fitting import em_stats

#: Rows handled at a time: the row-by-column temporaries stay near a few MB at d = 10.
BLOCK_ROWS = 65_536

_LOG_2PI = math.log(2.0 * math.pi)

# One pattern's regression for one covariance: whitening of z_o (W = L^-T for S_oo = L L^T),
# gain S_mo S_oo^-1, conditional covariance of z_m, and log det L.
_Parts = tuple[np.ndarray, np.ndarray, np.ndarray, float]


@dataclass
class Block:
    """Some rows, their missing cells, and (full and tied) their rows grouped by pattern."""

    Z: np.ndarray
    mask: np.ndarray
    patterns: list[tuple[np.ndarray, np.ndarray]]  # (missing cells (d,), row indices)


def prepare(Z: np.ndarray, grouped: bool = True, allow_empty: bool = False) -> list[Block]:
    """``Z`` cut into blocks, each with its NaN mask and (``grouped``) its missingness
    patterns: done once per EM run, since the patterns do not change between passes."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise ValueError(f"expected a non-empty 2-D array of rows, got shape {Z.shape}")
    blocks = []
    for start in range(0, Z.shape[0], BLOCK_ROWS):
        part = Z[start : start + BLOCK_ROWS]
        mask = np.isnan(part)
        if not allow_empty and mask.all(axis=1).any():
            raise ValueError("a row has no observed cell; drop such rows before the fit")
        patterns: list[tuple[np.ndarray, np.ndarray]] = []
        if grouped:
            kinds, inverse = np.unique(mask, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            order = np.argsort(inverse, kind="stable")
            bounds = np.cumsum(np.bincount(inverse, minlength=len(kinds)))[:-1]
            patterns = list(zip(kinds, np.split(order, bounds), strict=True))
        blocks.append(Block(part, mask, patterns))
    return blocks


class _Mixture:
    """One set of parameters, with each pattern's regressions worked out once."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.kind = params["covariance_type"]
        self.means = np.asarray(params["means"], dtype=np.float64)
        with np.errstate(divide="ignore"):
            self.log_w = np.log(np.asarray(params["weights"], dtype=np.float64))
        covariances = np.asarray(params["covariances"], dtype=np.float64)
        d = self.means.shape[1]
        self.separable = self.kind in ("diag", "spherical")
        if self.kind == "diag":
            self.variances = covariances
        elif self.kind == "spherical":
            self.variances = covariances[:, None] * np.ones(d)
        else:
            self.covariances = covariances if self.kind == "full" else covariances[None]
        self.cache: dict[str, Any] = {}  # gmm.weighted_log_probs' precisions
        self._parts: dict[bytes, list[_Parts]] = {}

    def parts(self, missing: np.ndarray) -> list[_Parts]:
        """The pattern's regression for every covariance, batched over the components (one
        call per pattern instead of K: a row of 10 columns has up to 1,023 patterns)."""
        key = missing.tobytes()
        if key not in self._parts:
            o, m = np.flatnonzero(~missing), np.flatnonzero(missing)
            s = self.covariances
            lower = np.linalg.cholesky(s[:, o][:, :, o])
            whiten = np.transpose(np.linalg.inv(lower), (0, 2, 1))  # S_oo^-1 = W W^T
            s_mo = s[:, m][:, :, o]
            gain = (s_mo @ whiten) @ np.transpose(whiten, (0, 2, 1))
            conditional = s[:, m][:, :, m] - gain @ np.transpose(s_mo, (0, 2, 1))
            log_det = np.sum(np.log(np.diagonal(lower, axis1=1, axis2=2)), axis=1)
            self._parts[key] = [
                (whiten[c], gain[c], conditional[c], float(log_det[c])) for c in range(len(s))
            ]
        return self._parts[key]

    def log_probs(self, block: Block) -> np.ndarray:
        """log(w_k) + log N(z_o | mu_o, S_oo) per row and component."""
        Z, mask = block.Z, block.mask
        k = self.means.shape[0]
        out = np.empty((Z.shape[0], k))
        if self.separable:
            observed = (~mask).astype(np.float64)
            for j in range(k):
                diff = np.where(mask, 0.0, Z - self.means[j])
                out[:, j] = self.log_w[j] - 0.5 * (
                    observed @ np.log(2.0 * np.pi * self.variances[j])
                    + (diff * diff) @ (1.0 / self.variances[j])
                )
            return out
        for missing, rows in block.patterns:
            Zp = Z[rows]
            if not missing.any():
                out[rows] = gmm.weighted_log_probs(self.params, Zp, cache=self.cache)
                continue
            o = np.flatnonzero(~missing)
            if not o.size:
                out[rows] = self.log_w
                continue
            parts = self.parts(missing)
            for j in range(k):
                whiten, _gain, _cond, log_det = parts[0 if self.kind == "tied" else j]
                y = (Zp[:, o] - self.means[j, o]) @ whiten
                quad = np.einsum("ij,ij->i", y, y)
                out[rows, j] = self.log_w[j] - 0.5 * (o.size * _LOG_2PI + quad) - log_det
        return out

    def offsets(self, Zp: np.ndarray, missing: np.ndarray, j: int) -> np.ndarray:
        """E[z | z_o, k] - mu_k for rows of one pattern (the observed offsets, regressed)."""
        diff = Zp - self.means[j]
        if missing.any():
            o, m = np.flatnonzero(~missing), np.flatnonzero(missing)
            gain = self.parts(missing)[0 if self.kind == "tied" else j][1]
            diff[:, m] = diff[:, o] @ gain.T
        return diff


def _responsibilities(log_prob: np.ndarray) -> tuple[np.ndarray, float]:
    """P(k | z_o) and the summed observed-data log-likelihood (em_stats' formula)."""
    top = log_prob.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        shifted = np.exp(log_prob - top)
        norm = shifted.sum(axis=1, keepdims=True)
        resp = shifted / norm
    return resp, float(np.sum(top[:, 0] + np.log(norm[:, 0])))


def _block_statistics(block: Block, mix: _Mixture) -> em_stats.Statistics:
    Z = block.Z
    k, d = mix.means.shape
    resp, log_lik = _responsibilities(mix.log_probs(block))
    offset = np.zeros((k, d))
    if mix.kind == "tied":
        scatter = np.zeros((d, d))
    else:
        scatter = np.zeros((k, d) if mix.separable else (k, d, d))
    if mix.separable:
        missing_weight = resp.T @ block.mask.astype(np.float64)  # (k, d)
        for j in range(k):
            diff = np.where(block.mask, 0.0, Z - mix.means[j])  # E[z_m | k] = mu_m
            weighted = diff * resp[:, j : j + 1]
            offset[j] = weighted.sum(axis=0)
            scatter[j] = (
                np.einsum("ij,ij->j", weighted, diff) + missing_weight[j] * mix.variances[j]
            )
        return em_stats.Statistics(resp.sum(axis=0), offset, scatter, log_lik, int(Z.shape[0]))
    for missing, rows in block.patterns:
        whole = rows.size == Z.shape[0]  # one pattern: no copies (and em_stats' exact sums)
        Zp, rp = (Z, resp) if whole else (Z[rows], resp[rows])
        m = np.flatnonzero(missing)
        for j in range(k):
            diff = mix.offsets(Zp, missing, j)
            weighted = diff * rp[:, j : j + 1]
            offset[j] += weighted.sum(axis=0)
            outer = weighted.T @ diff
            if m.size:
                conditional = mix.parts(missing)[0 if mix.kind == "tied" else j][2]
                outer[np.ix_(m, m)] += rp[:, j].sum() * conditional
            if mix.kind == "tied":
                scatter += outer
            else:
                scatter[j] += outer
    return em_stats.Statistics(resp.sum(axis=0), offset, scatter, log_lik, int(Z.shape[0]))


def statistics(Z: np.ndarray | list[Block], params: dict[str, Any]) -> em_stats.Statistics:
    """E-step statistics of rows ``Z`` (NaN = missing) under ``params``: offsets and scatter
    of each row's conditional mean about the component's mean, plus the conditional
    covariance of its missing cells; ``log_likelihood`` is that of the observed cells.
    ``Z`` may be :func:`prepare`'s blocks. A row with no observed cell is a ValueError."""
    separable = params["covariance_type"] in ("diag", "spherical")
    blocks = prepare(Z, grouped=not separable) if isinstance(Z, np.ndarray) else Z
    mix = _Mixture(params)
    return em_stats.total([_block_statistics(b, mix) for b in blocks])


def observed_log_density(params: dict[str, Any], Z: np.ndarray) -> np.ndarray:
    """log-density of each row's observed cells under the mixture (its marginal over them),
    in standardized units; a row with no observed cell scores 0 (the empty marginal)."""
    mix = _Mixture(params)
    if np.shape(Z)[0] == 0:
        return np.zeros(0)
    pieces = []
    for block in prepare(Z, grouped=not mix.separable, allow_empty=True):
        log_prob = mix.log_probs(block)
        top = log_prob.max(axis=1)
        safe = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
            total = np.sum(np.exp(log_prob - safe[:, None]), axis=1)
            pieces.append(np.where(np.isfinite(top), safe + np.log(total), -np.inf))
    return np.concatenate(pieces)


def run(
    Z: np.ndarray,
    params0: dict[str, Any],
    covariance_type: str,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    max_iter: int = 100,
) -> em_stats.EmRun:
    """EM from ``params0`` with missing cells latent, under em_stats' convergence rule (the
    observed-data mean log-likelihood per row changes by less than ``tol``). Raises
    :class:`~gencli.fitting.em_stats.SingularCovariance` as the M-step does."""
    if params0["covariance_type"] != covariance_type:
        raise ValueError(
            f"params0 are {params0['covariance_type']} but covariance_type is {covariance_type}"
        )
    blocks = prepare(Z, grouped=covariance_type in ("full", "tied"))
    em = em_stats.EmRun(dict(params0), reg_covar=reg_covar, tol=tol, max_iter=max_iter)
    while not em.done:
        raise_if_stopped()
        em.step(statistics(blocks, em.params))
    return em
