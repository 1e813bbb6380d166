"""Fitting a DensityModel: standardize, hold out rows, choose the model, measure, refit.

The order matters for honest numbers: candidates are fitted on the training rows only,
the chosen one is measured on the held-out rows it never saw, and only then is the final
model refitted on every row (unless ``refit=False``).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from gencli._version import __version__
from gencli.audience import python_call, recorded_command
from gencli.density.bounds import resolve as resolve_bounds
from gencli.density.discrete import dequantize, discrete_columns, unbounded_warning
from gencli.density.families import FAMILIES
from gencli.density.model import DensityModel
from gencli.density.modelparts import data_sha256, log_likelihood_summary
from gencli.density.preprocess import (
    refuse_constant_columns,
    refuse_small_training_split,
    refuse_tails_past_the_double_range,
    refuse_unstandardized_extremes,
    split_rows,
    standardization,
    standardize,
)
from gencli.errors import FitError, ResourceError, warn
from gencli.fitting import fit_options, missing_rows, row_weights, support_choice
from gencli.fitting.family_fits import (
    Rows,
    fit_gmm,
    fit_kde,
    sample_mean_error,
    training_rows_scored,
)
from gencli.fitting.fit_rules import (
    check_discrete_support,
    one_bandwidth_note,
    rows_needed,
    sklearn_version,
    validation_record,
)
from gencli.fitting.selection import Listener
from gencli.io.data import Table, as_table

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 1001)


def fit(
    data: Any,
    model: str = "auto",
    *,
    columns: Sequence[str] | None = None,
    standardize: bool = True,
    components: int | str | Sequence[int] | None = None,
    covariance: str | None = None,
    select: str | None = None,
    max_iter: int | None = None,
    n_init: int | None = None,
    tol: float | None = None,
    reg_covar: float | None = None,
    bandwidth: float | str | None = None,
    kernel: str | None = None,
    discrete: str | Sequence[str] | None = None,
    bounds: str | Sequence[str] | dict[str, Any] | None = None,
    missing: str | None = None,
    weights: str | Any = None,
    folds: int = 5,
    validation: float = 0.2,
    refit: bool = True,
    seed: int | None = 0,
    jobs: int | None = None,
    on_candidate: Listener | None = None,
    overwrite_data: bool = False,
) -> DensityModel:
    """Fit a density to a table by maximum likelihood, choosing and checking the model.

    Args:
        data: a path (CSV, TSV, NPY, Parquet), a NumPy array, a DataFrame or a Table.
        model: 'auto' (mixtures and kernel densities compared by cross-validated held-out
            log-likelihood, see :mod:`gencli.fitting.auto`), 'gmm' (Gaussian mixture) or
            'kde' (kernel density). Under 'auto', an option of one family only
            (``components``, ``covariance``, ``select``, ``max_iter``, ``n_init``, ``tol``,
            ``reg_covar``; or ``bandwidth``, ``kernel``) picks that family.
        columns: the columns to use (default all).
        standardize: fit on standardized columns (densities are still in data units).
        components: a number, a range '1..12', a list, or 'auto' (1..10), chosen by ``select``.
        covariance: 'full' (the default for 'gmm'), 'diag', 'tied', 'spherical', or 'auto' to
            search all four (the default for 'auto').
        select: 'bic' (default), 'aic' or 'heldout' (mean held-out log-likelihood); 'gmm' only.
        max_iter, n_init, tol, reg_covar: GaussianMixture options (100, 1, 1e-3, 1e-6).
        bandwidth: KDE bandwidth, a positive number (standardized units when standardizing),
            'scott' (the default for 'kde'), 'silverman' or 'cv' (k-fold cross-validated
            log-likelihood, the default for 'auto').
        kernel: KDE kernel, one of scikit-learn's six (default gaussian).
        folds: folds for the cross-validation of 'auto' and of ``bandwidth='cv'``.
        discrete: columns of whole numbers to model as discrete (fitted to x + U[0, 1),
            scored as the log-probability of their value, sampled as whole numbers): 'auto'
            finds those with at most 20 distinct values, or a list of names; 'warn' models
            none but names them in a warning; 'none' models none silently. Default: 'auto'
            for model 'auto', 'warn' for 'gmm' and 'kde' (their behaviour before).
            See :mod:`gencli.density.discrete`.
        bounds: the support of bounded columns: 'income=0:,share=0:1' (a list of such items,
            or {column: (lower, upper)} with None for an open side), and/or 'auto' (every
            column whose values are all positive, and every non-negative whole-number
            column, is bounded below at 0), or 'none'. The density is fitted through log /
            logit transforms and stays a density in the data's units over the support;
            samples stay inside. See :mod:`gencli.density.bounds`. Default (None): 'none',
            except under model 'auto', which fits both 'none' and 'auto' when some column
            could be bounded and keeps the better by cross-validation
            (:mod:`gencli.fitting.support_choice`).
        missing: None (rows with an empty cell are refused; drop them when reading) or
            'em': a Gaussian mixture fitted by EM with the empty cells latent, so rows with
            gaps still inform the fit (:mod:`gencli.fitting.missing_fit`); its figures are
            densities of each row's observed cells.
        weights: row weights: the name of a column of ``data`` (not modelled) or one
            non-negative number per row. The fit maximizes sum w log p, so whole-number
            weights count rows as repeated; rules that depend on the number of rows use
            Kish's effective size; rows of weight 0 are dropped. Every figure is weighted.
        validation: fraction of rows held out (seeded) to measure the chosen model.
        refit: refit the chosen model on every row after measuring it.
        seed: seeds every random step.
        jobs: threads for the candidate search, each fitting one candidate on one core
            (None or -1: one per core).
        on_candidate: called with each candidate's scores as it finishes.
        overwrite_data: the caller hands the table's values over: they may be standardized
            in place, saving a copy of the data (a path's table is always gencli's own).

    Returns:
        The fitted :class:`~gencli.density.model.DensityModel`; its ``metadata`` holds the
        selection table, the held-out figures and every repair applied. From Python, the
        repairs and notes are also issued as :class:`gencli.GencliWarning` warnings.
    """
    arguments = dict(locals())  # recorded as the call that made the model
    given = {
        "components": components,
        "covariance": covariance,
        "select": select,
        "max_iter": max_iter,
        "n_init": n_init,
        "tol": tol,
        "reg_covar": reg_covar,
        "bandwidth": bandwidth,
        "kernel": kernel,
    }
    fit_options.check(given | {"folds": folds, "standardize": standardize, "refit": refit,
                               "seed": seed})  # fmt: skip
    model, settings = resolve_model(model, {k: v for k, v in given.items() if v is not None})
    if missing not in (None, "em"):
        raise FitError(f"missing must be None or 'em', not {missing!r}")
    if isinstance(weights, str) and columns is not None and weights not in columns:
        columns = [*columns, weights]  # read with the columns, then taken out of the table
    table = as_table(data, columns=columns, allow_missing=missing == "em")
    options = settings | {
        "standardize": standardize,
        "folds": folds,
        "discrete": discrete,
        "bounds": bounds,
        "missing": missing,
        "weights": weights,
        "validation": validation,
        "refit": refit,
        "seed": seed,
        "jobs": jobs,
        "on_candidate": on_candidate,
        "command_line": recorded_command(lambda: python_call("gencli.fit", fit, arguments)),
        # A table gencli read itself is its own to overwrite.
        "overwrite_data": overwrite_data or isinstance(data, (str, os.PathLike)),
    }
    try:
        result = _fit_table(table, model, options)
    except MemoryError:
        raise ResourceError(
            f"{table.source}: ran out of memory while fitting a {model} to {table.n_rows} rows "
            f"x {table.n_columns} columns; try fewer --columns, a sample of the rows"
            + (", fewer --components or --covariance diag" if model != "kde" else "")
        ) from None
    warn(result.metadata["fixes"], "fixed: ")  # the command line prints them instead
    warn(result.metadata["warnings"])
    return result


#: Options that belong to one family, and the values each family uses when they are not given.
GMM_DEFAULTS: dict[str, Any] = {
    "components": "auto",
    "covariance": "full",
    "select": "bic",
    "max_iter": 100,
    "n_init": 1,
    "tol": 1e-3,
    "reg_covar": 1e-6,
}
KDE_DEFAULTS: dict[str, Any] = {"bandwidth": "scott", "kernel": "gaussian"}
MODELS = ("auto", *FAMILIES)


def resolve_model(model: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The family to fit and every family option's value. Under 'auto' an option of one
    family only picks that family (``components=3`` asks for a mixture); options of both
    are a contradiction. 'auto' searches every covariance type and a CV bandwidth."""
    if model not in MODELS:
        raise FitError(f"unknown model '{model}'; use one of {', '.join(MODELS)}")
    gmm_given = sorted(k for k in given if k in GMM_DEFAULTS)
    kde_given = sorted(k for k in given if k in KDE_DEFAULTS)
    if model == "auto" and gmm_given and kde_given:
        raise FitError(
            f"options of both families were given ({gmm_given[0]} is for mixtures, "
            f"{kde_given[0]} for kernel densities); choose one with model='gmm' or 'kde'"
        )
    if model == "auto" and gmm_given:
        model = "gmm"
    elif model == "auto" and kde_given:
        model = "kde"
    # With the family named, the other family's options are ignored, as they always were
    # from Python (the command line refuses them as a usage error).
    settings = GMM_DEFAULTS | KDE_DEFAULTS
    if model == "auto":
        settings = settings | {"covariance": "auto", "bandwidth": "cv"}
    return model, settings | given


