"""``--model auto``: mixtures and kernel densities compared on one honest criterion.

The model that maximizes the training likelihood is not the one that generalizes, and BIC
judges a mixture by a count of parameters that a repaired (regularized) or near-degenerate
fit does not honour. So every candidate is judged the same way: by its mean log-likelihood
on rows it was not fitted to, in the data's own units, with the same folds for all.

Candidates: Gaussian mixtures over K and the covariance types (``diag``, ``spherical`` and
``tied`` give small data sets few parameters), a Gaussian kernel density with per-column
bandwidths (round kernels on the standardized columns) and one whose kernels follow the
data's correlations (a full bandwidth matrix, the rows rotated so their covariance is the
identity, as scipy's ``gaussian_kde`` does), each with its bandwidth chosen on the same
folds. Cross-validation is K-fold (``folds``, 5) on the training rows; above
``ALL_FOLDS_ROWS`` training rows only the first fold is fitted and at most
``SCORED_ROWS`` of its rows are scored, which estimates a mean log-likelihood to a few
hundredths of a nat and keeps a 200,000-row fit affordable. A covariance type stops growing
K once ``PATIENCE`` larger K in a row did worse than its best.

The winner is then fitted on every training row, measured on the held-out rows and refitted
by :func:`gencli.fitting.family_fits.fit_gmm` or ``fit_kde``.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.errors import FitError
from gencli.fitting.family_fits import Rows, fit_gmm, fit_kde

if TYPE_CHECKING:
    from gencli.density.families.kde_folds import FoldSums

ALL_FOLDS_ROWS = 5_000
SCORED_ROWS = 4_000
BANDWIDTH_SEARCH_ROWS = 3_000
PATIENCE = 2
# A mixture this many standard errors below the leader on the first fold runs no further.
RACE_MARGIN = 3.0
# Bandwidths closer than 1% score alike: the search stops there.
BANDWIDTH_XATOL = 0.01
# A held-out row of density zero (no compact kernel reaches it) counts this many nats below
# zero, so one such row sinks a candidate without making every comparison infinite. Finite
# log-densities are never clamped: a spike that gives a row -30,000 must pay for it.
FLOOR_LOG_DENSITY = -1000.0


def _floored(scores: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(scores) | np.isneginf(scores), FLOOR_LOG_DENSITY, scores)


@dataclass(frozen=True)
class Folds:
    """The rows each fold fits on and the rows it scores (indices into the training rows)."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    cut_into: int

    @property
    def scored(self) -> int:
        return sum(len(scored) for _, scored in self.pairs)

    def describe(self) -> str:
        if len(self.pairs) == self.cut_into:
            return f"{self.cut_into}-fold cross-validation"
        return f"1 of {self.cut_into} folds ({self.scored} held-out rows scored)"


def make_folds(n_rows: int, folds: int, seed: int | None) -> Folds:
    """Seeded K-fold split of ``n_rows`` training rows; past ``ALL_FOLDS_ROWS`` the first
    fold alone, with at most ``SCORED_ROWS`` of its rows scored."""
    if not 2 <= folds <= n_rows:
        raise FitError(
            f"--folds must be between 2 and the number of training rows ({n_rows}), got {folds}"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    parts = np.array_split(order, folds)
    pairs = []
    for i, scored in enumerate(parts):
        fit_rows = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != i]))
        pairs.append((fit_rows, np.sort(scored)))
        if n_rows > ALL_FOLDS_ROWS:
            pairs = [(fit_rows, np.sort(scored[:SCORED_ROWS]))]
            break
    return Folds(pairs, folds)


# ----------------------------------------------------------------------------- candidates


def _summary(scores: np.ndarray) -> dict[str, float]:
    clamped = _floored(scores)
    mean = float(np.mean(clamped))
    se = float(np.std(clamped, ddof=1) / math.sqrt(clamped.size)) if clamped.size > 1 else 0.0
    return {"cv_mean_log_likelihood": mean, "cv_standard_error": se}


