"""The candidates of ``--model auto`` and the folds that judge them.

Every candidate is scored the same way: its log-density, in the data's units, on the rows of
each fold it was not fitted to (:class:`Folds`). A mixture by :func:`gmm_scores` (with the
fits a collapse repair replaced kept aside, :func:`keep_better_twin`), the shrunk Gaussian by
:func:`shrunk_candidate`, a kernel density, per-column or rotated, by :func:`kde_candidate`
with its bandwidth chosen on the same folds. The search that runs them is
:mod:`gencli.fitting.auto`.

With row weights (:class:`Folds`' ``weights``) the folds are still folds of rows (a row and
its weight stay together), every candidate is fitted to its fold's weighted rows, and every
mean and standard error over the scored rows is weighted (:func:`mean_score`, :func:`summary`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.errors import FitError
from gencli.fitting import shrunk, weighted_gmm

if TYPE_CHECKING:
    from gencli.density.families.kde_folds import FoldSums

ALL_FOLDS_ROWS = 5_000
SCORED_ROWS = 4_000
BANDWIDTH_SEARCH_ROWS = 3_000
# Bandwidths closer than 1% score alike: the search stops there.
BANDWIDTH_XATOL = 0.01
# A held-out row of density zero (no compact kernel reaches it) counts this many nats below
# zero, so one such row sinks a candidate without making every comparison infinite. Finite
# log-densities are never clamped: a spike that gives a row -30,000 must pay for it.
FLOOR_LOG_DENSITY = -1000.0


def floored(scores: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(scores) | np.isneginf(scores), FLOOR_LOG_DENSITY, scores)


def mean_score(scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The mean of :func:`floored` scores; weighted by ``weights``' first entries (the
    scored rows' weights in the order of the scores, :attr:`Folds.scored_weights`)."""
    clamped = floored(scores)
    if weights is None:
        return float(np.mean(clamped))
    return float(np.average(clamped, weights=weights[: clamped.size]))


