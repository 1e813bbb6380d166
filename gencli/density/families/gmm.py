"""Gaussian mixtures: scikit-learn's GaussianMixture, saved and rebuilt from plain arrays."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gencli.density.families import gaussians
from gencli.density.families.gaussians import precision_factors
from gencli.errors import FitError, ModelFileError

COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")

MAX_RETRIES = 3


def check_rows(Z: np.ndarray, components: int) -> None:
    """Refuse a mixture that cannot be fitted to these rows, saying what would work."""
    n_rows = Z.shape[0]
    if n_rows < max(2, components):
        raise FitError(
            f"a {components}-component mixture needs at least {max(2, components)} rows but the "
            f"data has {n_rows}; use fewer --components or more rows"
        )
    n_distinct = count_distinct(Z, components)
    if n_distinct < components:
        raise FitError(
            f"a {components}-component mixture needs at least {components} distinct rows but the "
            f"data has {n_distinct}; use --components {n_distinct} or fewer"
        )


def count_distinct(Z: np.ndarray, limit: int) -> int:
    """The number of distinct rows, or ``limit`` if there are at least that many.

    Looks at a small head of the data first: sorting 200k rows to learn that there are
    more than 5 distinct ones would cost more than the check is worth.
    """
    head = Z[: 4 * limit + 64]
    found = len(np.unique(head, axis=0))
    if found >= limit:
        return limit
    if head.shape[0] == Z.shape[0]:
        return found
    return min(len(np.unique(Z, axis=0)), limit)


def fit_memory(n_rows: int, d: int, components: int, covariance: str) -> float:
    """Bytes one EM fit needs at its peak, about: scikit-learn holds the covariances, their
    Cholesky factors and the precisions (and a copy of the best while n_init runs), and
    works on a few row-by-column and row-by-component arrays at a time."""
    per_component = {"full": d * d, "tied": d * d / components, "diag": d, "spherical": 1}
    matrices = 5.0 * components * per_component[covariance]
    return 8.0 * (matrices + 4.0 * n_rows * d + 4.0 * n_rows * components)


def n_parameters(components: int, covariance: str, d: int) -> int:
    """Free parameters of a mixture: weights, means and covariances (for BIC and AIC)."""
    covariance_params = {
        "full": components * d * (d + 1) // 2,
        "diag": components * d,
        "tied": d * (d + 1) // 2,
        "spherical": components,
    }[covariance]
    return (components - 1) + components * d + covariance_params


@contextlib.contextmanager
def em_session() -> Iterator[None]:
    """The setting every EM fit runs in; enter it once, on the main thread.

    - One thread for scikit-learn's BLAS and OpenMP: on two cores their threads cost more
      than they give for the matrices EM works on (a 200k x 10, K=5 fit: 0.52 s instead
      of 0.62-0.76 s; K=1..10 on 20k x 5 rows in turn: 0.82 s instead of 1.6 s), and
      gencli runs candidates side by side instead (see :func:`one_thread_here`).
    - ConvergenceWarning silenced: :func:`fit` reads ``converged_`` and repairs or
      reports. Warning filters are process-wide, so this is set here, not per worker.
    """
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(), _thread_pools().limit(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@contextlib.contextmanager
def one_thread_here() -> Iterator[None]:
    """One OpenMP thread for k-means on this worker thread (OpenMP's setting is per
    thread; BLAS's is process-wide, set once by :func:`em_session`)."""
    with _thread_pools().select(user_api="openmp").limit(limits=1):  # restores OpenMP only
        yield


@functools.cache
def _thread_pools() -> Any:
    """threadpoolctl's view of the loaded BLAS and OpenMP libraries, found once (5 ms)."""
    import sklearn.mixture  # noqa: F401 - loads the OpenMP library k-means uses
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _fit_once(Z: np.ndarray, options: dict[str, Any]) -> Any:
    from sklearn.mixture import GaussianMixture

    estimator = GaussianMixture(
        n_components=options["components"],
        covariance_type=options["covariance"],
        max_iter=options["max_iter"],
        n_init=options["n_init"],
        tol=options["tol"],
        reg_covar=options["reg_covar"],
        random_state=options["seed"],
    )
    estimator.fit(Z)
    return estimator


_SCORE_BLOCK_ROWS = 1 << 16


def score_rows(estimator: Any, Z: np.ndarray, workers: int = 2) -> np.ndarray:
    """``estimator.score_samples(Z)`` in blocks of rows on ``workers`` threads.

    In :func:`em_session` BLAS runs on one thread, so scoring a million training rows
    after a fit used one core (5.7 s of a 45 s fit at 1M x 50); blocks also bound the
    temporaries to a block's rows instead of a copy of Z per component.
    """
    from gencli.density.families.kde_exact import run_in_threads

    out = np.empty(Z.shape[0])

    def run(start: int) -> None:
        stop = start + _SCORE_BLOCK_ROWS
        out[start:stop] = estimator.score_samples(Z[start:stop])

    run_in_threads(run, range(0, Z.shape[0], _SCORE_BLOCK_ROWS), workers)
    return out


def collapsed(estimator: Any, reg_covar: float | None = None) -> bool:
    """A component whose covariance has shrunk to the regularizer ``reg_covar`` (default:
    the estimator's own): a spike on a few rows, or on a column constant within it."""
    covariances = np.asarray(estimator.covariances_)
    floor = 10.0 * (estimator.reg_covar if reg_covar is None else reg_covar) + 1e-12
    if estimator.covariance_type in ("full", "tied"):
        smallest = np.linalg.eigvalsh(covariances).min()
    else:
        smallest = covariances.min()
    return bool(smallest <= floor)


def fit(
    Z: np.ndarray,
    *,
    components: int = 1,
    covariance: str = "full",
    max_iter: int = 100,
    n_init: int = 1,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int | None = 0,
    fixes: list[str] | None = None,
    collapse_reg_covar: float | None = None,
    repair_collapse: bool = True,
    unrepaired: list[Any] | None = None,
    fit_once: Callable[[np.ndarray, dict[str, Any]], Any] | None = None,
) -> Any:
    """Fit a GaussianMixture by EM, repairing fits that break instead of dumping them.

    A singular covariance is retried with a 10x larger ``reg_covar``; a component that
    collapses onto a few rows (its variance shrinks to the regularizer) is retried once
    with a 1000x larger ``reg_covar`` (at least 1e-3, in standardized units); EM that does
    not converge is retried with 5x more iterations. Each repair is described in one line
    appended to ``fixes``. ``collapse_reg_covar`` is the regularizer a collapse is judged
    against (default ``reg_covar``), so a refit from repaired settings is not repaired again;
    ``repair_collapse=False`` keeps a collapsed fit. The fit a collapse repair replaced is
    appended to ``unrepaired``, so a caller with held-out rows can keep the better of the two.
    ``fit_once`` replaces scikit-learn's EM (row weights: :mod:`gencli.fitting.weighted_gmm`).
    """
    check_rows(Z, components)
    fixes = fixes if fixes is not None else []
    base_reg = reg_covar if collapse_reg_covar is None else collapse_reg_covar
    options: dict[str, Any] = dict(components=components, covariance=covariance, tol=tol)
    options |= dict(max_iter=max_iter, n_init=n_init, reg_covar=reg_covar, seed=seed)
    label = f"K={components} {covariance}"
    for attempt in range(MAX_RETRIES + 1):
        last = attempt == MAX_RETRIES
        try:
            estimator = (fit_once or _fit_once)(Z, options)
        except ValueError as exc:
            if last:
                raise FitError(
                    f"the mixture ({label}) could not be fitted even with reg_covar="
                    f"{options['reg_covar']:g} ({exc}); use fewer --components"
                ) from exc
            new_reg = max(options["reg_covar"] * 10, 1e-6)
            fixes.append(
                f"{label}: a covariance was singular with reg_covar={options['reg_covar']:g}; "
                f"refitted with reg_covar={new_reg:g}"
            )
            options["reg_covar"] = new_reg
            continue
        if repair_collapse and not last and collapsed(estimator, base_reg):
            # Typical of integer-valued or rounded data: a column constant within a
            # component. A floor of 1e-3 (standardized) turns the spike into a narrow bump.
            repair_collapse = False  # once
            if unrepaired is not None:
                unrepaired.append(estimator)
            new_reg = max(options["reg_covar"] * 1000, 1e-3)
            fixes.append(
                f"{label}: a component collapsed onto a few rows (variance at the "
                f"regularizer); refitted with reg_covar={new_reg:g}"
            )
            options.update(reg_covar=new_reg)
            continue
        if not last and not estimator.converged_:
            new_iter = options["max_iter"] * 5
            fixes.append(
                f"{label}: EM had not converged after {options['max_iter']} iterations; "
                f"refitted with max_iter={new_iter}"
            )
            options["max_iter"] = new_iter
            continue
        break
    if not np.all(np.isfinite(estimator.means_)) or not np.all(np.isfinite(estimator.covariances_)):
        raise FitError("the mixture fit produced non-finite parameters; try a larger --reg-covar")
    return estimator


def to_params(estimator: Any) -> dict[str, Any]:
    """The fitted mixture as builtins and arrays."""
    return {
        "covariance_type": str(estimator.covariance_type),
        "weights": np.asarray(estimator.weights_, dtype=np.float64),
        "means": np.asarray(estimator.means_, dtype=np.float64),
        "covariances": np.asarray(estimator.covariances_, dtype=np.float64),
        "converged": bool(estimator.converged_),
        "n_iter": int(estimator.n_iter_),
        "lower_bound": float(estimator.lower_bound_),
        "max_iter": int(estimator.max_iter),
        "n_init": int(estimator.n_init),
        "tol": float(estimator.tol),
        "reg_covar": float(estimator.reg_covar),
    }


def from_params(params: dict[str, Any]) -> Any:
    """Rebuild a fitted GaussianMixture from :func:`to_params` output, without refitting."""
    from sklearn.mixture import GaussianMixture

    covariance_type = params["covariance_type"]
    if covariance_type not in COVARIANCE_TYPES:
        raise ModelFileError(f"unknown covariance type '{covariance_type}' in the model file")
    weights = np.asarray(params["weights"], dtype=np.float64)
    means = np.asarray(params["means"], dtype=np.float64)
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    _check_shapes(weights, means, covariances, covariance_type)
    estimator = GaussianMixture(
        n_components=len(weights),
        covariance_type=covariance_type,
        max_iter=params.get("max_iter", 100),
        n_init=params.get("n_init", 1),
        tol=params.get("tol", 1e-3),
        reg_covar=params.get("reg_covar", 1e-6),
    )
    prec_chol, _ = precision_factors(params)
    if covariance_type == "tied":
        prec_chol = prec_chol[0]
    estimator.weights_ = weights
    estimator.means_ = means
    estimator.covariances_ = covariances
    estimator.precisions_cholesky_ = prec_chol
    if covariance_type == "full":
        estimator.precisions_ = np.einsum("kij,klj->kil", prec_chol, prec_chol)
    elif covariance_type == "tied":
        estimator.precisions_ = prec_chol @ prec_chol.T
    else:
        estimator.precisions_ = prec_chol**2
    estimator.converged_ = params.get("converged", True)
    estimator.n_iter_ = params.get("n_iter", 0)
    estimator.lower_bound_ = params.get("lower_bound", float("nan"))
    estimator.n_features_in_ = means.shape[1]
    return estimator


def _check_shapes(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> None:
    k = weights.shape[0] if weights.ndim == 1 else -1
    d = means.shape[1] if means.ndim == 2 else -1
    expected = {
        "full": (k, d, d),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k,),
    }[covariance_type]
    if k < 1 or d < 1 or means.shape != (k, d) or covariances.shape != expected:
        raise ModelFileError(
            "the mixture parameters in the model file have inconsistent shapes "
            f"(weights {weights.shape}, means {means.shape}, covariances {covariances.shape})"
        )
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(covariances))):
        raise ModelFileError("the model file holds non-finite mixture parameters")
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-6):
        raise ModelFileError("the mixture weights in the model file do not sum to 1")


