"""EM for Gaussian mixtures on rows with missing cells (Ghahramani & Jordan 1994).

A missing cell is a latent variable, as the component is. Under component k a row's observed
cells z_o are N(mu_o, S_oo), which weighs the components; its missing cells, given z_o, are
N(mu_m + S_mo S_oo^-1 (z_o - mu_o), S_mm - S_mo S_oo^-1 S_om). The E-step replaces each row by
its conditional mean and adds the conditional covariance to the scatter, which gives the same
:class:`~gencli.fitting.em_stats.Statistics` a complete table gives, so the M-step, the
convergence rule and the repairs of :mod:`gencli.fitting.em_stats` apply unchanged. The
log-likelihood is that of the observed cells, the quantity EM never decreases. Everything is
in standardized units.

The regressions come from blocks of the precision matrix L = S^-1, for every row at once:
with x = z - mu and its missing cells set to 0, y = L x, the conditional covariance is
L_mm^-1, the conditional mean offset is x_m = -L_mm^-1 y_m, the observed cells' quadratic form
is that of the filled row under the whole covariance (x^T L x, since (L x)_m = 0 once x_m is
filled; taken as |P^T x|^2 with L = P P^T, which does not cancel when S is ill-conditioned),
and log|S_oo| = log|S| + log|L_mm| (Schur). So an E-step costs one factorization per
covariance, one small m x m factorization per distinct missingness pattern of the whole table
(stacked: patterns of nearby counts are padded with an identity and factorized in one numpy
call), and products over all rows with the same count of missing cells, batched over the
components: no Python loop over patterns, rows or components. Diagonal and spherical
covariances need no regression (a missing cell's conditional is its component's marginal).
The results are the per-pattern formulas' to rounding (tests check them against a row-by-row
reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import raise_if_stopped
from gencli.fitting import em_stats

#: Rows handled at a time, at most.
BLOCK_ROWS = 65_536
#: Cells of a (components, rows, columns) temporary: blocks hold at most this many / (K d)
#: rows, so each temporary stays near 8 MB whatever K and d are.
BLOCK_CELLS = 1 << 20

#: Flops a batch of patterns may waste on padding for free: one numpy call costs about as
#: much as factorizing 40 x 40.
BATCH_SLACK = 1 << 16

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class Batch:
    """Missingness patterns factorized in one call: each pattern's missing columns padded to
    a common width with columns d, d+1, ... (which index an identity after the precision)."""

    kinds: np.ndarray  # (P, w)
    cells: np.ndarray  # (P, w, w) each pair's place in a flat d x d; d * d for padding


@dataclass
class Group:
    """A block's rows that miss the same number c of cells (0 < c < d), the rows of one
    missingness pattern together; their patterns are entries of batch ``batch``."""

    rows: np.ndarray  # (n,) row indices in the block
    flat: np.ndarray  # (n, c) each missing cell's index in the block's rows, flattened
    pattern: np.ndarray  # (n,) each row's pattern: an index into the batch's ``kinds``
    starts: np.ndarray  # where each pattern's rows begin in ``rows``
    batch: int


@dataclass
class Block:
    """Some rows, their missing cells, and (full and tied) their rows grouped by how many
    cells they miss, with the patterns of every block (``batches``, shared); ``empty`` are
    the rows with no observed cell."""

    Z: np.ndarray
    mask: np.ndarray
    groups: list[Group]
    batches: list[Batch]
    empty: np.ndarray


def block_rows(components: int, d: int) -> int:
    """Rows per block for a mixture of ``components`` over ``d`` columns."""
    return min(BLOCK_ROWS, max(256, BLOCK_CELLS // max(1, components * d)))


def prepare(
    Z: np.ndarray, grouped: bool = True, allow_empty: bool = False, components: int = 1
) -> list[Block]:
    """``Z`` cut into blocks, each with its NaN mask and (``grouped``) its rows grouped by
    their count and pattern of missing cells: done once per EM run, since the patterns do not
    change between passes. ``components`` sizes the blocks (see ``BLOCK_CELLS``)."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise ValueError(f"expected a non-empty 2-D array of rows, got shape {Z.shape}")
    d = Z.shape[1]
    mask = np.isnan(Z)
    counts = mask.sum(axis=1)
    if not allow_empty and np.any(counts == d):
        raise ValueError("a row has no observed cell; drop such rows before the fit")
    batches, batch_of, pattern_of = _patterns(mask, counts) if grouped else ([], {}, counts)
    # (not grouped: no batch, so pattern_of is not read)
    size = block_rows(components, d)
    blocks = []
    for start in range(0, Z.shape[0], size):
        part, missing, count = (a[start : start + size] for a in (Z, mask, counts))
        groups = []
        for c, batch in batch_of.items():
            rows = np.flatnonzero(count == c)
            if rows.size:
                pattern = pattern_of[start + rows]
                order = np.argsort(pattern, kind="stable")
                rows, pattern = rows[order], pattern[order]
                flat = rows[:, None] * d + np.nonzero(missing[rows])[1].reshape(-1, c)
                starts = np.flatnonzero(np.r_[True, pattern[1:] != pattern[:-1]])
                groups.append(Group(rows, flat, pattern, starts, batch))
        blocks.append(Block(part, missing, groups, batches, np.flatnonzero(count == d)))
    return blocks


