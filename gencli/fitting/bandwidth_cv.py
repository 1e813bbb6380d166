"""Choosing a kernel density's bandwidth by k-fold cross-validated log-likelihood,
maximised over log-bandwidth by bracketing and then Brent's method rather than on a coarse
grid.

With row weights every fold keeps its rows with their weights: a held-out row's density is
the KDE of the fold's fitted rows with their weights as the kernels' weights, and the score
is the weighted mean over the held-out rows (:class:`WeightedFoldSums`), so integer weights
score as the rows repeated would at the same bandwidth (but repeats never straddle a fold).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gencli.density.families import kde
from gencli.density.families.kde_folds import FoldSums
from gencli.errors import FitError
from gencli.fitting.selection import Candidate, Listener

DEFAULT_FOLDS = 5
# A held-out row that no kernel reaches has log-density -inf; in the CV objective it
# counts as this many nats below zero, so that the search still has a slope to follow.
UNREACHED_LOG_DENSITY = -1000.0
# Doublings (or halvings) of Scott's bandwidth the CV search tries before giving up: a
# factor of 1.7e7 either way, far past any real optimum (exact repeats drive it to 0).
_BRACKET_STEPS = 24


class WeightedFoldSums(FoldSums):
    """:class:`FoldSums` of weighted rows: each fold's fitted rows weight its kernels
    (``fitted_weights``) and its scored rows weight the mean (``scored_weights``)."""

    def __init__(
        self,
        folds: list[tuple[np.ndarray, np.ndarray]],
        fitted_weights: list[np.ndarray],
        scored_weights: list[np.ndarray],
    ) -> None:
        super().__init__(folds)
        self.fitted_weights = fitted_weights
        self.scored_weights = scored_weights
        self.total_weight = float(sum(float(np.sum(w)) for w in scored_weights))

    def log_density(self, kernel: str, bandwidth: float) -> list[np.ndarray]:
        """Each fold's scored rows' log-densities under its fitted rows' weighted kernels."""
        from gencli.density.families.kde_scoring import SMALL_PAIRS, log_density

        out = []
        for (fitted, scored), weights, cache in zip(
            self.folds, self.fitted_weights, self.caches, strict=True
        ):
            mode = "exact" if len(fitted) * len(scored) <= SMALL_PAIRS else "fixed"
            out.append(
                log_density(
                    fitted, scored, kernel, bandwidth, mode=mode, cache=cache, point_weights=weights
                )
            )
        return out


def cv_folds(n_rows: int, folds: int, seed: int | None) -> list[np.ndarray]:
    """Held-out row indices of each fold: scikit-learn's KFold, shuffled with the seed."""
    from sklearn.model_selection import KFold

    if not 2 <= folds <= n_rows:
        raise FitError(f"--folds must be between 2 and the number of rows ({n_rows}), got {folds}")
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros((n_rows, 1)))]


def cv_log_likelihood(sums: FoldSums, kernel: str, bandwidth: float, n_rows: int) -> float:
    """Mean held-out log-likelihood per row (standardized units) over the folds of ``sums``;
    per unit of weight for :class:`WeightedFoldSums` (``n_rows`` is then not used)."""
    parts = sums.log_density(kernel, bandwidth)
    if isinstance(sums, WeightedFoldSums):
        total = 0.0
        for scores, weights in zip(parts, sums.scored_weights, strict=True):
            total += float(weights @ np.maximum(scores, UNREACHED_LOG_DENSITY))
        return total / sums.total_weight
    total = 0.0
    for scores in parts:
        total += float(np.sum(np.maximum(scores, UNREACHED_LOG_DENSITY)))
    return total / n_rows


def fold_sums(
    Z: np.ndarray, folds: list[np.ndarray], weights: np.ndarray | None = None
) -> FoldSums:
    """Each fold's fitted and held-out rows (with their ``weights``), ready to be scored at
    many bandwidths."""
    pairs, fitted_weights, scored_weights = [], [], []
    for test in folds:
        train = np.ones(Z.shape[0], dtype=bool)
        train[test] = False
        pairs.append((Z[train], Z[test]))
        if weights is not None:
            fitted_weights.append(weights[train])
            scored_weights.append(weights[test])
    if weights is None:
        return FoldSums(pairs)
    return WeightedFoldSums(pairs, fitted_weights, scored_weights)


def select_bandwidth(
    Z: np.ndarray,
    *,
    kernel: str,
    folds: int = DEFAULT_FOLDS,
    seed: int | None = 0,
    log_jacobian: float = 0.0,
    xatol: float = 1e-3,
    on_candidate: Listener | None = None,
    weights: np.ndarray | None = None,
) -> tuple[float, list[Candidate]]:
    """The bandwidth that maximises the k-fold cross-validated log-likelihood (searched by
    :func:`search_bandwidth`), and every bandwidth tried with its score (with row
    ``weights``: weighted kernels, weighted mean; the folds are folds of rows)."""
    sums = fold_sums(Z, cv_folds(Z.shape[0], folds, seed), weights)
    history: list[Candidate] = []

    def objective(h: float) -> float:
        value = cv_log_likelihood(sums, kernel, h, Z.shape[0])
        record = {"bandwidth": h, "cv_mean_log_likelihood": value + log_jacobian, "chosen": False}
        history.append(record)
        if on_candidate is not None:
            on_candidate(record)
        return value

    best = search_bandwidth(objective, Z, kernel, xatol=xatol, weights=weights)
    for record in history:
        record["chosen"] = math.isclose(record["bandwidth"], best, rel_tol=1e-12)
    history.sort(key=lambda r: r["bandwidth"])
    return best, history


def search_bandwidth(
    objective: Callable[[float], float],
    Z: np.ndarray,
    kernel: str,
    *,
    xatol: float = 1e-3,
    weights: np.ndarray | None = None,
) -> float:
    """The bandwidth that maximizes ``objective`` (a held-out log-likelihood).

    Starting from Scott's rule on ``Z`` (with its rows' ``weights``), steps of a factor 2
    bracket the maximum, then Brent's bounded method refines log-bandwidth to ``xatol``
    (0.1% in bandwidth). Each bandwidth is evaluated once.
    """
    from scipy.optimize import minimize_scalar

    evaluated: dict[float, float] = {}

    def loss(log_h: float) -> float:
        if log_h not in evaluated:
            evaluated[log_h] = -objective(math.exp(log_h))
        return evaluated[log_h]

    step = math.log(2.0)
    centre = math.log(kde.rule_of_thumb(Z, "scott", kernel, weights))
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
