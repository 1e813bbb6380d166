"""Gaussian mixtures fitted to weighted rows: gencli's EM on sufficient statistics.

scikit-learn's GaussianMixture takes no sample weights, so a weighted fit runs the EM of
:mod:`gencli.fitting.em_stats` with each row's responsibilities multiplied by its weight.
It maximizes sum_i w_i log p(x_i): from the same start, integer weights give the fit to the
rows repeated w_i times (to rounding). It starts as scikit-learn does: k-means (one
k-means++ start, seeded, here weighted by the rows' weights) whose labels make the first
M-step; ``n_init`` such starts from one random state, the one with the best final mean
log-likelihood kept. So weights that are all equal give scikit-learn's own fit (to
rounding). Only the start can differ from the repeated rows': k-means++ draws rows, and a
row of weight 3 is one row, not three.

The repairs of :func:`gencli.density.families.gmm.fit` apply unchanged (a singular
covariance retried with 10x ``reg_covar``, a collapse repaired once and its unrepaired twin
offered to the caller, EM that did not converge retried with 5x ``max_iter``): this module
supplies only the one EM fit they retry, through ``gmm.fit(fit_once=...)``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from gencli.density.families import gmm
from gencli.errors import ModelFileError
from gencli.fitting import em_stats


def fit(Z: np.ndarray, weights: np.ndarray | None, **options: Any) -> Any:
    """:func:`gmm.fit` with row ``weights`` (positive, one per row of ``Z``): a fitted
    GaussianMixture (rebuilt by :func:`gmm.from_params`). ``weights=None`` is ``gmm.fit``
    itself, scikit-learn's EM."""
    if weights is None:
        return gmm.fit(Z, **options)
    once = functools.partial(_fit_once, weights=np.asarray(weights, dtype=np.float64))
    return gmm.fit(Z, fit_once=once, **options)


def _fit_once(Z: np.ndarray, options: dict[str, Any], *, weights: np.ndarray) -> Any:
    """One fit as scikit-learn's ``GaussianMixture(...).fit`` makes it, with weights; a
    covariance that is not positive definite is a ValueError, as scikit-learn's is."""
    from sklearn.utils import check_random_state

    random_state = check_random_state(options["seed"])
    best: em_stats.EmRun | None = None
    try:
        for _ in range(options["n_init"]):
            start = initial_params(
                Z,
                weights,
                options["components"],
                options["covariance"],
                options["reg_covar"],
                random_state,
            )
            run = run_em(
                Z,
                weights,
                start,
                reg_covar=options["reg_covar"],
                tol=options["tol"],
                max_iter=options["max_iter"],
            )
            if best is None or run.lower_bound > best.lower_bound:
                best = run
        assert best is not None
        return gmm.from_params(em_stats.as_model_params(best, options["n_init"]))
    except (em_stats.SingularCovariance, ModelFileError) as exc:  # the latter: NaN parameters
        raise ValueError(f"weighted EM: {exc}") from exc


def initial_params(
    Z: np.ndarray,
    weights: np.ndarray,
    components: int,
    covariance: str,
    reg_covar: float,
    random_state: Any,
) -> dict[str, Any]:
    """scikit-learn's 'kmeans' start with weights: k-means (n_init=1, weighted), then the
    M-step of responsibilities one-hot on its labels, each row counting its weight."""
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=components, n_init=1, random_state=random_state)
    kmeans.fit(Z, sample_weight=weights)
    centres = np.asarray(kmeans.cluster_centers_, dtype=np.float64)
    stats = em_stats.label_statistics(Z, kmeans.labels_, centres, covariance, weights)
    return em_stats.m_step(stats, centres, covariance, reg_covar)


def run_em(
    Z: np.ndarray,
    weights: np.ndarray | None,
    params: dict[str, Any],
    *,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    max_iter: int = 100,
) -> em_stats.EmRun:
    """EM from ``params`` on weighted rows to scikit-learn's stopping rule (the change in
    the weighted mean log-likelihood below ``tol``, or ``max_iter`` passes)."""
    run = em_stats.EmRun(dict(params), reg_covar, tol, max_iter)
    while not run.done:
        run.step(em_stats.statistics(Z, run.params, weights))
    return run
