"""Choosing a mixture: the number of components and the covariance type.

Mixtures are compared by BIC, AIC or mean held-out log-likelihood (a kernel density's
bandwidth is chosen in :mod:`gencli.fitting.bandwidth_cv`). Every score is in the data's own
units (the standardization's Jacobian is added), so the numbers in the table are comparable
with those of ``gencli score``.

With row weights every figure is weighted: the fit maximizes sum_i w_i log p(x_i)
(:mod:`gencli.fitting.weighted_gmm`), held-out means are weighted means, and BIC and AIC
take n_eff times the weighted mean log-likelihood as the total and log n_eff as BIC's
penalty per parameter (n_eff the Kish effective sample size, :func:`kde.effective_size`),
so they do not change when every weight is scaled. For frequency weights they differ from
BIC and AIC on the repeated rows (whose n is the summed weight) in exactly that choice.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np

from gencli.density.families import gmm, kde
from gencli.errors import FitError, Stopped

AUTO_COMPONENTS = range(1, 11)
CRITERIA = ("bic", "aic", "heldout")

Candidate = dict[str, Any]
Listener = Callable[[Candidate], None]


def parse_components(spec: str | int | Sequence[int]) -> list[int]:
    """'auto' -> 1..10, '3' -> [3], '1..12' -> 1..12, '2,4,8' -> [2, 4, 8]."""
    if isinstance(spec, Integral):  # numpy's integers too (a GridSearchCV grid)
        values = [int(spec)]
    elif not isinstance(spec, str):
        values = [int(v) for v in spec]  # type: ignore[union-attr]
    elif spec.strip().lower() == "auto":
        values = list(AUTO_COMPONENTS)
    else:
        values = []
        for part in spec.split(","):
            part = part.strip()
            match = re.fullmatch(r"(\d+)\.\.(\d+)", part)
            if match:
                lo, hi = int(match.group(1)), int(match.group(2))
                if lo > hi:
                    raise ValueError(f"range {part} runs backwards; write {hi}..{lo}")
                values.extend(range(lo, hi + 1))
            elif part.isdigit():
                values.append(int(part))
            else:
                raise ValueError(f"'{part}' is not a number, a range A..B or 'auto'")
    if not values or min(values) < 1:
        raise ValueError("the number of components must be at least 1")
    return sorted(set(values))


def mixture_grid(components: Any, covariance: str) -> tuple[list[int], list[str]]:
    """The numbers of components and covariance types a mixture search tries
    (``covariance='auto'``: all four); a bad ``components`` is one FitError."""
    try:
        ks = parse_components(components)
    except ValueError as exc:
        raise FitError(f"--components: {exc}") from None
    return ks, list(gmm.COVARIANCE_TYPES) if covariance == "auto" else [covariance]


def information_criteria(log_likelihood: float, n_params: int, n_rows: float) -> dict[str, float]:
    """BIC and AIC from a total log-likelihood (lower is better); weighted rows give
    n_eff x their weighted mean and ``n_rows`` = n_eff (see the module's docstring)."""
    return {
        "bic": -2.0 * log_likelihood + n_params * math.log(n_rows),
        "aic": -2.0 * log_likelihood + 2.0 * n_params,
    }


@dataclass
class GmmChoice:
    """The outcome of a mixture search: the winning options and every candidate's scores."""

    options: dict[str, Any]
    estimator: Any
    candidates: list[Candidate]
    fixes: list[str] = field(default_factory=list)


def fit_candidate(
    Z_train: np.ndarray,
    Z_valid: np.ndarray | None,
    log_jacobian: float,
    options: dict[str, Any],
    fixes: list[str],
    train_weights: np.ndarray | None = None,
    valid_weights: np.ndarray | None = None,
) -> tuple[Any, bool]:
    """One mixture fit, and whether it is the fit a collapse repair would have replaced.

    A repair must never make the held-out likelihood worse than not repairing: when the
    collapse repair replaced the first fit and there are held-out rows, the two are scored
    there (weighted means with row weights) and the better is kept (a real narrow cluster
    is not a spike on a few rows).
    """
    from gencli.fitting import weighted_gmm

    twins: list[Any] = []
    estimator = weighted_gmm.fit(Z_train, train_weights, fixes=fixes, unrepaired=twins, **options)
    twins = [t for t in twins if point_collapses_only(t, options["reg_covar"])]
    if not twins or Z_valid is None or not len(Z_valid):
        return estimator, False
    repaired = mean_log_density(estimator.score_samples(Z_valid), valid_weights) + log_jacobian
    unrepaired = mean_log_density(twins[0].score_samples(Z_valid), valid_weights) + log_jacobian
    if unrepaired <= repaired:
        return estimator, False
    fixes.append(
        f"K={options['components']} {options['covariance']}: kept the fit before that repair, "
        f"whose held-out mean log-likelihood {unrepaired:.4f} beats the repaired "
        f"{repaired:.4f} nats/row"
    )
    return twins[0], True


#: A collapsed component is a point cluster, whose unrepaired fit may be kept, when every
#: variance it has is at most this many times the collapse floor.
POINT_SPREAD = 100.0


def point_collapses_only(estimator: Any, reg_covar: float) -> bool:
    """Whether every collapsed component is narrow in every direction (a real, tight cluster)
    rather than flat in some and wide in others. Only then may the fit before the repair be
    kept: a component flat along a direction (collinear columns, a column constant within
    it) scores a new row slightly off that direction thousands of nats down (macrodata: a
    test row at -84,195 that no CV fold had), where the repaired fit's tolerance costs a
    few nats a row."""
    floor = 10.0 * reg_covar + 1e-12
    covariances = np.asarray(estimator.covariances_)
    kind = estimator.covariance_type
    if kind in ("full", "tied"):
        stack = covariances if kind == "full" else covariances[None]
        spectra = np.linalg.eigvalsh(stack)
    else:
        spectra = covariances.reshape(covariances.shape[0], -1)
    collapsed = spectra.min(axis=1) <= floor
    return bool(collapsed.any() and np.all(spectra[collapsed].max(axis=1) <= POINT_SPREAD * floor))


def mean_log_density(scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The (weighted) mean of finite log-densities; -inf when any row is -inf or NaN."""
    if not np.all(np.isfinite(scores)):
        return -math.inf
    return float(np.mean(scores) if weights is None else np.average(scores, weights=weights))


def _evaluate_candidate(
    Z_train: np.ndarray,
    Z_valid: np.ndarray | None,
    log_jacobian: float,
    options: dict[str, Any],
    train_weights: np.ndarray | None = None,
    valid_weights: np.ndarray | None = None,
) -> tuple[Candidate, Any]:
    fixes: list[str] = []
    estimator, kept_unrepaired = fit_candidate(
        Z_train, Z_valid, log_jacobian, options, fixes, train_weights, valid_weights
    )
    d = Z_train.shape[1]
    train_scores = estimator.score_samples(Z_train)
    if train_weights is None:
        n: float = Z_train.shape[0]
        total = float(np.sum(train_scores)) + n * log_jacobian
    else:  # n_eff x the weighted mean: unchanged when every weight is scaled
        n = kde.effective_size(train_weights)
        total = n * (float(np.average(train_scores, weights=train_weights)) + log_jacobian)
    params = gmm.n_parameters(options["components"], options["covariance"], d)
    heldout = None
    if Z_valid is not None and len(Z_valid):
        valid_scores = estimator.score_samples(Z_valid)
        mean = (
            np.mean(valid_scores)
            if valid_weights is None
            else np.average(valid_scores, weights=valid_weights)
        )
        heldout = float(mean) + log_jacobian
    record: Candidate = {
        "components": options["components"],
        "covariance": options["covariance"],
        "parameters": params,
        "train_mean_log_likelihood": total / n,
        **information_criteria(total, params, n),
        "heldout_mean_log_likelihood": heldout,
        "converged": bool(estimator.converged_),
        "iterations": int(estimator.n_iter_),
        "fixes": fixes,
        "chosen": False,
    }
    if kept_unrepaired:
        record["repair_collapse"] = False
    return record, estimator


def criterion_score(candidate: Candidate, criterion: str) -> float:
    """Lower is better for every criterion."""
    if criterion == "heldout":
        value = candidate["heldout_mean_log_likelihood"]
        return -value if value is not None else math.inf
    return float(candidate[criterion])


def select_gmm(
    Z_train: np.ndarray,
    Z_valid: np.ndarray | None,
    *,
    components: Sequence[int],
    covariances: Sequence[str],
    criterion: str,
    log_jacobian: float,
    options: dict[str, Any],
    jobs: int | None = None,
    on_candidate: Listener | None = None,
    train_weights: np.ndarray | None = None,
    valid_weights: np.ndarray | None = None,
) -> GmmChoice:
    """Fit every (components, covariance) candidate and pick the best by ``criterion``.

    Candidates that need more distinct rows than the data has are skipped; the others
    run side by side on ``jobs`` threads (None or -1: one per core), each fit on one
    core, reporting to ``on_candidate`` as each ends. Call inside :func:`gmm.em_session`.
    Row weights (``train_weights``, ``valid_weights``) weight the fits and every figure.
    """
    if criterion not in CRITERIA:
        raise FitError(f"unknown criterion '{criterion}'; use one of {', '.join(CRITERIA)}")
    if criterion == "heldout" and (Z_valid is None or not len(Z_valid)):
        raise FitError("--select heldout needs held-out rows; use --validation 0.2 (say)")
    n_distinct = gmm.count_distinct(Z_train, max(components))
    feasible = [k for k in components if k <= min(n_distinct, Z_train.shape[0])]
    if not feasible:
        raise FitError(
            f"every candidate needs more distinct rows than the {n_distinct} available; "
            "use fewer --components"
        )
    grid = [{**options, "components": k, "covariance": c} for c in covariances for k in feasible]
    evaluate = functools.partial(
        _evaluate_candidate,
        Z_train,
        Z_valid,
        log_jacobian,
        train_weights=train_weights,
        valid_weights=valid_weights,
    )
    records, best, estimator = _run_candidates(evaluate, grid, criterion, jobs, on_candidate)
    records[best]["chosen"] = True
    # Repairs of the other candidates stay in their rows of the table.
    chosen = grid[best] | {"repair_collapse": records[best].get("repair_collapse", True)}
    return GmmChoice(chosen, estimator, records, list(records[best]["fixes"]))


class _Best:
    """The best candidate so far, by (criterion, grid position): only its estimator is kept,
    so a search holds at most one finished model besides the fits in flight (ten full
    covariances over 2,000 columns would be 5 GB)."""

    def __init__(self, criterion: str) -> None:
        self.criterion = criterion
        self.key: tuple[float, int] | None = None
        self.index = -1
        self.estimator: Any = None

    def offer(self, index: int, record: Candidate, estimator: Any) -> None:
        key = (criterion_score(record, self.criterion), index)
        if self.key is None or key < self.key:
            self.key, self.index, self.estimator = key, index, estimator


def usable_cores() -> int:
    """The cores this process may run on (``taskset`` and containers can allow fewer)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def worker_count(jobs: int | None, n_candidates: int) -> int:
    """Threads for a search: ``jobs`` (None or -1: one per core), at most one a candidate."""
    if jobs is None or jobs == -1:
        jobs = usable_cores()
    if jobs < 1:
        raise FitError(f"--jobs must be -1 (one per core) or at least 1, not {jobs}")
    from gencli.native import max_threads

    return max(1, min(max_threads(jobs), n_candidates))


def _run_candidates(
    evaluate: Callable[[dict[str, Any]], tuple[Candidate, Any]],
    grid: list[dict[str, Any]],
    criterion: str,
    jobs: int | None,
    on_candidate: Listener | None,
) -> tuple[list[Candidate], int, Any]:
    """Every candidate's record (in grid order), the best one's index and its estimator.

    Threads, not processes: scikit-learn's EM spends most of its time in numpy, which
    releases the GIL, and a worker process would first spend 0.9 s importing
    scikit-learn. On two cores, K = 1..10 on 20k x 5 rows takes 0.5 s this way against
    0.82 s in turn on one core each and 1.6 s in turn with scikit-learn's own threads.
    """
    best = _Best(criterion)
    workers = worker_count(jobs, len(grid))
    if workers == 1:
        records = []
        for i, options in enumerate(grid):
            record, estimator = evaluate(options)
            best.offer(i, record, estimator)
            del estimator
            if on_candidate is not None:
                on_candidate(record)
            records.append(record)
        return records, best.index, best.estimator

    def run(options: dict[str, Any]) -> tuple[Candidate, Any]:
        with gmm.one_thread_here():
            return evaluate(options)

    # Reported in grid order as soon as every earlier candidate is in, so the table reads
    # the same on every run however the threads interleave.
    done: dict[int, Candidate] = {}
    reported = 0
    pool = ThreadPoolExecutor(workers, thread_name_prefix="gencli-candidate")
    stopping = False
    try:
        futures = {pool.submit(run, options): i for i, options in enumerate(grid)}
        for future in as_completed(futures):
            index = futures.pop(future)
            record, estimator = future.result()
            best.offer(index, record, estimator)
            done[index] = record
            del future, estimator
            while reported in done:
                if on_candidate is not None:
                    on_candidate(done[reported])
                reported += 1
    except (Stopped, MemoryError):
        stopping = True  # end now: waiting for the fits in flight could take minutes
        raise
    finally:
        # On an error or Ctrl-C, start nothing new; on other errors let the running fits
        # finish, so none outlives the search (and its thread limits) in a Python session.
        pool.shutdown(wait=not stopping, cancel_futures=True)
    return [done[i] for i in range(len(grid))], best.index, best.estimator
