"""Fitting a DensityModel: standardize, hold out rows, choose the model, measure, refit.

The order matters for honest numbers: candidates are fitted on the training rows only,
the chosen one is measured on the held-out rows it never saw, and only then is the final
model refitted on every row (unless ``refit=False``).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from gencli._version import __version__
from gencli.data import Table, as_table
from gencli.errors import FitError, ResourceError
from gencli.families import FAMILIES
from gencli.model import DensityModel, data_sha256, log_likelihood_summary
from gencli.preprocess import (
    refuse_constant_columns,
    refuse_small_training_split,
    refuse_unstandardized_extremes,
    split_rows,
    standardization,
    standardize,
)
from gencli.selection import Listener

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 1001)


def fit(
    data: Any,
    model: str = "gmm",
    *,
    columns: Sequence[str] | None = None,
    standardize: bool = True,
    components: int | str | Sequence[int] = "auto",
    covariance: str = "full",
    select: str = "bic",
    max_iter: int = 100,
    n_init: int = 1,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    bandwidth: float | str = "scott",
    kernel: str = "gaussian",
    folds: int = 5,
    validation: float = 0.2,
    refit: bool = True,
    seed: int | None = 0,
    jobs: int | None = None,
    on_candidate: Listener | None = None,
) -> DensityModel:
    """Fit a density to a table by maximum likelihood, choosing and checking the model.

    Args:
        data: a path (CSV, TSV, NPY, Parquet), a NumPy array, a DataFrame or a Table.
        model: 'gmm' (Gaussian mixture) or 'kde' (kernel density).
        columns: the columns to use (default all).
        standardize: fit on standardized columns (densities are still in data units).
        components: a number, a range '1..12', a list, or 'auto' (1..10), chosen by ``select``.
        covariance: 'full', 'diag', 'tied', 'spherical', or 'auto' to search all four.
        select: 'bic', 'aic' or 'heldout' (mean held-out log-likelihood).
        max_iter, n_init, tol, reg_covar: GaussianMixture options.
        bandwidth: KDE bandwidth, a positive number (standardized units when standardizing),
            'scott', 'silverman' or 'cv' (k-fold cross-validated log-likelihood).
        kernel: KDE kernel, one of scikit-learn's six.
        folds: folds for ``bandwidth='cv'``.
        validation: fraction of rows held out (seeded) to measure the chosen model.
        refit: refit the chosen model on every row after measuring it.
        seed: seeds every random step.
        jobs: threads for the candidate search, each fitting one candidate on one core
            (None or -1: one per core).
        on_candidate: called with each candidate's scores as it finishes.

    Returns:
        The fitted :class:`~gencli.model.DensityModel`; its ``metadata`` holds the
        selection table, the held-out figures and every repair applied.
    """
    if model not in FAMILIES:
        raise FitError(f"unknown model '{model}'; use one of {', '.join(FAMILIES)}")
    table = as_table(data, columns=columns)
    options = {
        "standardize": standardize,
        "components": components,
        "covariance": covariance,
        "select": select,
        "max_iter": max_iter,
        "n_init": n_init,
        "tol": tol,
        "reg_covar": reg_covar,
        "bandwidth": bandwidth,
        "kernel": kernel,
        "folds": folds,
        "validation": validation,
        "refit": refit,
        "seed": seed,
        "jobs": jobs,
        "on_candidate": on_candidate,
    }
    try:
        return _fit_table(table, model, options)
    except MemoryError:
        raise ResourceError(
            f"{table.source}: ran out of memory while fitting a {model} to {table.n_rows} rows "
            f"x {table.n_columns} columns; try fewer --columns, a sample of the rows"
            + (", fewer --components or --covariance diag" if model == "gmm" else "")
        ) from None


def _load_libraries(model: str, settings: dict[str, Any]) -> None:
    """Import what the fit will use, refusing in one line if a memory limit forbids it."""
    from gencli import native

    modules = ["sklearn", "sklearn.mixture"] if model == "gmm" else ["sklearn", "scipy.spatial"]
    if settings.get("bandwidth") == "cv":
        modules += ["scipy.optimize", "sklearn.model_selection"]
    if settings.get("kernel") == "cosine":
        modules.append("scipy.integrate")
    native.load(modules, f"fitting a {'mixture' if model == 'gmm' else 'kernel density'}")


def _fit_table(table: Table, model: str, options: dict[str, Any]) -> DensityModel:
    """:func:`fit` once the table is read (``options``: fit's keyword arguments by name)."""
    standardize_rows = bool(options["standardize"])
    validation, seed = options["validation"], options["seed"]
    X = table.values
    if table.n_rows < 2:
        raise FitError(f"{table.source}: has {table.n_rows} row; a density needs at least 2 rows")
    started = time.perf_counter()
    refuse_constant_columns(X, table.columns, table.source)
    if standardize_rows:
        shift, scale = standardization(X)
    else:
        refuse_unstandardized_extremes(X, table.columns, table.source, model, options["reg_covar"])
        shift, scale = np.zeros(table.n_columns), np.ones(table.n_columns)
    Z = standardize(X, shift, scale)
    log_jacobian = -float(np.sum(np.log(scale)))
    train_rows, valid_rows = split_rows(table.n_rows, validation, seed)
    need, what = _rows_needed(model, options)
    refuse_small_training_split(table.n_rows, len(train_rows), validation, need, what, table.source)
    Z_train = Z[train_rows] if valid_rows is not None else Z  # every row: no copy
    Z_valid = Z[valid_rows] if valid_rows is not None else None
    if valid_rows is not None:
        where = f" on the {len(train_rows)} training rows left by --validation {validation:g}"
        refuse_constant_columns(X[train_rows], table.columns, table.source, where)
    warnings: list[str] = []
    if validation > 0 and valid_rows is None:
        warnings.append(
            f"only {table.n_rows} rows: too few to hold out {validation:.0%}; "
            "the fit has no held-out check"
        )
    keys: tuple[str, ...]
    if model == "gmm":
        keys = ("components", "covariance", "select", "max_iter", "n_init", "tol", "reg_covar")
    else:
        keys = ("bandwidth", "kernel", "folds")
    settings: dict[str, Any] = {key: options[key] for key in keys}
    jobs, on_candidate, refit = options["jobs"], options["on_candidate"], options["refit"]
    try:
        rows = _Rows(Z, Z_train, Z_valid, log_jacobian, refit, seed, jobs, on_candidate)
        outcome = (_fit_gmm if model == "gmm" else _fit_kde)(rows, settings)
    except FitError as exc:
        raise FitError(f"{table.source}: {exc}") from None
    result = DensityModel(
        model,
        outcome["params"],
        table.columns,
        shift,
        scale,
        named_columns=table.named,
        estimator=outcome["estimator"],
    )
    train_scores = outcome["train_log_density"]
    if train_scores is not None and len(train_scores) == table.n_rows:
        log_density = np.asarray(train_scores)  # the final fit's own rows: no second E-step
    else:
        log_density = result.score_samples(X)
    if not np.all(np.isfinite(log_density)):
        raise FitError(
            f"{table.source}: the fitted density is zero or infinite at some training rows; "
            "try standardizing, a larger bandwidth or a larger --reg-covar"
        )
    summary = log_likelihood_summary(log_density, table.n_columns)
    validation_record = None
    quantiles = None
    if Z_valid is not None:
        heldout = outcome["heldout_log_density"]
        train_scores = outcome["train_log_density"]
        validation_record = _validation_record(
            validation, train_scores, heldout, refit and outcome["refitted"], table.n_columns
        )
        finite = heldout[np.isfinite(heldout)]
        if finite.size:
            quantiles = {
                "levels": QUANTILE_LEVELS.copy(),
                "values": np.quantile(finite, QUANTILE_LEVELS),
            }
    warnings.extend(outcome["warnings"])
    import sklearn

    result.metadata = {
        "gencli_version": __version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "source": table.source,
        "rows": table.n_rows,
        "data_sha256": data_sha256(X),
        "command_line": shlex.join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "standardized": standardize_rows,
        "train_mean_log_likelihood": summary["mean_log_likelihood"],
        "train_bits_per_dimension": summary["bits_per_dimension"],
        "validation": validation_record,
        "selection": outcome["selection"],
        "fixes": outcome["fixes"],
        "warnings": warnings,
        "heldout_log_density_quantiles": quantiles,
        "fit_seconds": time.perf_counter() - started,
    }
    return result


def _rows_needed(model: str, options: dict[str, Any]) -> tuple[int, str]:
    """The fewest training rows the model can be fitted to, and what needs them."""
    if model == "kde":
        if options["bandwidth"] == "cv":
            folds = int(options["folds"])
            return max(2, folds), f"--bandwidth cv with {folds} folds"
        return 2, "a kernel density"
    from gencli.selection import parse_components

    try:
        ks = parse_components(options["components"])
    except ValueError as exc:
        raise FitError(f"--components: {exc}") from None
    smallest = ks[0]
    if len(ks) == 1:
        return max(2, smallest), f"a {smallest}-component mixture"
    return max(2, smallest), f"the smallest mixture searched ({smallest} components)"


def _validation_record(
    fraction: float,
    train_scores: np.ndarray,
    heldout_scores: np.ndarray,
    refitted: bool,
    n_features: int,
) -> dict[str, Any]:
    train = log_likelihood_summary(train_scores, n_features)
    heldout = log_likelihood_summary(heldout_scores, n_features)
    return {
        "fraction": float(fraction),
        "train_rows": int(train_scores.size),
        "heldout_rows": int(heldout_scores.size),
        "refit": bool(refitted),
        "train_mean_log_likelihood": train["mean_log_likelihood"],
        "train_bits_per_dimension": train["bits_per_dimension"],
        "heldout_mean_log_likelihood": heldout["mean_log_likelihood"],
        "heldout_bits_per_dimension": heldout["bits_per_dimension"],
    }


@dataclass(frozen=True)
class _Rows:
    """What every family's fit needs: the rows, their split, and the run's settings."""

    Z: np.ndarray
    train: np.ndarray
    valid: np.ndarray | None
    log_jacobian: float
    refit: bool
    seed: int | None
    jobs: int | None
    on_candidate: Listener | None


def _fit_gmm(rows: _Rows, settings: dict[str, Any]) -> dict[str, Any]:
    from gencli.families import gmm
    from gencli.selection import parse_components

    try:
        ks = parse_components(settings["components"])
    except ValueError as exc:
        raise FitError(f"--components: {exc}") from None
    covariances = (
        list(gmm.COVARIANCE_TYPES) if settings["covariance"] == "auto" else [settings["covariance"]]
    )
    if len(ks) == 1:
        gmm.check_rows(rows.Z, ks[0])  # too few rows for K at all: say so first
    notes = _estimable_covariances(covariances, rows.train.shape)
    _check_search_memory(rows, ks, covariances)
    _load_libraries("gmm", settings)  # after the quick checks, which need none of them
    options = {key: settings[key] for key in ("max_iter", "n_init", "tol", "reg_covar")} | {
        "seed": rows.seed
    }
    with gmm.em_session():
        outcome = _fit_gmm_in_session(rows, settings, ks, covariances, options)
    outcome["warnings"] = notes + outcome["warnings"]
    return outcome


def _estimable_covariances(covariances: list[str], shape: tuple[int, int]) -> list[str]:
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


def _check_search_memory(rows: _Rows, ks: list[int], covariances: list[str]) -> None:
    """Refuse, before any fit starts, a search whose fits would not fit in memory together.

    Candidates run on up to ``jobs`` threads at once and the best so far is kept, so the
    peak is about (threads + 1) x the largest candidate.
    """
    from gencli.families import gmm
    from gencli.limits import check_memory
    from gencli.selection import worker_count

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
    rows: _Rows,
    settings: dict[str, Any],
    ks: list[int],
    covariances: list[str],
    options: dict[str, Any],
) -> dict[str, Any]:
    from gencli.families import gmm
    from gencli.selection import select_gmm

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
        estimator = gmm.fit(Z_train, fixes=fixes, **chosen)
    # Start the refit from the repaired settings of the chosen fit.
    chosen = chosen | {
        "reg_covar": float(estimator.reg_covar),
        "max_iter": int(estimator.max_iter),
        "n_init": int(estimator.n_init),
    }
    train_scores = estimator.score_samples(Z_train) + log_jacobian
    heldout = estimator.score_samples(Z_valid) + log_jacobian if Z_valid is not None else None
    refitted = refit and Z_valid is not None
    if refitted:
        estimator = gmm.fit(Z, fixes=fixes, collapse_reg_covar=settings["reg_covar"], **chosen)
        train_scores = estimator.score_samples(Z) + log_jacobian
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
        "refitted": refitted,
    }