def standard_error(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Standard error of the (weighted) mean of ``values``: with shares p = w / sum w,
    sqrt(n / (n - 1) sum p^2 (x - mean)^2), which is sd / sqrt(n) for equal weights."""
    n = values.size
    if n < 2:
        return 0.0
    if weights is None:
        return float(np.std(values, ddof=1) / math.sqrt(n))
    share = weights[:n] / np.sum(weights[:n])
    spread = values - share @ values
    return float(math.sqrt(n / (n - 1) * float(np.sum((share * spread) ** 2))))


@dataclass(frozen=True)
class Folds:
    """The rows each fold fits on and the rows it scores (indices into the training rows),
    and the training rows' weights (None: unweighted)."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    cut_into: int
    weights: np.ndarray | None = None

    @property
    def scored_weights(self) -> np.ndarray | None:
        """The scored rows' weights, fold after fold: aligned with the candidates' scores."""
        if self.weights is None:
            return None
        return np.concatenate([self.weights[scored] for _, scored in self.pairs])

    def fit_weights(self, fit_rows: np.ndarray) -> np.ndarray | None:
        """The weights of the training rows ``fit_rows`` (None: unweighted)."""
        return None if self.weights is None else self.weights[fit_rows]

    @property
    def scored(self) -> int:
        return sum(len(scored) for _, scored in self.pairs)

    def describe(self) -> str:
        if len(self.pairs) == self.cut_into:
            return f"{self.cut_into}-fold cross-validation"
        return f"1 of {self.cut_into} folds ({self.scored} held-out rows scored)"


def make_folds(
    n_rows: int, folds: int, seed: int | None, weights: np.ndarray | None = None
) -> Folds:
    """Seeded K-fold split of ``n_rows`` training rows (with their ``weights``); past
    ``ALL_FOLDS_ROWS`` the first fold alone, with at most ``SCORED_ROWS`` of its rows
    scored."""
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
    return Folds(pairs, folds, weights)


def summary(scores: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """The (weighted) mean of the floored scores and its standard error."""
    clamped = floored(scores)
    mean = mean_score(clamped, weights)
    return {"cv_mean_log_likelihood": mean, "cv_standard_error": standard_error(clamped, weights)}


def gmm_scores(
    Z: np.ndarray,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    options: dict[str, Any],
    log_jacobian: float,
    record: dict[str, Any],
    weights: np.ndarray | None = None,
) -> np.ndarray | None:
    """The candidate's log-densities on the scored rows of ``pairs`` (data units), or None
    with ``record["status"]`` saying why it could not be fitted.

    Where the collapse repair replaced a fold's first fit, that fit's log-densities go to
    ``record["twin"]`` (the repaired one's elsewhere), so the folds can judge whether the
    repair helped: :func:`keep_better_twin`. ``weights``: the rows of ``Z``'s weights.
    """
    from gencli.density.families import gmm
    from gencli.fitting.selection import point_collapses_only

    scores, twin = [], []
    for fit_rows, scored in pairs:
        fixes: list[str] = []
        twins: list[Any] = []
        try:
            with gmm.one_thread_here():
                fold_weights = None if weights is None else weights[fit_rows]
                estimator = weighted_gmm.fit(
                    Z[fit_rows], fold_weights, fixes=fixes, unrepaired=twins, **options
                )
        except FitError as exc:
            record["status"] = f"failed: {exc}"
            return None
        record["fixes"] += [fix for fix in fixes if fix not in record["fixes"]]
        twins = [t for t in twins if point_collapses_only(t, options["reg_covar"])]
        scores.append(estimator.score_samples(Z[scored]) + log_jacobian)
        twin.append(twins[0].score_samples(Z[scored]) + log_jacobian if twins else scores[-1])
        record["repaired"] = record.get("repaired", False) or bool(twins)
    record["twin"] = np.concatenate([record.get("twin", np.empty(0)), *twin])
    return np.concatenate(scores)


def keep_better_twin(record: dict[str, Any], weights: np.ndarray | None = None) -> None:
    """A repair must never make the held-out likelihood worse than not repairing: when the
    folds' fits before the collapse repair score better (in the mean weighted by the
    scored rows' ``weights``), the candidate is that fit."""
    twin = record.pop("twin", None)
    if not record.pop("repaired", False) or twin is None or record.get("scores") is None:
        return
    before, after = mean_score(twin, weights), mean_score(record["scores"], weights)
    if before > after:
        record["scores"] = twin
        record["repair_collapse"] = False
        record["fixes"].append(
            f"kept the fits before the collapse repair: cross-validated {before:.4f} against "
            f"{after:.4f} nats/row repaired"
        )


def shrunk_candidate(
    Z: np.ndarray, folds: Folds, reg_covar: float, log_jacobian: float
) -> dict[str, Any]:
    """One Gaussian with the OAS-shrunk covariance (:mod:`gencli.fitting.shrunk`), scored
    on every fold: a full covariance's shape at the cost of a few parameters' confidence."""
    from gencli.density.families import gmm

    d = Z.shape[1]
    record: dict[str, Any] = {"family": "gmm", "components": 1, "covariance": "shrunk"}
    record |= {"parameters": gmm.n_parameters(1, "full", d), "fixes": [], "chosen": False}
    scores, amounts = [], []
    for fit_rows, scored in folds.pairs:
        try:
            estimator, amount = shrunk.fit(Z[fit_rows], reg_covar, folds.fit_weights(fit_rows))
        except FitError as exc:
            return record | {"status": f"failed: {exc}"}
        scores.append(estimator.score_samples(Z[scored]) + log_jacobian)
        amounts.append(amount)
    record["shrinkage"] = float(np.mean(amounts))
    return record | {"status": "ok", "scores": np.concatenate(scores)}


#: One fold of a kernel density: its fitted rows and scored rows in the kernels' space, and
#: the Jacobian that space adds.
FoldSpace = tuple[np.ndarray, np.ndarray, float]


def kde_scores(sums: FoldSums, spaces: list[FoldSpace], kernel: str, h: float) -> np.ndarray:
    parts = sums.log_density(kernel, h)
    return np.concatenate(
        [part + jacobian for part, (_, _, jacobian) in zip(parts, spaces, strict=True)]
    )


def fold_spaces(
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
        rotation = kde.whitening(Z[fit_rows], folds.fit_weights(fit_rows))
        if rotation is None:
            return None
        jacobian = log_jacobian + kde.log_abs_det(rotation)
        spaces.append((Z[fit_rows] @ rotation, Z[scored] @ rotation, jacobian))
    return spaces


def kde_candidate(
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
    spaces = fold_spaces(Z, folds, rotate, log_jacobian)
    if spaces is None or (rotate and kde.whitening(Z, folds.weights) is None):
        return record | {"status": "skipped: the columns are (nearly) collinear"}
    from gencli.density.families.kde_folds import FoldSums
    from gencli.fitting.bandwidth_cv import WeightedFoldSums

    pairs = [(fitted, scored) for fitted, scored, _ in spaces]
    if folds.weights is None:
        sums = FoldSums(pairs)
    else:
        fitted_weights = [folds.weights[fit_rows] for fit_rows, _ in folds.pairs]
        scored_weights = [folds.weights[scored] for _, scored in folds.pairs]
        sums = WeightedFoldSums(pairs, fitted_weights, scored_weights)
    if bandwidth == "cv":
        h = cv_bandwidth(sums, spaces, folds, kernel, seed)
    else:
        first_weights = folds.fit_weights(folds.pairs[0][0])
        h, _rule = kde.choose_bandwidth(spaces[0][0], bandwidth, kernel, first_weights)
    scores = kde_scores(sums, spaces, kernel, h)
    return record | {"bandwidth": h, "status": "ok", "scores": scores}


def cv_bandwidth(
    sums: FoldSums, spaces: list[FoldSpace], folds: Folds, kernel: str, seed: int | None
) -> float:
    """The bandwidth that maximizes the folds' (weighted) mean log-likelihood. On many rows
    it is found on a seeded sample of ``BANDWIDTH_SEARCH_ROWS`` of the fold's fitted rows
    (5 folds) and scaled to the fold's size by the rate n^(-1/(d+4)) every bandwidth rule
    shares (n_eff with row weights)."""
    from gencli.density.families.kde import effective_size
    from gencli.fitting.bandwidth_cv import (
        cv_folds,
        cv_log_likelihood,
        fold_sums,
        search_bandwidth,
    )

    first = spaces[0][0]
    first_weights = folds.fit_weights(folds.pairs[0][0])
    n, d = first.shape
    if len(folds.pairs) == folds.cut_into:
        held = folds.scored_weights
        objective: Callable[[float], float] = lambda h: mean_score(  # noqa: E731
            kde_scores(sums, spaces, kernel, h), held
        )
        return search_bandwidth(
            objective, first, kernel, xatol=BANDWIDTH_XATOL, weights=first_weights
        )
    sample = np.sort(
        np.random.default_rng(seed).choice(n, size=min(n, BANDWIDTH_SEARCH_ROWS), replace=False)
    )
    small = first[sample]
    small_weights = None if first_weights is None else first_weights[sample]
    small_sums = fold_sums(small, cv_folds(small.shape[0], 5, seed), small_weights)
    h = search_bandwidth(
        lambda h: cv_log_likelihood(small_sums, kernel, h, small.shape[0]),
        small,
        kernel,
        xatol=BANDWIDTH_XATOL,
        weights=small_weights,
    )
    if small_weights is None or first_weights is None:
        return h * (small.shape[0] * 0.8 / n) ** (1.0 / (d + 4))
    ratio = effective_size(small_weights) * 0.8 / effective_size(first_weights)
    return h * ratio ** (1.0 / (d + 4))
