"""The Gaussian arithmetic of a mixture, row block by row block: what scoring and EM share.

Rows are taken a block at a time and every component at once: a block's offsets from the
K means, (K, rows, d), and the (K, rows) log-terms log w_k + log N(z | mean_k, cov_k) made
from them. A block's temporaries stay near a core's own cache (:func:`block_rows`), so the
arithmetic reads the cache and not main memory, which the cores share: on 2 cores, scoring
or an E-step in one process per core then runs close to twice as fast as in one (1.96x for
500k x 10 rows, K = 5 full, against 1.74x with 131,072-row blocks), and faster in each.
Offsets are taken before the precision factors are applied, (z - m) L, never z L - m L,
which cancels for rows far from the origin.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import ModelFileError

#: Bytes of each (K, rows, d) temporary of a block of rows.
BLOCK_BYTES = 1 << 20
_LOG_2PI = math.log(2.0 * math.pi)


def block_rows(components: int, columns: int) -> int:
    """Rows per block for ``components`` x ``columns``: temporaries near :data:`BLOCK_BYTES`
    (at least 256 rows, so Python's cost per block stays small against the arithmetic)."""
    return int(min(4096, max(256, BLOCK_BYTES // (8 * components * max(columns, 1)))))


def precision_factors(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors of the precisions and their log-determinants, one per component."""
    covariance_type = params["covariance_type"]
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    k, d = np.asarray(params["means"]).shape
    if covariance_type in ("diag", "spherical"):
        if np.any(covariances <= 0):
            raise ModelFileError("a variance in the model file is not positive")
        prec = 1.0 / np.sqrt(covariances)
        if covariance_type == "spherical":
            return prec, d * np.log(prec)
        return prec, np.sum(np.log(prec), axis=1)
    stack = covariances[None] if covariance_type == "tied" else covariances
    try:
        lower = np.linalg.cholesky(stack)
    except np.linalg.LinAlgError as exc:
        raise ModelFileError("a covariance in the model file is not positive definite") from exc
    prec_chol = np.transpose(np.linalg.inv(lower), (0, 2, 1))
    log_det = np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.repeat(prec_chol, k, axis=0), np.repeat(log_det, k)
    return prec_chol, log_det


@dataclass(frozen=True)
class Components:
    """What a block's log-terms need: the means, the precision factors shaped to act on
    (K, rows, d) offsets, and each component's log w_k + log-determinant - d/2 log 2 pi."""

    means: np.ndarray
    factors: np.ndarray
    constant: np.ndarray
    covariance_type: str

    @classmethod
    def of(cls, params: dict[str, Any], cache: dict | None = None) -> Components:
        """The mixture ``params``' components (kept in ``cache`` when given: a model's
        factors are made once however many chunks it scores)."""
        if cache is not None and "components" in cache:
            found: Components = cache["components"]
            return found
        means = np.asarray(params["means"], dtype=np.float64)
        kind = params["covariance_type"]
        factors, log_det = precision_factors(params)
        if kind == "diag":
            factors = factors[:, None, :]
        elif kind == "spherical":
            factors = factors[:, None, None]
        with np.errstate(divide="ignore"):  # a weight of 0: a component that never wins
            constant = np.log(np.asarray(params["weights"], dtype=np.float64)) + log_det
        constant = constant - 0.5 * means.shape[1] * _LOG_2PI
        made = cls(means, factors, constant, kind)
        if cache is not None:
            cache["components"] = made
        return made

    def log_terms(self, offsets: np.ndarray, work: np.ndarray) -> np.ndarray:
        """(K, rows) log w_k N(z | k) from a block's ``offsets``; ``work`` is scratch."""
        with np.errstate(over="ignore", invalid="ignore"):
            if self.covariance_type in ("full", "tied"):
                np.matmul(offsets, self.factors, out=work)
            else:
                np.multiply(offsets, self.factors, out=work)
            terms = np.einsum("knd,knd->kn", work, work)
        terms *= -0.5
        terms += self.constant[:, None]
        return terms


def offset_blocks(
    Z: np.ndarray, centres: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, offsets (K, rows, d), scratch of that shape) for each block of ``Z``'s
    rows, in two buffers reused from block to block; one empty block when ``Z`` is empty."""
    k, d = centres.shape
    n = Z.shape[0]
    step = block_rows(k, d)
    size = min(step, n)
    offsets_buffer, work_buffer = np.empty((k, size, d)), np.empty((k, size, d))
    for start in range(0, max(n, 1), step):
        block = Z[start : start + step]
        offsets, work = offsets_buffer[:, : len(block)], work_buffer[:, : len(block)]
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(block[None], centres[:, None], out=offsets)
        yield start, offsets, work


def log_density(params: dict[str, Any], Z: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """log-density of each row of ``Z`` under the mixture; -inf for a row beyond every
    component (or with a NaN), never NaN."""
    components = Components.of(params, cache)
    Z = np.asarray(Z, dtype=np.float64)
    out = np.empty(Z.shape[0])
    for start, offsets, work in offset_blocks(Z, components.means):
        terms = components.log_terms(offsets, work)
        top = terms.max(axis=0)
        finite = np.isfinite(top)
        every = bool(finite.all())
        safe = top if every else np.where(finite, top, 0.0)
        terms -= safe
        with np.errstate(under="ignore", divide="ignore", invalid="ignore"):
            np.exp(terms, out=terms)
            got = safe + np.log(terms.sum(axis=0))
        out[start : start + terms.shape[1]] = got if every else np.where(finite, got, -np.inf)
    return out