def sample(params: dict[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` rows in random order (scikit-learn's own sampler groups them by component)."""
    weights = np.asarray(params["weights"], dtype=np.float64)
    means = np.asarray(params["means"], dtype=np.float64)
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    covariance_type = params["covariance_type"]
    k, d = means.shape
    labels = rng.choice(k, size=n, p=weights / weights.sum())
    noise = rng.standard_normal((n, d))
    out = np.empty((n, d))
    tied_chol = np.linalg.cholesky(covariances) if covariance_type == "tied" else None
    for component in range(k):
        rows = labels == component
        eps = noise[rows]
        if covariance_type == "full":
            draw = eps @ np.linalg.cholesky(covariances[component]).T
        elif covariance_type == "tied":
            assert tied_chol is not None
            draw = eps @ tied_chol.T
        else:
            draw = eps * np.sqrt(covariances[component])
        out[rows] = means[component] + draw
    return out


# Scalars a mixture's parameters carry: (type check, what they must be, required).
_SCALARS: dict[str, tuple[Any, str, bool]] = {
    "converged": (lambda v: type(v) is bool, "true or false", True),
    "n_iter": (lambda v: type(v) is int and v >= 0, "a count", True),
    "lower_bound": (lambda v: type(v) in (int, float), "a number", False),
    "max_iter": (lambda v: type(v) is int and v >= 1, "a positive count", False),
    "n_init": (lambda v: type(v) is int and v >= 1, "a positive count", False),
    "tol": (lambda v: type(v) in (int, float) and 0 <= v < float("inf"), "a number >= 0", False),
    "reg_covar": (
        lambda v: type(v) in (int, float) and 0 <= v < float("inf"),
        "a number >= 0",
        False,
    ),
}


def check_params(params: dict[str, Any], n_features: int | None = None) -> None:
    """Refuse parameters that cannot describe a mixture over ``n_features`` columns, before
    anything computes with them (numpy only, no scikit-learn): every array's shape is
    checked against K and d first, then the values."""
    covariance_type = params.get("covariance_type")
    if type(covariance_type) is not str or covariance_type not in COVARIANCE_TYPES:
        shown = covariance_type if type(covariance_type) is str else type(covariance_type)
        raise ModelFileError(f"unknown covariance type {str(shown)[:40]!r} in the model file")
    for key in ("weights", "means", "covariances"):
        value = params.get(key)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
            raise ModelFileError(f"the mixture's {key} in the model file are not numbers")
    for key, (valid, what, required) in _SCALARS.items():
        if key not in params:
            if required:
                raise ModelFileError(f"the mixture's {key} is missing from the model file")
        elif not valid(params[key]):
            raise ModelFileError(f"the mixture's {key} in the model file is not {what}")
    means = params["means"]
    if n_features is not None and (means.ndim != 2 or means.shape[1] != n_features):
        raise ModelFileError(
            f"the mixture's means in the model file have shape {means.shape}, not "
            f"(components, {n_features}) for its {n_features} columns"
        )
    _check_shapes(params["weights"], means, params["covariances"], covariance_type)
    precision_factors(params)


def log_density(
    params: dict[str, Any], Z: np.ndarray, *, mode: str = "fast", cache: dict | None = None
) -> np.ndarray:
    """log-density of each row of Z under the mixture (``mode`` is a kernel density's)."""
    return gaussians.log_density(params, Z, cache)


def describe(params: dict[str, Any]) -> dict[str, Any]:
    """A short, printable summary of the fitted mixture."""
    return {
        "components": len(params["weights"]),
        "covariance": params["covariance_type"],
        "converged": params["converged"],
        "iterations": params["n_iter"],
    }
