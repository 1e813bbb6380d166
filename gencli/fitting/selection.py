"""Choosing the model: the number of components and covariance of a mixture, and the
bandwidth of a kernel density.

Mixtures are compared by BIC, AIC or mean held-out log-likelihood; bandwidths by the
k-fold cross-validated log-likelihood, maximised over log-bandwidth by bracketing and
then Brent's method rather than on a coarse grid. Every score is in the data's own units
(the standardization's Jacobian is added), so the numbers in the table are comparable
with those of ``gencli score``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.density.families import gmm, kde
from gencli.errors import FitError, Stopped

if TYPE_CHECKING:
    from gencli.density.families.kde_folds import FoldSums

AUTO_COMPONENTS = range(1, 11)
CRITERIA = ("bic", "aic", "heldout")
DEFAULT_FOLDS = 5
# A held-out row that no kernel reaches has log-density -inf; in the CV objective it
# counts as this many nats below zero, so that the search still has a slope to follow.
UNREACHED_LOG_DENSITY = -1000.0
# Doublings (or halvings) of Scott's bandwidth the CV search tries before giving up: a
# factor of 1.7e7 either way, far past any real optimum (exact repeats drive it to 0).
_BRACKET_STEPS = 24

Candidate = dict[str, Any]
Listener = Callable[[Candidate], None]


def parse_components(spec: str | int | Sequence[int]) -> list[int]:
    """'auto' -> 1..10, '3' -> [3], '1..12' -> 1..12, '2,4,8' -> [2, 4, 8]."""
    if isinstance(spec, int):
        values = [spec]
    elif not isinstance(spec, str):
        values = [int(v) for v in spec]
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


def information_criteria(log_likelihood: float, n_params: int, n_rows: int) -> dict[str, float]:
    """BIC and AIC from a total log-likelihood (lower is better)."""
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
) -> tuple[Any, bool]:
    """One mixture fit, and whether it is the fit a collapse repair would have replaced.

    A repair must never make the held-out likelihood worse than not repairing: when the
    collapse repair replaced the first fit and there are held-out rows, the two are scored
    there and the better is kept (a real narrow cluster is not a spike on a few rows).
    """
    twins: list[Any] = []
    estimator = gmm.fit(Z_train, fixes=fixes, unrepaired=twins, **options)
    twins = [t for t in twins if point_collapses_only(t, options["reg_covar"])]
    if not twins or Z_valid is None or not len(Z_valid):
        return estimator, False
    repaired = mean_log_density(estimator.score_samples(Z_valid)) + log_jacobian
    unrepaired = mean_log_density(twins[0].score_samples(Z_valid)) + log_jacobian
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


def mean_log_density(scores: np.ndarray) -> float:
    """The mean of finite log-densities; -inf when any row is -inf or NaN."""
    return float(np.mean(scores)) if np.all(np.isfinite(scores)) else -math.inf


def _evaluate_candidate(
    Z_train: np.ndarray,
    Z_valid: np.ndarray | None,
    log_jacobian: float,
    options: dict[str, Any],
) -> tuple[Candidate, Any]:
    fixes: list[str] = []
    estimator, kept_unrepaired = fit_candidate(Z_train, Z_valid, log_jacobian, options, fixes)
    n, d = Z_train.shape
    total = float(np.sum(estimator.score_samples(Z_train))) + n * log_jacobian
    params = gmm.n_parameters(options["components"], options["covariance"], d)
    heldout = None
    if Z_valid is not None and len(Z_valid):
        heldout = float(np.mean(estimator.score_samples(Z_valid))) + log_jacobian
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


def _score(candidate: Candidate, criterion: str) -> float:
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
) -> GmmChoice:
    """Fit every (components, covariance) candidate and pick the best by ``criterion``.

    Candidates that need more distinct rows than the data has are skipped; the others
    run side by side on ``jobs`` threads (None or -1: one per core), each fit on one
    core, reporting to ``on_candidate`` as each ends. Call inside :func:`gmm.em_session`.
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
    records, best, estimator = _run_candidates(
        Z_train, Z_valid, log_jacobian, grid, criterion, jobs, on_candidate
    )
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
        key = (_score(record, self.criterion), index)
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
    Z_train: np.ndarray,
    Z_valid: np.ndarray | None,
    log_jacobian: float,
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
            record, estimator = _evaluate_candidate(Z_train, Z_valid, log_jacobian, options)
            best.offer(i, record, estimator)
            del estimator
            if on_candidate is not None:
                on_candidate(record)
            records.append(record)
        return records, best.index, best.estimator

    def run(options: dict[str, Any]) -> tuple[Candidate, Any]:
        with gmm.one_thread_here():
            return _evaluate_candidate(Z_train, Z_valid, log_jacobian, options)

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


