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
folds, and one Gaussian with a shrunk covariance (:mod:`gencli.fitting.shrunk`: few rows in
many columns). Cross-validation is K-fold (``folds``, 5) on the training rows; above
``ALL_FOLDS_ROWS`` training rows only the first fold is fitted and at most
``SCORED_ROWS`` of its rows are scored, which estimates a mean log-likelihood to a few
hundredths of a nat and keeps a 200,000-row fit affordable. A covariance type stops growing
K once ``PATIENCE`` larger K in a row did worse than its best.

The winner is then fitted on every training row, measured on the held-out rows and refitted
by :func:`gencli.fitting.family_fits.fit_gmm` or ``fit_kde``.

With row weights the folds stay folds of rows and every score here (a candidate's CV mean,
its standard error, the race's paired gaps) is a mean weighted by the scored rows' weights.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from gencli.errors import FitError
from gencli.fitting import shrunk
from gencli.fitting.cv_candidates import (
    floored,
    gmm_scores,
    kde_candidate,
    keep_better_twin,
    make_folds,
    mean_score,
    shrunk_candidate,
    standard_error,
    summary,
)
from gencli.fitting.family_fits import Rows, fit_gmm, fit_kde, fit_shrunk

PATIENCE = 2
# A mixture this many standard errors below the leader on the first fold runs no further.
RACE_MARGIN = 3.0


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


def _first_fold(
    record: dict[str, Any], first: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """The first fold's scores of the better of a candidate and its unrepaired twin."""
    head = floored(record["scores"][:first])
    if record.get("repaired") and "twin" in record:
        twin = floored(record["twin"][:first])
        return twin if mean_score(twin, weights) > mean_score(head, weights) else head
    return head


def _race(
    records: list[dict[str, Any]], first: int, weights: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """The mixtures worth the other folds: on the first fold's rows, those not below the
    leader by more than ``RACE_MARGIN`` standard errors of the paired per-row difference
    (the others are marked stopped; means weighted by the scored rows' ``weights``).
    Kernel densities and the shrunk Gaussian have run every fold already."""
    running = [r for r in records if r["status"] == "ok"]
    if not running:
        return []
    heads = {id(r): _first_fold(r, first, weights) for r in running}
    leader = max(running, key=lambda r: mean_score(heads[id(r)], weights))
    survivors = []
    for record in running:
        if "options" not in record:  # kernel densities and the shrunk Gaussian ran every fold
            continue
        gap = heads[id(leader)] - heads[id(record)]
        se = standard_error(gap, weights)
        mean_gap = mean_score(gap, weights)
        if record is not leader and mean_gap > RACE_MARGIN * se:
            record["status"] = (
                f"stopped after one fold: {mean_gap:.3f} nats/row below the "
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
    folds = make_folds(n, int(settings["folds"]), rows.seed, rows.train_weights)
    held = folds.scored_weights  # aligned with every candidate's scores
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
    # The shrunk Gaussian is a full covariance that few rows can estimate: it stays a
    # candidate where the plain full covariance is left out (fewer rows than columns).
    shrunk_wanted = "full" in covariances and discrete_count <= 1 and d <= shrunk.MAX_COLUMNS
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
        scores = gmm_scores(Z, folds.pairs[:1], options, rows.log_jacobian, record, folds.weights)
        if scores is not None:
            record |= {"status": "ok", "scores": scores, "options": options}
            search.note(record, mean_score(scores, held))
        return record

    def other_folds(record: dict[str, Any]) -> dict[str, Any]:
        rest = gmm_scores(
            Z, folds.pairs[1:], record["options"], rows.log_jacobian, record, folds.weights
        )
        if rest is not None:
            record["scores"] = np.concatenate([record["scores"], rest])
        return record

    kde_settings = {"kernel": settings["kernel"], "bandwidth": settings["bandwidth"] or "cv"}
    tasks: list[Callable[[], dict[str, Any]]] = [
        functools.partial(
            kde_candidate, Z, folds, kde_settings, rotate, rows.log_jacobian, rows.seed
        )
        for rotate in ((False,) if discrete_count else (False, True))
    ]
    if 1 in ks and shrunk_wanted:
        tasks.append(
            functools.partial(
                shrunk_candidate, Z, folds, float(settings["reg_covar"]), rows.log_jacobian
            )
        )
    workers = worker_count(rows.jobs, len(tasks) + len(ks) * len(covariances))
    with gmm.em_session():
        # In waves of one K (the kernel densities ride with the first), so that whether a K
        # is skipped depends only on the smaller K's scores, never on the threads' timing.
        records = []
        for wave, k in enumerate(ks):
            wave_tasks = [functools.partial(first_fold, k, c) for c in covariances]
            records += _run([*(tasks if wave == 0 else []), *wave_tasks], workers)
        first = len(folds.pairs[0][1])
        survivors = _race(records, first, held) if len(folds.pairs) > 1 else []
        _run([functools.partial(other_folds, r) for r in survivors], workers)
    for record in records:
        keep_better_twin(record, held)
        scores = record.pop("scores", None)
        record.pop("options", None)
        if record["status"] == "ok" and scores is not None:
            record |= summary(scores, held)
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
    quiet = replace(rows, jobs=1, on_candidate=None)
    if winner.get("covariance") == "shrunk":
        return fit_shrunk(quiet, settings)
    if winner["family"] == "gmm":
        chosen = settings | {
            "components": winner["components"],
            "covariance": winner["covariance"],
            "select": "bic",
            "repair_collapse": winner.get("repair_collapse", True),
        }
        return fit_gmm(quiet, chosen)
    chosen = settings | {"bandwidth": winner["bandwidth"], "rotate": winner["rotated"]}
    outcome = fit_kde(quiet, chosen)
    outcome["params"]["bandwidth_rule"] = (
        "cv" if settings["bandwidth"] in (None, "cv") else (outcome["params"]["bandwidth_rule"])
    )
    return outcome
