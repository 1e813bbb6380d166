"""EM for Gaussian mixtures on sufficient statistics: rows in, statistics out; statistics
in, parameters out.

A pass over any part of the rows (a block, a file, a partition on a Dask worker) returns a
:class:`Statistics` whose size does not grow with the rows: per component the summed
responsibility, the responsibility-weighted sum of each row's offset from the component's
current mean, and the weighted scatter about that mean (K(d^2 + d + 1) numbers for a full
covariance), plus the summed log-likelihood and the row count. Statistics of disjoint parts
add exactly, so the result does not depend on how the rows are split. :func:`m_step` turns
the total into new parameters with scikit-learn's formulas; :class:`EmRun` applies
scikit-learn's convergence rule (change in mean log-likelihood per row below ``tol``).

Two flaws of textbook distributed EM are avoided: responsibilities are computed in log
space (raw densities underflow for rows far from every component), and covariances come
from the scatter about the current means shifted exactly to the new ones, never from
E[xx^T] - mu mu^T (which cancels catastrophically when the means are large against the
spread). Row weights multiply the responsibilities (:func:`statistics`' ``weights``): the
statistics, and so the M-step, are then those of the rows repeated w_i times, and ``rows``
is the summed weight, so the mean log-likelihood and the ``tol`` rule are per unit of weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gencli.density.families import gaussians
from gencli.errors import FitError

# scikit-learn adds this to each component's summed responsibility (an empty component
# keeps a finite mean); the same here, so the fixed points are the same.
_EMPTY = 10.0 * float(np.finfo(np.float64).eps)


class SingularCovariance(FitError):
    """A covariance the M-step produced is not positive definite: raise ``reg_covar``."""


@dataclass
class Statistics:
    """Sufficient statistics of some rows about the centres they were computed for."""

    weight: np.ndarray  # (K,) summed responsibilities
    offset: np.ndarray  # (K, d) sum of r * (z - centre)
    scatter: np.ndarray  # full (K, d, d), tied (d, d), diag/spherical (K, d)
    log_likelihood: float  # summed (weighted) log-density of the rows (nan for hard assignments)
    rows: float  # the row count, or the summed weight of weighted rows

    def __add__(self, other: Statistics) -> Statistics:
        return Statistics(
            self.weight + other.weight,
            self.offset + other.offset,
            self.scatter + other.scatter,
            self.log_likelihood + other.log_likelihood,
            self.rows + other.rows,
        )


def total(parts: list[Statistics]) -> Statistics:
    """The sum of statistics computed about the same centres."""
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out


def statistics(
    Z: np.ndarray, params: dict[str, Any], weights: np.ndarray | None = None
) -> Statistics:
    """E-step statistics of rows ``Z`` under mixture ``params`` (responsibilities in log
    space), a block of rows at a time (:mod:`gencli.density.families.gaussians`).
    ``weights`` (one per row, > 0) multiply each row's responsibilities and log-likelihood:
    integer weights give the statistics of the rows repeated that many times."""
    components = gaussians.Components.of(params)
    parts = []
    for start, offsets, work in gaussians.offset_blocks(Z, components.means):
        w = None if weights is None else weights[start : start + offsets.shape[1]]
        terms = components.log_terms(offsets, work)
        parts.append(_block_statistics(offsets, terms, components.covariance_type, w))
    return total(parts)


def _block_statistics(
    offsets: np.ndarray, log_terms: np.ndarray, kind: str, weights: np.ndarray | None
) -> Statistics:
    top = log_terms.max(axis=0)
    log_terms -= top
    with np.errstate(under="ignore"):
        np.exp(log_terms, out=log_terms)
    norm = log_terms.sum(axis=0)
    resp = log_terms
    resp /= norm
    row_log_lik = top + np.log(norm)
    if weights is None:
        log_likelihood, rows = float(np.sum(row_log_lik)), float(offsets.shape[1])
    else:
        log_likelihood, rows = float(weights @ row_log_lik), float(np.sum(weights))
        resp *= weights
    return _accumulate(offsets, resp, kind, log_likelihood, rows)


def hard_statistics(Z: np.ndarray, centres: np.ndarray, covariance_type: str) -> Statistics:
    """Statistics with each row given wholly to its nearest centre (k-means' assignment),
    which scikit-learn's k-means initialization turns into the first parameters."""
    # Squared distances from the differences, not |z|^2 - 2 z.c + |c|^2 (which cancels
    # for rows far from the origin, e.g. unstandardized data near 1e8).
    parts = []
    for _start, diffs, work in gaussians.offset_blocks(Z, np.asarray(centres, dtype=np.float64)):
        np.multiply(diffs, diffs, out=work)
        labels = np.argmin(work.sum(axis=2), axis=0)
        parts.append(_label_block(diffs, labels, covariance_type, None))
    return total(parts)


def label_statistics(
    Z: np.ndarray,
    labels: np.ndarray,
    centres: np.ndarray,
    covariance_type: str,
    weights: np.ndarray | None = None,
) -> Statistics:
    """Statistics with row i given wholly to component ``labels[i]`` (with its weight):
    scikit-learn's k-means initialization, from the labels k-means gave."""
    parts = []
    for start, diffs, _work in gaussians.offset_blocks(Z, np.asarray(centres, dtype=np.float64)):
        stop = start + diffs.shape[1]
        w = None if weights is None else weights[start:stop]
        parts.append(_label_block(diffs, labels[start:stop], covariance_type, w))
    return total(parts)


def _label_block(
    diffs: np.ndarray, labels: np.ndarray, covariance_type: str, weights: np.ndarray | None
) -> Statistics:
    k, n, _d = diffs.shape
    resp = np.zeros((k, n))
    resp[labels, np.arange(n)] = 1.0 if weights is None else weights
    rows = float(n) if weights is None else float(np.sum(weights))
    return _accumulate(diffs, resp, covariance_type, math.nan, rows)


def _accumulate(
    diffs: np.ndarray, resp: np.ndarray, covariance_type: str, log_lik: float, rows: float
) -> Statistics:
    """Statistics from each row's offsets from the centres, (K, rows, d), and its (weighted)
    responsibilities, (K, rows); both are overwritten. The scatter is that of the offsets
    scaled by the roots of the responsibilities (one product per component)."""
    weight = resp.sum(axis=1)
    offset = np.matmul(resp[:, None, :], diffs)[:, 0, :]
    np.sqrt(resp, out=resp)
    diffs *= resp[:, :, None]
    if covariance_type in ("full", "tied"):
        scatter = np.matmul(diffs.transpose(0, 2, 1), diffs)
        if covariance_type == "tied":
            scatter = scatter.sum(axis=0)
    else:
        scatter = np.einsum("knd,knd->kd", diffs, diffs)
    return Statistics(weight, offset, scatter, log_lik, rows)


def m_step(
    stats: Statistics, centres: np.ndarray, covariance_type: str, reg_covar: float
) -> dict[str, Any]:
    """New mixture parameters from statistics taken about ``centres`` (scikit-learn's M-step).

    The scatter about the new mean m = c + o / n follows from that about the centre c as
    S - (2/n - N/n^2) o o^T (n = N + a few ulps, as scikit-learn counts it): no cancellation
    between two large second moments.
    """
    d = centres.shape[1]
    counts = stats.weight + _EMPTY
    shift = stats.offset / counts[:, None]
    means = centres + shift
    factor = 2.0 / counts - stats.weight / counts**2  # (K,)
    if covariance_type == "full":
        outer = np.einsum("ki,kj->kij", stats.offset, stats.offset)
        covariances = (stats.scatter - factor[:, None, None] * outer) / counts[:, None, None]
        covariances[:, np.arange(d), np.arange(d)] += reg_covar
    elif covariance_type == "tied":
        outer = np.einsum("k,ki,kj->ij", factor, stats.offset, stats.offset)
        covariances = (stats.scatter - outer) / counts.sum()
        covariances[np.arange(d), np.arange(d)] += reg_covar
    else:
        diag = (stats.scatter - factor[:, None] * stats.offset**2) / counts[:, None]
        covariances = diag + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    params = {
        "covariance_type": covariance_type,
        "weights": counts / counts.sum(),
        "means": means,
        "covariances": covariances,
    }
    _check_positive_definite(params)
    return params


def _check_positive_definite(params: dict[str, Any]) -> None:
    covariances = params["covariances"]
    if params["covariance_type"] in ("diag", "spherical"):
        if not np.all(covariances > 0):
            raise SingularCovariance("a variance shrank to zero or below")
        return
    try:
        np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        raise SingularCovariance("a covariance matrix is not positive definite") from None


@dataclass
class EmRun:
    """One mixture's EM, advanced one pass at a time by whoever computes the statistics.

    ``step`` takes the statistics of every training row under ``params`` (the E-step),
    records their mean log-likelihood and makes the M-step; the run has converged when
    that mean changed by less than ``tol`` from the pass before (scikit-learn's rule, so
    ``params`` after the converging pass are the M-step's, as scikit-learn's are).
    """

    params: dict[str, Any]
    reg_covar: float = 1e-6
    tol: float = 1e-3
    max_iter: int = 100
    n_iter: int = 0
    lower_bound: float = -math.inf
    converged: bool = False
    history: list[float] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.converged or self.n_iter >= self.max_iter

    def step(self, stats: Statistics) -> None:
        mean = stats.log_likelihood / stats.rows
        change = mean - self.lower_bound
        self.params = m_step(
            stats, self.params["means"], self.params["covariance_type"], self.reg_covar
        )
        self.n_iter += 1
        self.lower_bound = mean
        self.history.append(mean)
        if abs(change) < self.tol:
            self.converged = True


def as_model_params(run: EmRun, n_init: int = 1) -> dict[str, Any]:
    """The run's parameters as a model file holds them (as ``gmm.to_params`` gives them)."""
    p = run.params
    return {
        "covariance_type": p["covariance_type"],
        "weights": np.asarray(p["weights"], dtype=np.float64),
        "means": np.asarray(p["means"], dtype=np.float64),
        "covariances": np.asarray(p["covariances"], dtype=np.float64),
        "converged": bool(run.converged),
        "n_iter": int(run.n_iter),
        "lower_bound": float(run.lower_bound),
        "max_iter": int(run.max_iter),
        "n_init": int(n_init),
        "tol": float(run.tol),
        "reg_covar": float(run.reg_covar),
    }