def _gmm_scores(
    Z: np.ndarray,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    options: dict[str, Any],
    log_jacobian: float,
    record: dict[str, Any],
) -> np.ndarray | None:
    """The candidate's log-densities on the scored rows of ``pairs`` (data units), or None
    with ``record["status"]`` saying why it could not be fitted."""
    from gencli.density.families import gmm

    scores = []
    for fit_rows, scored in pairs:
        fixes: list[str] = []
        try:
            with gmm.one_thread_here():
                estimator = gmm.fit(Z[fit_rows], fixes=fixes, **options)
        except FitError as exc:
            record["status"] = f"failed: {exc}"
            return None
        record["fixes"] += [fix for fix in fixes if fix not in record["fixes"]]
        scores.append(estimator.score_samples(Z[scored]) + log_jacobian)
    return np.concatenate(scores)


#: One fold of a kernel density: its fitted rows and scored rows in the kernels' space, and
#: the Jacobian that space adds.
FoldSpace = tuple[np.ndarray, np.ndarray, float]


def _kde_scores(sums: FoldSums, spaces: list[FoldSpace], kernel: str, h: float) -> np.ndarray:
    parts = sums.log_density(kernel, h)
    return np.concatenate(
        [part + jacobian for part, (_, _, jacobian) in zip(parts, spaces, strict=True)]
    )


def _fold_spaces(
    Z: np.ndarray, folds: Folds, rotate: bool, log_jacobian: float
) -> list[FoldSpace] | None:
    """Each fold's rows in the kernels' space. A rotation is made from the fold's fitted
    rows alone: made from every training row it would know the held-out rows' directions,
    which on nearly collinear columns made the CV score 140 nats too good (fertility).
    None when a fold's columns are (nearly) collinear."""
    from gencli.density.families import kde

    spaces = []
    for fit_rows, scored in folds.pairs:
        if not rotate:
            spaces.append((Z[fit_rows], Z[scored], log_jacobian))
            continue
        rotation = kde.whitening(Z[fit_rows])
        if rotation is None:
            return None
        jacobian = log_jacobian + kde.log_abs_det(rotation)
        spaces.append((Z[fit_rows] @ rotation, Z[scored] @ rotation, jacobian))
    return spaces


def _kde_candidate(
    Z: np.ndarray,
    folds: Folds,
    settings: dict[str, Any],
    rotate: bool,
    log_jacobian: float,
    seed: int | None,
) -> dict[str, Any]:
    from gencli.density.families import kde

    kernel, bandwidth = settings["kernel"], settings["bandwidth"]
    record: dict[str, Any] = {
        "family": "kde",
        "kernel": kernel,
        "rotated": rotate,
        "parameters": 1,
        "chosen": False,
    }
    spaces = _fold_spaces(Z, folds, rotate, log_jacobian)
    if spaces is None or (rotate and kde.whitening(Z) is None):
        return record | {"status": "skipped: the columns are (nearly) collinear"}
    from gencli.density.families.kde_folds import FoldSums

    sums = FoldSums([(fitted, scored) for fitted, scored, _ in spaces])
    if bandwidth == "cv":
        h = _cv_bandwidth(sums, spaces, folds, kernel, seed)
    else:
        h, _rule = kde.choose_bandwidth(spaces[0][0], bandwidth, kernel)
    scores = _kde_scores(sums, spaces, kernel, h)
    return record | {"bandwidth": h, "status": "ok", "scores": scores}


def _cv_bandwidth(
    sums: FoldSums, spaces: list[FoldSpace], folds: Folds, kernel: str, seed: int | None
) -> float:
    """The bandwidth that maximizes the folds' mean log-likelihood. On many rows it is
    found on a seeded sample of ``BANDWIDTH_SEARCH_ROWS`` of the fold's fitted rows (5
    folds) and scaled to the fold's size by the rate n^(-1/(d+4)) every bandwidth rule
    shares."""
    from gencli.fitting.selection import cv_folds, cv_log_likelihood, fold_sums, search_bandwidth

    first = spaces[0][0]
    n, d = first.shape
    if len(folds.pairs) == folds.cut_into:
        objective: Callable[[float], float] = lambda h: float(  # noqa: E731
            np.mean(_floored(_kde_scores(sums, spaces, kernel, h)))
        )
        return search_bandwidth(objective, first, kernel, xatol=BANDWIDTH_XATOL)
    sample = np.random.default_rng(seed).choice(
        n, size=min(n, BANDWIDTH_SEARCH_ROWS), replace=False
    )
    small = first[np.sort(sample)]
    small_sums = fold_sums(small, cv_folds(small.shape[0], 5, seed))
    h = search_bandwidth(
        lambda h: cv_log_likelihood(small_sums, kernel, h, small.shape[0]),
        small,
        kernel,
        xatol=BANDWIDTH_XATOL,
    )
    return h * (small.shape[0] * 0.8 / n) ** (1.0 / (d + 4))


