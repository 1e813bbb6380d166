"""Fitting each family to prepared rows: the mixture search and the kernel density.

:func:`gencli.fitting.fitter.fit` standardizes, checks and splits the rows; these functions fit
on the training rows, measure on the held-out ones and refit on every row. Each checks
what it can (rows per component, covariances a table can estimate, memory for the search,
the bandwidth) before scikit-learn or scipy is loaded.

Row weights (:class:`Rows`' ``weights``): every fit maximizes sum_i w_i log p(x_i), so
integer weights give the model of the rows repeated w_i times for fixed settings (a
mixture's K, covariance and start, a kernel density's bandwidth). Choices that depend on
the number of rows use the effective sample size n_eff = (sum w)^2 / sum w^2 instead (the
bandwidth rules, BIC's penalty; see :mod:`gencli.fitting.selection`), and every figure made
here (BIC and AIC, held-out and cross-validated means) is weighted. The per-row
log-densities returned stay per row, unweighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import FitError
from gencli.fitting.selection import Listener


@dataclass(frozen=True)
class Rows:
    """What every family's fit needs: the rows, their split, and the run's settings.

    ``weights`` (one per row of Z, positive and finite, or None for unweighted rows) and
    ``train_weights`` / ``valid_weights`` (aligned with ``train`` / ``valid``); when
    ``train`` is ``Z`` itself (no held-out rows) ``train_weights`` may be left out.
    """

    Z: np.ndarray
    train: np.ndarray
    valid: np.ndarray | None
    log_jacobian: float
    refit: bool
    seed: int | None
    jobs: int | None
    on_candidate: Listener | None
    weights: np.ndarray | None = None
    train_weights: np.ndarray | None = None
    valid_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.weights is None:
            if self.train_weights is not None or self.valid_weights is not None:
                raise ValueError("train or held-out weights without weights")
            return
        if self.train_weights is None and self.train is self.Z:
            object.__setattr__(self, "train_weights", self.weights)
        parts = [(self.Z, self.weights), (self.train, self.train_weights)]
        if self.valid is not None:
            parts.append((self.valid, self.valid_weights))
        for part, weights in parts:
            if weights is None or weights.shape != (part.shape[0],):
                raise ValueError("row weights must be given for, and aligned with, each part")


TRAIN_SCORED_ROWS = 2_000


def fit_gmm(rows: Rows, settings: dict[str, Any]) -> dict[str, Any]:
    from gencli.density.families import gmm
    from gencli.fitting.selection import mixture_grid

    ks, covariances = mixture_grid(settings["components"], settings["covariance"])
    if settings.get("discrete_count", 0) > 1:  # exact box probabilities need these
        covariances = [c for c in covariances if c in ("diag", "spherical")]
    if len(ks) == 1:
        gmm.check_rows(rows.Z, ks[0])  # too few rows for K at all: say so first
    notes = estimable_covariances(covariances, rows.train.shape)
    check_search_memory(rows, ks, covariances)
    load_libraries("gmm", settings)  # after the quick checks, which need none of them
    options = {key: settings[key] for key in ("max_iter", "n_init", "tol", "reg_covar")} | {
        "seed": rows.seed
    }
    with gmm.em_session():
        outcome = _fit_gmm_in_session(rows, settings, ks, covariances, options)
    outcome["warnings"] = notes + outcome["warnings"]
    return outcome


def estimable_covariances(covariances: list[str], shape: tuple[int, int]) -> list[str]:
    """Drop (for 'auto') or refuse full and tied covariances over more columns than rows.

    From n rows a d x d covariance has rank at most n - 1: below d + 1 rows it is singular
    and only the regularizer makes it invertible, so the density says nothing about the
    data along most directions (and costs d^2 per component: 800 MB at d = 10,000).
    Returns notes for the fit's warnings; ``covariances`` is edited in place.
    """
    n_rows, d = shape
    if n_rows > d:
        return []
    square = [c for c in covariances if c in ("full", "tied")]
    if not square:
        return []
    if len(square) == len(covariances):
        raise FitError(
            f"a {square[0]} covariance over {d} columns cannot be estimated from {n_rows} "
            f"training rows (it needs more rows than columns); use --covariance diag, "
            "fewer --columns, or --model kde"
        )
    covariances[:] = [c for c in covariances if c not in square]
    return [
        f"full and tied covariances were left out of the search: over {d} columns they cannot "
        f"be estimated from {n_rows} training rows"
    ]


def check_search_memory(rows: Rows, ks: list[int], covariances: list[str]) -> None:
    """Refuse, before any fit starts, a search whose fits would not fit in memory together.

    Candidates run on up to ``jobs`` threads at once and the best so far is kept, so the
    peak is about (threads + 1) x the largest candidate.
    """
    from gencli.density.families import gmm
    from gencli.fitting.selection import worker_count
    from gencli.limits import check_memory

    n_rows, d = rows.Z.shape
    sizes = [gmm.fit_memory(n_rows, d, k, c) for k in ks for c in covariances]
    threads = worker_count(rows.jobs, len(sizes)) if len(sizes) > 1 else 1
    need = (threads + 1) * max(sizes)
    span = f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}..{ks[-1]}"
    check_memory(
        need,
        f"fitting mixtures of {span} components ({'/'.join(covariances)} covariance) to "
        f"{n_rows} rows x {d} columns",
        "use --covariance diag, fewer --components, fewer --columns or --jobs 1",
    )


def _fit_gmm_in_session(
    rows: Rows,
    settings: dict[str, Any],
    ks: list[int],
    covariances: list[str],
    options: dict[str, Any],
) -> dict[str, Any]:
    from gencli.density.families import gmm
    from gencli.fitting import weighted_gmm
    from gencli.fitting.selection import fit_candidate, select_gmm

    Z, Z_train, Z_valid, log_jacobian = rows.Z, rows.train, rows.valid, rows.log_jacobian
    refit, jobs, on_candidate = rows.refit, rows.jobs, rows.on_candidate
    selection = None
    if len(ks) * len(covariances) > 1:
        choice = select_gmm(
            Z_train,
            Z_valid,
            components=ks,
            covariances=covariances,
            criterion=settings["select"],
            log_jacobian=log_jacobian,
            options=options,
            jobs=jobs,
            on_candidate=on_candidate,
            train_weights=rows.train_weights,
            valid_weights=rows.valid_weights,
        )
        chosen, estimator, fixes = choice.options, choice.estimator, list(choice.fixes)
        selection = {
            "criterion": settings["select"],
            "parameter": "components",
            "candidates": choice.candidates,
        }
    else:
        if settings["select"] == "heldout" and Z_valid is None:
            raise FitError("--select heldout needs held-out rows; use --validation 0.2 (say)")
        gmm.check_rows(Z, ks[0])
        if Z_valid is not None:
            try:
                gmm.check_rows(Z_train, ks[0])
            except FitError:
                raise FitError(
                    f"a {ks[0]}-component mixture needs at least {ks[0]} distinct rows to train "
                    f"on, but only {len(Z_train)} rows remain after holding out {len(Z_valid)} "
                    "(--validation); use --validation 0 or fewer --components"
                ) from None
        fixes = []
        chosen = {**options, "components": ks[0], "covariance": covariances[0]}
        if "repair_collapse" in settings:  # decided on --model auto's folds
            chosen["repair_collapse"] = settings["repair_collapse"]
            estimator = weighted_gmm.fit(Z_train, rows.train_weights, fixes=fixes, **chosen)
        else:
            estimator, kept = fit_candidate(
                Z_train,
                Z_valid,
                log_jacobian,
                chosen,
                fixes,
                rows.train_weights,
                rows.valid_weights,
            )
            chosen["repair_collapse"] = not kept
    # Start the refit from the repaired settings of the chosen fit.
    chosen = chosen | {
        "reg_covar": float(estimator.reg_covar),
        "max_iter": int(estimator.max_iter),
        "n_init": int(estimator.n_init),
    }
    refitted = refit and Z_valid is not None
    # The training rows are scored by the final fit only (a refit's rows are every row).
    train_scores = None if refitted else gmm.score_rows(estimator, Z_train) + log_jacobian
    heldout = gmm.score_rows(estimator, Z_valid) + log_jacobian if Z_valid is not None else None
    measured = gmm.to_params(estimator)  # the fit the held-out rows measure
    if refitted:
        estimator = weighted_gmm.fit(
            Z, rows.weights, fixes=fixes, collapse_reg_covar=settings["reg_covar"], **chosen
        )
        train_scores = gmm.score_rows(estimator, Z) + log_jacobian
    warnings = []
    if not estimator.converged_:
        warnings.append(
            f"EM did not converge in {estimator.max_iter} iterations even after retrying; "
            "try a larger --max-iter or --tol"
        )
    if gmm.collapsed(estimator, settings["reg_covar"]):
        warnings.append(
            "a component still sits on a few rows (its variance is the regularizer), so its "
            "density is a spike; try fewer --components or a larger --reg-covar"
        )
    return {
        "estimator": estimator,
        "params": gmm.to_params(estimator),
        "selection": selection,
        "fixes": fixes,
        "warnings": warnings,
        "train_log_density": train_scores,
        "heldout_log_density": heldout,
        "measured_params": measured,
        "refitted": refitted,
    }


def fit_kde(rows: Rows, settings: dict[str, Any]) -> dict[str, Any]:
    from gencli.density.families import kde
    from gencli.fitting.bandwidth_cv import select_bandwidth

    Z, Z_train, Z_valid, log_jacobian = rows.Z, rows.train, rows.valid, rows.log_jacobian
    refit, seed, on_candidate = rows.refit, rows.seed, rows.on_candidate
    train_weights = rows.train_weights

    kernel = settings["kernel"]
    bandwidth = settings["bandwidth"]
    rotation = kde.whitening(Z_train, train_weights) if settings.get("rotate") else None
    if settings.get("rotate") and rotation is None:
        raise FitError("the columns are (nearly) collinear: kernels cannot follow them")
    if bandwidth != "cv":  # refuse a bad one before loading
        space = Z_train if rotation is None else Z_train @ rotation
        kde.choose_bandwidth(space, bandwidth, kernel, train_weights)
    load_libraries("kde", settings)
    selection = None
    rule: str | None
    if bandwidth == "cv":
        if Z_train.shape[0] < settings["folds"]:
            raise FitError(
                f"--bandwidth cv with {settings['folds']} folds needs at least that many rows"
            )
        value, history = select_bandwidth(
            Z_train,
            kernel=kernel,
            folds=settings["folds"],
            seed=seed,
            log_jacobian=log_jacobian,
            on_candidate=on_candidate,
            weights=train_weights,
        )
        selection = {"criterion": "cv", "parameter": "bandwidth", "candidates": history}
        chosen: float | str = value
        rule = "cv"
    else:
        chosen = bandwidth
        rule = bandwidth if isinstance(bandwidth, str) else None
    params = kde.fit(
        Z_train, bandwidth=chosen, kernel=kernel, rotation=rotation, weights=train_weights
    )
    heldout = None
    if Z_valid is not None:
        heldout = kde.log_density(params, Z_valid, mode="fixed") + log_jacobian
    measured = dict(params)  # the fit the held-out rows measure
    refitted = refit and Z_valid is not None
    final_rows = Z_train
    if refitted:
        # A rule of thumb depends on n, so it is recomputed on every row (a rotation too).
        if rotation is not None:
            rotation = kde.whitening(Z, rows.weights)
            if rotation is None:
                raise FitError("the columns are (nearly) collinear: kernels cannot follow them")
        params = kde.fit(
            Z, bandwidth=chosen, kernel=kernel, rotation=rotation, weights=rows.weights
        )
        final_rows = Z
    scored = training_rows_scored(final_rows.shape[0], seed)
    train_scores = kde.log_density(params, final_rows[scored], mode="fixed") + log_jacobian
    params["bandwidth_rule"] = rule
    warnings = []
    if heldout is not None and not np.all(np.isfinite(heldout)):
        unreached = int(np.sum(~np.isfinite(heldout)))
        cure = "" if kernel == "gaussian" else " or the gaussian kernel"
        warnings.append(
            f"{unreached} held-out rows lie beyond every kernel (density 0, or below the "
            f"smallest double); a larger bandwidth{cure} avoids that"
        )
    return {
        "estimator": None,
        "params": params,
        "selection": selection,
        "fixes": [],
        "warnings": warnings,
        "train_log_density": train_scores,
        "heldout_log_density": heldout,
        "measured_params": measured,
        "refitted": refitted,
        "train_rows": final_rows.shape[0],
    }


def training_rows_scored(n_rows: int, seed: int | None) -> slice | np.ndarray:
    """The training rows whose log-density a kernel density's fit reports: all of them up
    to ``TRAIN_SCORED_ROWS``, else a seeded sample of that many (sorted).

    Scoring every training row against every kernel made ``fit --model kde`` grow as n^2
    (30k rows in 10-D: 51 s); a mean over 2,000 rows has a standard error of about
    sd / 45, which the summary states.
    """
    if n_rows <= TRAIN_SCORED_ROWS:
        return slice(None)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, TRAIN_SCORED_ROWS, replace=False))


def sample_mean_error(values: np.ndarray, population: int) -> float:
    """Standard error of the mean of ``values``, a sample without replacement from
    ``population`` rows (with the finite-population correction)."""
    k = values.size
    if k < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / np.sqrt(k) * np.sqrt(max(0.0, 1 - k / population)))


def load_libraries(model: str, settings: dict[str, Any]) -> None:
    """Import what the fit will use, refusing in one line if a memory limit forbids it."""
    from gencli import native

    modules = {"gmm": ["sklearn.mixture"], "kde": ["scipy.spatial"]}.get(
        model, ["sklearn.mixture", "scipy.spatial"]
    )
    if settings.get("bandwidth") == "cv":
        modules += ["scipy.optimize", "sklearn.model_selection"]
    if settings.get("kernel") == "cosine":
        modules.append("scipy.integrate")
    native.load(modules, f"fitting a {'mixture' if model == 'gmm' else 'kernel density'}")


def fit_shrunk(rows: Rows, settings: dict[str, Any]) -> dict[str, Any]:
    """One Gaussian with the OAS-shrunk covariance: fitted on the training rows, measured on
    the held-out ones and refitted on every row (its shrinkage recomputed there)."""
    from gencli.density.families import gmm
    from gencli.fitting import shrunk

    load_libraries("gmm", settings)
    reg_covar = float(settings["reg_covar"])
    estimator, amount = shrunk.fit(rows.train, reg_covar, rows.train_weights)
    heldout = None
    if rows.valid is not None:
        heldout = gmm.score_rows(estimator, rows.valid) + rows.log_jacobian
    measured = gmm.to_params(estimator)
    refitted = rows.refit and rows.valid is not None
    if refitted:
        estimator, amount = shrunk.fit(rows.Z, reg_covar, rows.weights)
    final_rows = rows.Z if refitted else rows.train
    return {
        "estimator": estimator,
        "params": gmm.to_params(estimator),
        "selection": None,
        "fixes": [f"covariance shrunk towards independent columns by {amount:.3f} (OAS)"],
        "warnings": [],
        "train_log_density": gmm.score_rows(estimator, final_rows) + rows.log_jacobian,
        "heldout_log_density": heldout,
        "measured_params": measured,
        "refitted": refitted,
    }
