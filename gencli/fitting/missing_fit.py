"""The mixture search on rows with missing cells: EM with the gaps latent (``--missing em``).

The counterpart of :func:`gencli.fitting.family_fits.fit_gmm` for standardized rows that hold
NaN. Each candidate (components x covariance) starts as scikit-learn's GaussianMixture does
(k-means, seeded, on the complete rows when there are enough of them, else on every row with
its gaps filled by column means) and then runs :func:`gencli.fitting.em_missing.run`, so rows
with gaps inform the fit instead of being dropped. Candidates are compared by BIC or AIC of
the observed cells' log-likelihood, or by its mean on the held-out rows. A row's density is
over its observed cells, so the standardization's Jacobian counts only their scales.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gencli.density.families import gmm
from gencli.errors import FitError, Stopped
from gencli.fitting import em_missing, em_stats
from gencli.fitting.family_fits import Rows, estimable_covariances
from gencli.fitting.selection import (
    CRITERIA,
    Candidate,
    criterion_score,
    information_criteria,
    mean_log_density,
    mixture_grid,
    worker_count,
)

#: k-means places the first centres on the complete rows when at least this many per
#: component and column are complete (unbiased when cells are missing at random).
COMPLETE_ROWS_PER_PARAMETER = 5


@dataclass
class MissingFit:
    """One candidate's fit: its EM run, the ``reg_covar`` it ended with and its repairs."""

    run: em_stats.EmRun
    reg_covar: float
    n_init: int
    fixes: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, Any]:
        return em_stats.as_model_params(self.run, self.n_init)