# ----------------------------------------------------------------------------- the search


class _Search:
    """Runs candidates side by side; a covariance type stops growing K once ``PATIENCE``
    larger K in a row did worse than its best so far."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: dict[tuple[str, int], float] = {}
        self.stopped: dict[str, int] = {}

    def hopeless(self, covariance: str, k: int) -> int | None:
        """The best K of ``covariance`` once the PATIENCE K above it all did worse (then
        every larger K is skipped too); None while ``k`` is still worth fitting."""
        with self.lock:
            if covariance in self.stopped:
                return self.stopped[covariance]
            scores = {kk: v for (c, kk), v in self.done.items() if c == covariance}
        below = [k - i for i in range(1, PATIENCE + 1)]
        if not all(kk in scores for kk in below):
            return None
        best_k = max(scores, key=lambda kk: scores[kk])
        if best_k < min(below) and all(scores[kk] < scores[best_k] for kk in below):
            with self.lock:
                self.stopped[covariance] = best_k
            return best_k
        return None

    def note(self, record: dict[str, Any], score: float) -> None:
        with self.lock:
            self.done[(record["covariance"], record["components"])] = score


def _race(records: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    """The mixtures worth the other folds: on the first fold's rows, those not below the
    leader by more than ``RACE_MARGIN`` standard errors of the paired per-row difference
    (the others are marked stopped). Kernel densities have run every fold already."""
    running = [r for r in records if r["status"] == "ok"]
    if not running:
        return []
    heads = {id(r): _floored(r["scores"][:first]) for r in running}
    leader = max(running, key=lambda r: float(np.mean(heads[id(r)])))
    survivors = []
    for record in running:
        if record["family"] != "gmm":
            continue
        gap = heads[id(leader)] - heads[id(record)]
        se = float(np.std(gap, ddof=1) / math.sqrt(gap.size)) if gap.size > 1 else 0.0
        if record is not leader and float(np.mean(gap)) > RACE_MARGIN * se:
            record["status"] = (
                f"stopped after one fold: {float(np.mean(gap)):.3f} nats/row below the "
                f"leader (standard error {se:.3f})"
            )
        else:
            survivors.append(record)
    return survivors


def fit_auto(rows: Rows, settings: dict[str, Any]) -> dict[str, Any]:
    """Choose between the families by cross-validated held-out log-likelihood, then fit the
    winner like ``--model gmm`` or ``--model kde`` would with its settings fixed."""
    from gencli.density.families import gmm
    from gencli.fitting.family_fits import (
        check_search_memory,
        estimable_covariances,
        load_libraries,
    )
    from gencli.fitting.selection import parse_components, worker_count

    Z = rows.train
    n, d = Z.shape
    folds = make_folds(n, int(settings["folds"]), rows.seed)
    try:
        ks = parse_components(settings["components"])
    except ValueError as exc:
        raise FitError(f"--components: {exc}") from None
    covariance = settings["covariance"]
    covariances = list(gmm.COVARIANCE_TYPES) if covariance in ("auto", None) else [covariance]
    discrete_count = int(settings.get("discrete_count", 0))
    if discrete_count > 1:  # whole-number columns: only these give exact box probabilities
        covariances = [c for c in covariances if c in ("diag", "spherical")]
    fit_size = min(len(f) for f, _ in folds.pairs)
    notes = estimable_covariances(covariances, (fit_size, d)) if covariances else []
    n_distinct = gmm.count_distinct(Z, max(ks))
    gmm_options = {key: settings[key] for key in ("max_iter", "n_init", "tol", "reg_covar")}
    gmm_options["seed"] = rows.seed
    check_search_memory(rows, ks, covariances)
    load_libraries("auto", {"bandwidth": "cv", "kernel": settings["kernel"]})
    search = _Search()

    def first_fold(k: int, cov: str) -> dict[str, Any]:
        record: dict[str, Any] = {"family": "gmm", "components": k, "covariance": cov}
        record |= {"parameters": gmm.n_parameters(k, cov, d), "fixes": [], "chosen": False}
        if k > min(n_distinct, fit_size):
            why = f"more components than the {n_distinct} distinct rows"
            return record | {"status": f"skipped: {why}"}
        if k == 1 and cov == "tied" and "full" in covariances:
            return record | {"status": "skipped: the same model as K=1 full"}
        best = search.hopeless(cov, k)
        if best is not None:
            return record | {"status": f"skipped: K={best} beat the {PATIENCE} K above it"}
        options = gmm_options | {"components": k, "covariance": cov}
        scores = _gmm_scores(Z, folds.pairs[:1], options, rows.log_jacobian, record)
        if scores is not None:
            record |= {"status": "ok", "scores": scores, "options": options}
            search.note(record, float(np.mean(_floored(scores))))
        return record

    def other_folds(record: dict[str, Any]) -> dict[str, Any]:
        rest = _gmm_scores(Z, folds.pairs[1:], record["options"], rows.log_jacobian, record)
        if rest is not None:
            record["scores"] = np.concatenate([record["scores"], rest])
        return record

    kde_settings = {"kernel": settings["kernel"], "bandwidth": settings["bandwidth"] or "cv"}
    tasks: list[Callable[[], dict[str, Any]]] = [
        functools.partial(
            _kde_candidate, Z, folds, kde_settings, rotate, rows.log_jacobian, rows.seed
        )
        for rotate in ((False,) if discrete_count else (False, True))
    ]
    workers = worker_count(rows.jobs, len(tasks) + len(ks) * len(covariances))
    with gmm.em_session():
        # In waves of one K (the kernel densities ride with the first), so that whether a K
        # is skipped depends only on the smaller K's scores, never on the threads' timing.
        records = []
        for wave, k in enumerate(ks):
            wave_tasks = [functools.partial(first_fold, k, c) for c in covariances]
            records += _run([*(tasks if wave == 0 else []), *wave_tasks], workers)
        survivors = _race(records, len(folds.pairs[0][1])) if len(folds.pairs) > 1 else []
        _run([functools.partial(other_folds, r) for r in survivors], workers)
    for record in records:
        scores = record.pop("scores", None)
        record.pop("options", None)
        if record["status"] == "ok" and scores is not None:
            record |= _summary(scores)
        if rows.on_candidate is not None:
            rows.on_candidate(record)
    scored = [r for r in records if r["status"] == "ok"]
    if not scored:
        reasons = "; ".join(sorted({r["status"] for r in records}))
        raise FitError(f"no candidate could be fitted ({reasons}); try --model kde")
    winner = max(scored, key=lambda r: r["cv_mean_log_likelihood"])
    winner["chosen"] = True
    outcome = _fit_winner(rows, settings, winner)
    outcome["selection"] = {
        "criterion": "cv",
        "parameter": "model",
        "method": folds.describe(),
        "folds": folds.cut_into,
        "scored_rows": folds.scored,
        "candidates": records,
    }
    outcome["warnings"] = notes + outcome["warnings"]
    outcome["family"] = winner["family"]
    return outcome


def _run(tasks: list[Callable[[], Any]], workers: int) -> list[Any]:
    """Every task's result, in task order; side by side on ``workers`` threads (stopped at
    once by a stop signal, see :func:`gencli.density.families.kde_exact.run_in_threads`)."""
    from gencli.density.families.kde_exact import run_in_threads

    results: list[Any] = [None] * len(tasks)

    def work(index: int) -> None:
        results[index] = tasks[index]()

    run_in_threads(work, range(len(tasks)), workers)
    return results


def _fit_winner(rows: Rows, settings: dict[str, Any], winner: dict[str, Any]) -> dict[str, Any]:
    """Fit the winning candidate on every training row, measure it and refit it."""
    quiet = Rows(rows.Z, rows.train, rows.valid, rows.log_jacobian, rows.refit, rows.seed, 1, None)
    if winner["family"] == "gmm":
        chosen = settings | {
            "components": winner["components"],
            "covariance": winner["covariance"],
            "select": "bic",
        }
        return fit_gmm(quiet, chosen)
    chosen = settings | {"bandwidth": winner["bandwidth"], "rotate": winner["rotated"]}
    outcome = fit_kde(quiet, chosen)
    outcome["params"]["bandwidth_rule"] = (
        "cv" if settings["bandwidth"] in (None, "cv") else (outcome["params"]["bandwidth_rule"])
    )
    return outcome