def _fit_kde(rows: _Rows, settings: dict[str, Any]) -> dict[str, Any]:
    from gencli.families import kde
    from gencli.selection import select_bandwidth

    Z, Z_train, Z_valid, log_jacobian = rows.Z, rows.train, rows.valid, rows.log_jacobian
    refit, seed, on_candidate = rows.refit, rows.seed, rows.on_candidate

    kernel = settings["kernel"]
    bandwidth = settings["bandwidth"]
    if bandwidth != "cv":
        kde.choose_bandwidth(Z_train, bandwidth, kernel)  # refuse a bad one before loading
    _load_libraries("kde", settings)
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
        )
        selection = {"criterion": "cv", "parameter": "bandwidth", "candidates": history}
        chosen: float | str = value
        rule = "cv"
    else:
        chosen = bandwidth
        rule = bandwidth if isinstance(bandwidth, str) else None
    params = kde.fit(Z_train, bandwidth=chosen, kernel=kernel)
    heldout = None
    if Z_valid is not None:
        heldout = kde.log_density(params, Z_valid) + log_jacobian
    train_scores = kde.log_density(params, Z_train) + log_jacobian
    refitted = refit and Z_valid is not None
    if refitted:
        # A rule of thumb depends on n, so it is recomputed on every row.
        params = kde.fit(Z, bandwidth=chosen, kernel=kernel)
        train_scores = kde.log_density(params, Z) + log_jacobian
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
        "refitted": refitted,
    }


def bandwidth_in_data_units(model: DensityModel) -> dict[str, float] | None:
    """A KDE's bandwidth per column in the data's own units (bandwidth x column scale)."""
    if model.family != "kde":
        return None
    h = float(model.params["bandwidth"])
    return {c: h * float(s) for c, s in zip(model.columns, model.scale, strict=True)}