# ----------------------------------------------------------------------------- bandwidth


def cv_folds(n_rows: int, folds: int, seed: int | None) -> list[np.ndarray]:
    """Held-out row indices of each fold: scikit-learn's KFold, shuffled with the seed."""
    from sklearn.model_selection import KFold

    if not 2 <= folds <= n_rows:
        raise FitError(f"--folds must be between 2 and the number of rows ({n_rows}), got {folds}")
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros((n_rows, 1)))]


def cv_log_likelihood(sums: FoldSums, kernel: str, bandwidth: float, n_rows: int) -> float:
    """Mean held-out log-likelihood per row (standardized units) over the folds of ``sums``."""
    total = 0.0
    for scores in sums.log_density(kernel, bandwidth):
        total += float(np.sum(np.maximum(scores, UNREACHED_LOG_DENSITY)))
    return total / n_rows


def fold_sums(Z: np.ndarray, folds: list[np.ndarray]) -> FoldSums:
    """Each fold's fitted and held-out rows, ready to be scored at many bandwidths."""
    from gencli.density.families.kde_folds import FoldSums

    pairs = []
    for test in folds:
        train = np.ones(Z.shape[0], dtype=bool)
        train[test] = False
        pairs.append((Z[train], Z[test]))
    return FoldSums(pairs)


def select_bandwidth(
    Z: np.ndarray,
    *,
    kernel: str,
    folds: int = DEFAULT_FOLDS,
    seed: int | None = 0,
    log_jacobian: float = 0.0,
    xatol: float = 1e-3,
    on_candidate: Listener | None = None,
) -> tuple[float, list[Candidate]]:
    """The bandwidth that maximises the k-fold cross-validated log-likelihood (searched by
    :func:`search_bandwidth`), and every bandwidth tried with its score."""
    sums = fold_sums(Z, cv_folds(Z.shape[0], folds, seed))
    history: list[Candidate] = []

    def objective(h: float) -> float:
        value = cv_log_likelihood(sums, kernel, h, Z.shape[0])
        record = {"bandwidth": h, "cv_mean_log_likelihood": value + log_jacobian, "chosen": False}
        history.append(record)
        if on_candidate is not None:
            on_candidate(record)
        return value

    best = search_bandwidth(objective, Z, kernel, xatol=xatol)
    for record in history:
        record["chosen"] = math.isclose(record["bandwidth"], best, rel_tol=1e-12)
    history.sort(key=lambda r: r["bandwidth"])
    return best, history


def search_bandwidth(
    objective: Callable[[float], float], Z: np.ndarray, kernel: str, *, xatol: float = 1e-3
) -> float:
    """The bandwidth that maximizes ``objective`` (a held-out log-likelihood).

    Starting from Scott's rule on ``Z``, steps of a factor 2 bracket the maximum, then
    Brent's bounded method refines log-bandwidth to ``xatol`` (0.1% in bandwidth). Each
    bandwidth is evaluated once.
    """
    from scipy.optimize import minimize_scalar

    evaluated: dict[float, float] = {}

    def loss(log_h: float) -> float:
        if log_h not in evaluated:
            evaluated[log_h] = -objective(math.exp(log_h))
        return evaluated[log_h]

    step = math.log(2.0)
    centre = math.log(kde.rule_of_thumb(Z, "scott", kernel))
    left, right = centre - step, centre + step
    for _ in range(_BRACKET_STEPS):
        f_left, f_centre, f_right = loss(left), loss(centre), loss(right)
        if f_centre <= f_left and f_centre <= f_right:
            break
        if f_left < f_centre:
            left, centre, right = left - step, left, centre
        else:
            left, centre, right = centre, right, right + step
    else:
        going = "smaller" if f_left < f_centre else "larger"
        why = " (rows repeated exactly reward ever narrower kernels)" if going == "smaller" else ""
        raise FitError(
            "the cross-validated bandwidth search did not find a maximum: the likelihood "
            f"kept growing with {going} bandwidths (out to {math.exp(centre):.3g}){why}; "
            "give a --bandwidth or use scott"
        )
    result = minimize_scalar(loss, bounds=(left, right), method="bounded", options={"xatol": xatol})
    best_log_h = float(result.x) if result.fun <= loss(centre) else centre
    return math.exp(best_log_h)