def _patterns(mask: np.ndarray, counts: np.ndarray) -> tuple[list[Batch], dict, np.ndarray]:
    """The distinct patterns of missing cells, in batches; the batch of each count of
    missing cells, and each row's pattern in its batch. Patterns of successive counts share
    a batch while padding them to the widest costs at most twice the flops (or little: see
    ``BATCH_SLACK``)."""
    d = mask.shape[1]
    batches: list[Batch] = []
    batch_of: dict[int, int] = {}
    pattern_of = np.zeros(len(mask), dtype=np.intp)
    pending: list[np.ndarray] = []  # the patterns of the batch being filled
    for c in (int(c) for c in np.unique(counts) if 0 < c < d):
        rows = np.flatnonzero(counts == c)
        kinds, pattern = np.unique(
            np.nonzero(mask[rows])[1].reshape(-1, c), axis=0, return_inverse=True
        )
        exact = sum(len(k) * k.shape[1] ** 3 for k in pending) + len(kinds) * c**3
        padded = (sum(len(k) for k in pending) + len(kinds)) * c**3
        if pending and padded > 2 * exact + BATCH_SLACK:
            batches.append(_batch(pending, d))
            pending = []
        pattern_of[rows] = pattern.reshape(-1) + sum(len(k) for k in pending)
        batch_of[c] = len(batches)
        pending.append(kinds)
    if pending:
        batches.append(_batch(pending, d))
    return batches, batch_of, pattern_of


def _batch(kinds: list[np.ndarray], d: int) -> Batch:
    width = max(k.shape[1] for k in kinds)
    padded = np.full((sum(len(k) for k in kinds), width), d) + np.arange(width)
    first = 0
    for k in kinds:
        padded[first : first + len(k), : k.shape[1]] = k
        first += len(k)
    real = padded < d
    cells = np.where(
        real[:, :, None] & real[:, None, :], padded[:, :, None] * d + padded[:, None, :], d * d
    )
    return Batch(padded, cells)