def observed_log_jacobian(Z: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """Each row's log-Jacobian of the standardization over its observed cells only:
    -sum(log scale_j) over the columns it has (its density is over those columns)."""
    return -(~np.isnan(Z)).astype(np.float64) @ log_scale


def initial_params(
    Z: np.ndarray, components: int, covariance: str, reg_covar: float, random_state: Any
) -> dict[str, Any]:
    """scikit-learn's k-means start: k-means centres, each row given to its nearest, and
    the M-step of that hard assignment (on complete rows, or gap-filled rows)."""
    from sklearn.cluster import KMeans

    missing = np.isnan(Z)
    complete = ~missing.any(axis=1)
    d = Z.shape[1]
    if complete.sum() >= COMPLETE_ROWS_PER_PARAMETER * components * (d + 1):
        X = Z[complete]
    else:
        X = np.where(missing, np.nanmean(Z, axis=0), Z)
    km = KMeans(components, n_init=1, random_state=random_state).fit(X)
    centres = km.cluster_centers_
    stats = em_stats.hard_statistics(X, centres, covariance)
    return em_stats.m_step(stats, centres, covariance, reg_covar)


def fit_mixture(
    Z: np.ndarray,
    *,
    components: int,
    covariance: str,
    max_iter: int = 100,
    n_init: int = 1,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int | None = 0,
) -> MissingFit:
    """The best of ``n_init`` EM runs (by observed-data log-likelihood) from k-means starts
    drawn from one seeded stream, as scikit-learn's are; a singular covariance restarts
    every run with a 10x larger ``reg_covar``, up to gmm.MAX_RETRIES times."""
    fixes: list[str] = []
    label = f"K={components} {covariance}"
    for attempt in range(gmm.MAX_RETRIES + 1):
        random_state = np.random.RandomState(seed)
        try:
            best: em_stats.EmRun | None = None
            for _ in range(n_init):
                start = initial_params(Z, components, covariance, reg_covar, random_state)
                run = em_missing.run(Z, start, covariance, reg_covar, tol, max_iter)
                if best is None or run.lower_bound > best.lower_bound:
                    best = run
            assert best is not None
            return MissingFit(best, reg_covar, n_init, fixes)
        except em_stats.SingularCovariance as exc:
            if attempt == gmm.MAX_RETRIES:
                raise FitError(
                    f"the mixture ({label}) could not be fitted even with reg_covar="
                    f"{reg_covar:g} ({exc}); use fewer --components"
                ) from None
            new_reg = max(reg_covar * 10, 1e-6)
            fixes.append(
                f"{label}: a covariance was singular with reg_covar={reg_covar:g}; "
                f"refitted with reg_covar={new_reg:g}"
            )
            reg_covar = new_reg
    raise AssertionError("unreachable")


def fit_gmm_missing(rows: Rows, settings: dict[str, Any]) -> dict[str, Any]:
    """Fit, select, measure and refit a mixture to rows with missing cells; returns the
    outcome :func:`gencli.fitting.family_fits.fit_gmm` returns. ``settings`` are the mixture
    options (fitter.GMM_DEFAULTS) plus ``log_scale``, the log of each column's scale."""
    Z, train, valid = rows.Z, rows.train, rows.valid
    ks, covariances = mixture_grid(settings["components"], settings["covariance"])
    criterion = settings["select"]
    if criterion not in CRITERIA:
        raise FitError(f"unknown criterion '{criterion}'; use one of {', '.join(CRITERIA)}")
    if criterion == "heldout" and (valid is None or not len(valid)):
        raise FitError("--select heldout needs held-out rows; use --validation 0.2 (say)")
    if getattr(rows, "weights", None) is not None:
        raise FitError(
            "row weights and missing cells together are not supported yet; drop the rows "
            "with gaps (--dropna) or leave out --weights"
        )
    log_scale = _log_scale(rows, settings)
    _check_rows(Z, "rows")
    _check_rows(train, "training rows")
    notes = estimable_covariances(covariances, train.shape)
    filled = np.where(np.isnan(train), np.nanmean(train, axis=0), train)
    distinct = gmm.count_distinct(filled, max(ks))
    feasible = [k for k in ks if k <= min(distinct, train.shape[0])]
    if not feasible:
        raise FitError(
            f"a {ks[0]}-component mixture needs at least {ks[0]} distinct training rows but "
            f"there are {distinct}; use fewer --components"
        )
    options = {key: settings[key] for key in ("max_iter", "n_init", "tol", "reg_covar")}
    options["seed"] = rows.seed
    grid = [{**options, "components": k, "covariance": c} for c in covariances for k in feasible]
    with gmm.em_session():
        records, chosen, fit = _search(rows, grid, criterion, log_scale)
        measured = fit.params  # the fit the held-out rows measure
        fixes = list(fit.fixes)
        heldout = None
        if valid is not None:
            heldout = em_missing.observed_log_density(measured, valid)
            heldout = heldout + observed_log_jacobian(valid, log_scale)
        refitted = rows.refit and valid is not None
        final_rows = Z if refitted else train
        if refitted:
            fit = fit_mixture(Z, **(chosen | {"reg_covar": fit.reg_covar}))
            fixes += fit.fixes
        params = fit.params
    train_scores = em_missing.observed_log_density(params, final_rows)
    train_scores = train_scores + observed_log_jacobian(final_rows, log_scale)
    estimator = gmm.from_params(params)
    warnings = list(notes)
    if not fit.run.converged:
        warnings.append(
            f"EM did not converge in {fit.run.max_iter} iterations; try a larger --max-iter "
            "or --tol"
        )
    if gmm.collapsed(estimator, settings["reg_covar"]):
        warnings.append(
            "a component sits on a few rows (its variance is the regularizer), so its "
            "density is a spike; try fewer --components or a larger --reg-covar"
        )
    selection = None
    if len(grid) > 1:
        selection = {"criterion": criterion, "parameter": "components", "candidates": records}
    return {
        "estimator": estimator,
        "params": params,
        "selection": selection,
        "fixes": fixes,
        "warnings": warnings,
        "train_log_density": train_scores,
        "heldout_log_density": heldout,
        "measured_params": measured,
        "refitted": refitted,
    }


def _log_scale(rows: Rows, settings: dict[str, Any]) -> np.ndarray:
    d = rows.Z.shape[1]
    given = settings.get("log_scale")
    if given is None:
        if rows.log_jacobian != 0.0:
            raise ValueError("settings['log_scale'] is needed: the rows are standardized")
        return np.zeros(d)
    log_scale = np.asarray(given, dtype=np.float64).reshape(-1)
    if log_scale.shape != (d,) or not math.isclose(
        -float(log_scale.sum()), rows.log_jacobian, rel_tol=1e-9, abs_tol=1e-9
    ):
        raise ValueError("settings['log_scale'] does not match the columns' log_jacobian")
    return log_scale


def _check_rows(Z: np.ndarray, what: str) -> None:
    """Refuse rows EM cannot use: a row with no value, or a column with none."""
    missing = np.isnan(Z)
    empty = int(missing.all(axis=1).sum())
    if empty:
        raise FitError(
            f"{empty} of the {Z.shape[0]} {what} have no value in any column and say nothing "
            "about the density; drop them (or use --dropna)"
        )
    unseen = np.flatnonzero(missing.all(axis=0))
    if unseen.size:
        raise FitError(
            f"column {unseen[0] + 1} has no value in any of the {Z.shape[0]} {what}, so its "
            "distribution cannot be learned; leave it out with --columns"
        )


def _evaluate(
    rows: Rows, options: dict[str, Any], log_scale: np.ndarray
) -> tuple[Candidate, MissingFit]:
    train, valid = rows.train, rows.valid
    fit = fit_mixture(train, **options)
    params = fit.params
    scores = em_missing.observed_log_density(params, train)
    total = float(np.sum(scores + observed_log_jacobian(train, log_scale)))
    n, d = train.shape
    n_params = gmm.n_parameters(options["components"], options["covariance"], d)
    heldout = None
    if valid is not None and len(valid):
        valid_scores = em_missing.observed_log_density(params, valid)
        heldout = mean_log_density(valid_scores + observed_log_jacobian(valid, log_scale))
    record: Candidate = {
        "components": options["components"],
        "covariance": options["covariance"],
        "parameters": n_params,
        "train_mean_log_likelihood": total / n,
        **information_criteria(total, n_params, n),
        "heldout_mean_log_likelihood": heldout,
        "converged": bool(fit.run.converged),
        "iterations": int(fit.run.n_iter),
        "fixes": list(fit.fixes),
        "chosen": False,
    }
    return record, fit


def _search(
    rows: Rows, grid: list[dict[str, Any]], criterion: str, log_scale: np.ndarray
) -> tuple[list[Candidate], dict[str, Any], MissingFit]:
    """Every candidate's record in grid order, the chosen options and the chosen fit.
    Candidates run on ``rows.jobs`` threads (numpy releases the GIL in the E-step's
    products); each is deterministic, so the result does not depend on the threads."""

    def evaluate(options: dict[str, Any]) -> tuple[Candidate, MissingFit]:
        with gmm.one_thread_here():
            return _evaluate(rows, options, log_scale)

    workers = worker_count(rows.jobs, len(grid))
    records: list[Candidate] = []
    best: tuple[tuple[float, int], MissingFit] | None = None
    pool = ThreadPoolExecutor(workers, thread_name_prefix="gencli-missing")
    stopping = False
    try:
        futures = [pool.submit(evaluate, options) for options in grid]
        for index, future in enumerate(futures):
            record, fit = future.result()
            key = (criterion_score(record, criterion), index)
            if best is None or key < best[0]:
                best = (key, fit)
            if rows.on_candidate is not None:
                rows.on_candidate(record)
            records.append(record)
    except (Stopped, MemoryError):
        stopping = True  # end now: the fits in flight could take minutes
        raise
    finally:
        pool.shutdown(wait=not stopping, cancel_futures=True)
    assert best is not None
    index = best[0][1]
    records[index]["chosen"] = True
    return records, grid[index], best[1]