def _fit_table(table: Table, model: str, options: dict[str, Any]) -> DensityModel:
    """:func:`fit` once the table is read (``options``: fit's keyword arguments by name), on
    both supports under ``--model auto`` (:mod:`gencli.fitting.support_choice`)."""
    if support_choice.applies(table, model, options):
        return support_choice.fit_both(table, model, options, _fit_one)
    return _fit_one(table, model, options)


def _fit_one(table: Table, model: str, options: dict[str, Any]) -> DensityModel:
    """One fit of the table with the options as they are."""
    standardize_rows = bool(options["standardize"])
    validation, seed = options["validation"], options["seed"]
    table, w, early_warnings = row_weights.take(table, options.get("weights"))
    weighed = None if w is None else row_weights.record(w, options.get("weights"))  # as given
    w = None if w is None else row_weights.rescaled(w)
    missing_em = options.get("missing") == "em"
    if missing_em and w is not None:
        raise FitError(f"{table.source}: --missing em and --weights cannot be combined yet")
    if missing_em:  # rows with gaps kept: EM treats their empty cells as latent
        table, model, early_warnings = missing_rows.prepare(table, model, options)
        w = None
    X = table.values
    if table.n_rows < 2:
        raise FitError(f"{table.source}: has {table.n_rows} row; a density needs at least 2 rows")
    started = time.perf_counter()
    refuse_constant_columns(X, table.columns, table.source)
    if options["discrete"] is None:
        options["discrete"] = "auto" if model == "auto" else "warn"
    discrete = discrete_columns(X, table.columns, options["discrete"], table.source)
    if options["discrete"] == "warn":
        found, discrete = discrete, []
        if found:
            early_warnings.append(unbounded_warning([table.columns[j] for j in found]))
    check_discrete_support(model, options, discrete, table.columns)
    bounded, notes = resolve_bounds(options["bounds"], X, table.columns, discrete, table.source)
    early_warnings.extend(notes)
    X_raw, X = X, dequantize(X, discrete, seed)  # fitted to x + U[0, 1) on discrete columns
    jacobian = None
    if bounded is not None:  # fitted to log / logit of the bounded columns; the candidates
        # score t(x + U), so their figures take the Jacobian of every bounded column
        jacobian = bounded.log_jacobian(X, discrete_too=True)
        X = bounded.forward(X)
    if standardize_rows:
        if w is not None:
            shift, scale = row_weights.standardization(X, w)
        else:
            shift, scale = (missing_rows.standardization if missing_em else standardization)(X)
        refuse_tails_past_the_double_range(X, scale, table.columns, table.source)
    else:
        refuse_unstandardized_extremes(X, table.columns, table.source, model, options["reg_covar"])
        shift, scale = np.zeros(table.n_columns), np.ones(table.n_columns)
    log_jacobian = -float(np.sum(np.log(scale)))
    train_rows, valid_rows = split_rows(table.n_rows, validation, seed)
    if jacobian is not None:  # the transforms' mean Jacobian on the training rows: the
        # candidates' figures then read in data units (the final ones are scored exactly)
        own = jacobian if valid_rows is None else jacobian[train_rows]
        weight = None if w is None else (w if valid_rows is None else w[train_rows])
        log_jacobian += row_weights.mean(own, weight)
    need, what = rows_needed(model, options)
    refuse_small_training_split(table.n_rows, len(train_rows), validation, need, what, table.source)
    if valid_rows is not None:
        where = f" on the {len(train_rows)} training rows left by --validation {validation:g}"
        refuse_constant_columns(X_raw[train_rows], table.columns, table.source, where)
    digest = data_sha256(X_raw)
    # The raw rows are needed after the fit only to score them again (discrete boxes, or a
    # fit that did not score every row); otherwise a caller that hands its rows over has
    # them standardized in place: one copy of the data fewer (400 MB at 1M x 50).
    rescore = bool(discrete) or bounded is not None or w is not None  # see below
    in_place = bool(options.get("overwrite_data")) and not rescore
    in_place = in_place and (bool(options["refit"]) or validation == 0)
    Z = standardize(X, shift, scale, in_place=in_place)
    Z_train = Z[train_rows] if valid_rows is not None else Z  # every row: no copy
    Z_valid = Z[valid_rows] if valid_rows is not None else None
    warnings: list[str] = early_warnings
    if validation > 0 and valid_rows is None:
        warnings.append(
            f"only {table.n_rows} rows: too few to hold out {validation:.0%}; "
            "the fit has no held-out check"
        )
    if not standardize_rows and model != "gmm":
        warnings.extend(one_bandwidth_note(X, table.columns))
    keys: tuple[str, ...] = (*GMM_DEFAULTS, *KDE_DEFAULTS, "folds")
    if model == "gmm":
        keys = tuple(GMM_DEFAULTS)
    elif model == "kde":
        keys = (*KDE_DEFAULTS, "folds")
    settings: dict[str, Any] = {key: options[key] for key in keys}
    settings["discrete_count"] = len(discrete)
    jobs, on_candidate, refit = options["jobs"], options["on_candidate"], options["refit"]
    try:
        rows = Rows(Z, Z_train, Z_valid, log_jacobian, refit, seed, jobs, on_candidate)
        if w is not None:
            parts = (w[train_rows], w[valid_rows]) if valid_rows is not None else (w, None)
            rows = replace(rows, weights=w, train_weights=parts[0], valid_weights=parts[1])
        if missing_em:
            from gencli.fitting.missing_fit import fit_gmm_missing

            outcome = fit_gmm_missing(rows, settings | {"log_scale": np.log(scale)})
        elif model == "auto":
            from gencli.fitting.auto import fit_auto

            outcome = fit_auto(rows, settings)
        else:
            outcome = (fit_gmm if model == "gmm" else fit_kde)(rows, settings)
    except FitError as exc:
        raise FitError(f"{table.source}: {exc}") from None
    result = DensityModel(
        outcome.get("family", model),
        outcome["params"],
        table.columns,
        shift,
        scale,
        named_columns=table.named,
        estimator=outcome["estimator"],
        discrete=discrete,
        bounds=bounded,
    )
    train_scores = outcome["train_log_density"]
    # A kernel density reports its training likelihood on a sample of the rows (an n^2
    # sum otherwise): the estimate and its standard error are recorded and shown.
    sampled = outcome.get("train_rows", 0) > len(train_scores)
    every = np.arange(table.n_rows)
    weigh: list[Any] = [None, None, None]  # the weights of the rows each figure is over
    if rescore:  # the fit's own scores are densities of x + U[0, 1) or of the transformed
        # columns (score the rows as the model does: boxes, Jacobian), or unweighted
        X = X_raw
        # A sample is drawn from the rows the figure describes: the final fit's own.
        own = every if outcome["refitted"] or valid_rows is None or not sampled else train_rows
        own = own[training_rows_scored(len(own), seed)] if sampled else own
        log_density = result.score_samples(X[own])
        measured = DensityModel(
            result.family,
            outcome["measured_params"],
            table.columns,
            shift,
            scale,
            discrete=discrete,
            bounds=bounded,
        )
        train_part = every if valid_rows is None else train_rows
        if sampled:
            train_part = train_part[training_rows_scored(len(train_part), seed)]
        outcome["train_log_density"] = measured.score_samples(X[train_part])
        if valid_rows is not None:
            outcome["heldout_log_density"] = measured.score_samples(X[valid_rows])
        if w is not None:
            weigh = [w[own], w[train_part], None if valid_rows is None else w[valid_rows]]
    elif train_scores is not None and (
        sampled or len(train_scores) == table.n_rows or missing_em
    ):  # (a --missing em fit's rows are scored by their observed cells, by that fit)
        log_density = np.asarray(train_scores)  # the final fit's own rows: no second E-step
    else:
        if in_place:  # cannot happen: an in-place fit scores every row (see in_place above)
            raise AssertionError("the raw rows were standardized in place but are needed")
        log_density = result.score_samples(X)
    if not np.all(np.isfinite(log_density)):
        raise FitError(
            f"{table.source}: the fitted density is zero or infinite at some training rows; "
            "try standardizing, a larger bandwidth or a larger --reg-covar"
        )
    # Bits per dimension divide by the cells a row's density is over (all, without gaps).
    dims = missing_rows.record(X_raw)["observed_cells_per_row"] if missing_em else table.n_columns
    summary = log_likelihood_summary(log_density, dims, weigh[0])
    estimate = None
    if sampled:
        estimate = {
            "rows_scored": int(log_density.size),
            "rows": int(outcome["train_rows"]),
            "standard_error": sample_mean_error(log_density, int(outcome["train_rows"])),
        }
    held_record = None
    quantiles = None
    if Z_valid is not None:
        heldout = outcome["heldout_log_density"]
        train_scores = outcome["train_log_density"]
        held_record = validation_record(
            validation,
            train_scores,
            heldout,
            refit and outcome["refitted"],
            dims,
            (weigh[1], weigh[2]),
        )
        if sampled:  # the rows the sample stands for (discrete: the measured fit's)
            held_record["train_rows"] = len(train_rows) if rescore else outcome["train_rows"]
        finite = heldout[np.isfinite(heldout)]
        if finite.size:
            quantiles = {
                "levels": QUANTILE_LEVELS.copy(),
                "values": np.quantile(finite, QUANTILE_LEVELS),
            }
    warnings.extend(outcome["warnings"])
    result.metadata = {
        "gencli_version": __version__,
        "sklearn_version": sklearn_version(),
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "source": table.source,
        "rows": table.n_rows,
        "data_sha256": digest,
        "command_line": options.get("command_line") or shlex.join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "standardized": standardize_rows,
        "discrete_columns": [table.columns[j] for j in discrete],
        "bounds": None if bounded is None else bounded.describe(table.columns),
        "missing": missing_rows.record(X_raw) if missing_em else None,
        "weights": weighed,
        "train_mean_log_likelihood": summary["mean_log_likelihood"],
        "train_bits_per_dimension": summary["bits_per_dimension"],
        "train_estimate": estimate,
        "validation": held_record,
        "selection": outcome["selection"],
        "fixes": outcome["fixes"],
        "warnings": warnings,
        "heldout_log_density_quantiles": quantiles,
        "fit_seconds": time.perf_counter() - started,
    }
    return result