class _Mixture:
    """One set of parameters, with each covariance's precision worked out once."""

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
        if self.separable:
            return
        lower = _cholesky(covariances if self.kind == "full" else covariances[None])
        self.prec_chol = np.swapaxes(np.linalg.inv(lower), 1, 2)  # S^-1 = P P^T
        precision = self.prec_chol @ np.swapaxes(self.prec_chol, 1, 2)
        self.precision = 0.5 * (precision + np.swapaxes(precision, 1, 2))
        self.log_det = 2.0 * np.sum(np.log(np.diagonal(lower, axis1=1, axis2=2)), axis=1)
        # The precision followed by an identity, for patterns padded with columns d, d+1, ..
        self.augmented = np.zeros((len(lower), 2 * d, 2 * d))
        self.augmented[:, :d, :d] = self.precision
        self.augmented[:, np.arange(d, 2 * d), np.arange(d, 2 * d)] = 1.0
        self.factors: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def conditionals(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per covariance and pattern of ``batch``: L_mm^-1 (the missing cells' conditional
        covariance; block-diagonal with an identity for the padding), (K or 1, P, w, w), and
        log|L_mm|, (K or 1, P); worked out once for all blocks."""
        if id(batch) not in self.factors:
            self.factors[id(batch)] = self._conditionals(batch)
        return self.factors[id(batch)]

    def _conditionals(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        kinds = batch.kinds
        lower = _cholesky(self.augmented[:, kinds[:, :, None], kinds[:, None, :]])
        inv_lower = _inverse_lower(lower)
        conditional = np.swapaxes(inv_lower, 2, 3) @ inv_lower
        log_det = 2.0 * np.sum(np.log(np.diagonal(lower, axis1=2, axis2=3)), axis=2)
        return conditional, log_det

    def offsets(self, block: Block) -> np.ndarray:
        """(K, rows, d): each row's observed offsets z_o - mu_o under each component, its
        missing cells 0."""
        k, (n, d) = len(self.means), block.Z.shape
        x = np.empty((k, n, d))  # C order: filled() writes through a reshaped view
        np.multiply(~block.mask, self.means[:, None], out=x)
        return np.subtract(np.where(block.mask, 0.0, block.Z), x, out=x)

    def filled(self, block: Block) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """E[z | z_o, k] - mu_k per component and row (K, rows, d), log(w_k) + log N(z_o |
        mu_o, S_oo) per row and component, and each batch's conditional covariances."""
        d = self.means.shape[1]
        n = block.Z.shape[0]
        x = self.offsets(block)
        y = x @ self.precision
        log_det_mm = np.zeros((self.precision.shape[0], n))
        conditionals = [self.conditionals(batch) for batch in block.batches]
        for group in block.groups:
            flat, pattern, c = group.flat, group.pattern, group.flat.shape[1]
            conditional, log_det = conditionals[group.batch]
            conditional = conditional[:, :, :c, :c]
            y_m = np.take(y.reshape(len(y), -1), flat, axis=1)  # (K, n, c)
            if len(flat) < 1024 and y_m.size * c <= BLOCK_CELLS:  # few calls
                fill = -(conditional[:, pattern] @ y_m[..., None])[..., 0]
            else:  # fewer flops, and no (K, n, c, c) temporary
                fill = -conditional[:, :, :, 0][:, pattern] * y_m[:, :, :1]
                for j in range(1, c):
                    fill -= conditional[:, :, :, j][:, pattern] * y_m[:, :, j : j + 1]
            x.reshape(len(x), -1)[:, flat] = fill
            log_det_mm[:, group.rows] = log_det[:, pattern]
        # x_o^T S_oo^-1 x_o = xhat^T L xhat (as (L xhat)_m = 0 for the filled row xhat),
        # taken as |P^T xhat|^2: no cancellation when L is ill-conditioned.
        white = x @ self.prec_chol
        quad = np.einsum("knd,knd->kn", white, white)
        observed = d - block.mask.sum(axis=1)
        log_prob = self.log_w[:, None] - 0.5 * (
            observed * _LOG_2PI + self.log_det[:, None] + log_det_mm + quad
        )
        log_prob = log_prob.T
        log_prob[block.empty] = self.log_w
        return x, log_prob, [conditional for conditional, _ in conditionals]

    def separable_log_probs(self, block: Block, x: np.ndarray) -> np.ndarray:
        quad = np.einsum("knd,kd->nk", x * x, 1.0 / self.variances)
        log_norm = np.log(2.0 * np.pi * self.variances).T
        return self.log_w - 0.5 * ((~block.mask).astype(np.float64) @ log_norm + quad)

    def log_probs(self, block: Block) -> np.ndarray:
        """log(w_k) + log N(z_o | mu_o, S_oo) per row and component."""
        if self.separable:
            return self.separable_log_probs(block, self.offsets(block))
        return self.filled(block)[1]


def _cholesky(stack: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(stack)
    except np.linalg.LinAlgError:
        raise em_stats.SingularCovariance("a covariance matrix is not positive definite") from None


def _inverse_lower(lower: np.ndarray) -> np.ndarray:
    """The inverses of a stack of lower-triangular matrices (..., w, w), by forward
    substitution a row at a time across the stack: for thousands of small factors, a few
    times faster than np.linalg.inv, which calls LAPACK once per matrix."""
    inverse = np.zeros_like(lower)
    diagonal = np.diagonal(lower, axis1=-2, axis2=-1)
    inverse[..., 0, 0] = 1.0 / diagonal[..., 0]
    for i in range(1, lower.shape[-1]):
        row = -(lower[..., i : i + 1, :i] @ inverse[..., :i, :])[..., 0, :]
        row[..., i] += 1.0
        inverse[..., i, :] = row / diagonal[..., i : i + 1]
    return inverse


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
    d = mix.means.shape[1]
    if mix.separable:
        x = mix.offsets(block)  # E[z_m | k] = mu_m: a missing cell's offset is 0
        resp, log_lik = _responsibilities(mix.separable_log_probs(block, x))
        weighted = x * resp.T[:, :, None]
        missing_weight = resp.T @ block.mask.astype(np.float64)  # (k, d)
        offset = weighted.sum(axis=1)
        scatter = np.einsum("knd,knd->kd", weighted, x) + missing_weight * mix.variances
        return em_stats.Statistics(resp.sum(axis=0), offset, scatter, log_lik, int(Z.shape[0]))
    x, log_prob, conditionals = mix.filled(block)
    resp, log_lik = _responsibilities(log_prob)
    weighted = x * resp.T[:, :, None]
    offset = weighted.sum(axis=1)
    scatter = np.swapaxes(weighted, 1, 2) @ x
    tied = mix.kind == "tied"
    if tied:
        scatter = scatter.sum(axis=0, keepdims=True)
    # sum_i r_ik C_i = sum_p (sum of r_ik over pattern p's rows) C_pk, put in place.
    masses = [np.zeros((len(batch.kinds), len(resp.T))) for batch in block.batches]
    for group in block.groups:
        present = group.pattern[group.starts]
        masses[group.batch][present] = np.add.reduceat(resp[group.rows], group.starts, axis=0)
    extra = np.zeros(len(scatter) * (d * d + 1))  # the last cell of each: padding
    for batch, conditional, mass in zip(block.batches, conditionals, masses, strict=True):
        mass = mass.T  # (K, P)
        if tied:
            mass = mass.sum(axis=0, keepdims=True)
        index = np.arange(len(mass))[:, None, None, None] * (d * d + 1) + batch.cells
        values = mass[:, :, None, None] * conditional
        extra += np.bincount(index.ravel(), values.ravel(), minlength=extra.size)
    scatter = scatter + extra.reshape(len(scatter), -1)[:, : d * d].reshape(scatter.shape)
    if tied:
        scatter = scatter[0]
    return em_stats.Statistics(resp.sum(axis=0), offset, scatter, log_lik, int(Z.shape[0]))


def _prepare_for(Z: np.ndarray | list[Block], params: dict[str, Any]) -> list[Block]:
    if not isinstance(Z, np.ndarray):
        return Z
    separable = params["covariance_type"] in ("diag", "spherical")
    return prepare(Z, grouped=not separable, components=len(params["weights"]))


def statistics(Z: np.ndarray | list[Block], params: dict[str, Any]) -> em_stats.Statistics:
    """E-step statistics of rows ``Z`` (NaN = missing) under ``params``: offsets and scatter
    of each row's conditional mean about the component's mean, plus the conditional
    covariance of its missing cells; ``log_likelihood`` is that of the observed cells.
    ``Z`` may be :func:`prepare`'s blocks. A row with no observed cell is a ValueError."""
    blocks = _prepare_for(Z, params)
    mix = _Mixture(params)
    return em_stats.total([_block_statistics(b, mix) for b in blocks])


def observed_log_density(params: dict[str, Any], Z: np.ndarray) -> np.ndarray:
    """log-density of each row's observed cells under the mixture (its marginal over them),
    in standardized units; a row with no observed cell scores 0 (the empty marginal)."""
    mix = _Mixture(params)
    if np.shape(Z)[0] == 0:
        return np.zeros(0)
    pieces = []
    k = len(params["weights"])
    for block in prepare(Z, grouped=not mix.separable, allow_empty=True, components=k):
        log_prob = mix.log_probs(block)
        top = log_prob.max(axis=1)
        safe = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
            total = np.sum(np.exp(log_prob - safe[:, None]), axis=1)
            pieces.append(np.where(np.isfinite(top), safe + np.log(total), -np.inf))
    return np.concatenate(pieces)


def run(
    Z: np.ndarray | list[Block],
    params0: dict[str, Any],
    covariance_type: str,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    max_iter: int = 100,
) -> em_stats.EmRun:
    """EM from ``params0`` with missing cells latent, under em_stats' convergence rule (the
    observed-data mean log-likelihood per row changes by less than ``tol``). ``Z`` may be
    :func:`prepare`'s blocks (for the same covariance type). Raises
    :class:`~gencli.fitting.em_stats.SingularCovariance` as the M-step does."""
    if params0["covariance_type"] != covariance_type:
        raise ValueError(
            f"params0 are {params0['covariance_type']} but covariance_type is {covariance_type}"
        )
    blocks = _prepare_for(Z, params0)
    em = em_stats.EmRun(dict(params0), reg_covar=reg_covar, tol=tol, max_iter=max_iter)
    while not em.done:
        raise_if_stopped()
        em.step(statistics(blocks, em.params))
    return em
