"""Marginals and conditionals of a fitted density, in closed form.

A Gaussian mixture's marginal over some columns is the mixture of its components'
marginals; conditioned on values of other columns it is again a Gaussian mixture, each
component's conditional (mean shifted by the regression on the given columns, covariance
the Schur complement) reweighted by how likely the given values are under it. A kernel
density with the Gaussian kernel is a mixture of equal Gaussians, so the same holds kernel
by kernel: its conditional is a weighted kernel density (kernels that follow the columns'
correlations also move their centres). Both results are ordinary models in the data's own
units: they score, sample, save, load and inspect like any other.

Everything here works in the estimator's (standardized) space, where the model's parameters
live: a given value x_c becomes z_c = (x_c - shift_c) / scale_c, and the remaining columns
keep their shift and scale, so the result's densities are per unit of the remaining
columns. Whole-number (discrete) columns are boxes [k, k + 1): conditioning on one weights
each component or kernel by its probability of the box, which is exact where the density
factorizes over columns within a component (diagonal or spherical mixtures, kernels without
a rotation); the other combinations are refused.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gencli.errors import DataError

#: The model these functions take: a :class:`gencli.density.model.DensityModel` (not
#: imported: the model's methods call this module).
Model = Any

_LOG_2PI = math.log(2.0 * math.pi)


def pick_columns(model: Model, names: Sequence[str], what: str) -> list[int]:
    """Indices of ``names`` among the model's columns, refusing unknown or repeated names."""
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in model.columns]
    if unknown:
        raise DataError(
            f"{what}: the model has no column '{unknown[0]}'; its columns are "
            f"{', '.join(model.columns)}"
        )
    if len(set(names)) != len(names):
        raise DataError(f"{what}: a column is named twice ({', '.join(names)})")
    if not names:
        raise DataError(f"{what}: name at least one of the model's columns")
    return [model.columns.index(n) for n in names]


def marginal(model: Model, columns: Sequence[str]) -> tuple[dict[str, Any], list[int], dict]:
    """The density of ``columns`` alone (the others integrated out), in the model's order:
    its parameters, the columns kept and what was done (for the metadata)."""
    keep = sorted(pick_columns(model, columns, "marginal columns"))
    if model.family == "gmm":
        params = _gmm_marginal(model.params, keep)
    else:
        _require_gaussian(model, "a marginal (and scoring --given)")
        params = _kde_marginal(model.params, keep)
    return params, keep, {"marginal": [model.columns[j] for j in keep]}


def condition(model: Model, given: Mapping[str, float]) -> tuple[dict[str, Any], list[int], dict]:
    """The density of the other columns given the values in ``given`` (data units): its
    parameters, the columns kept and what was done."""
    fixed = pick_columns(model, list(given), "given columns")
    if len(fixed) == model.n_features:
        raise DataError("given columns: every column is given, so no density is left; leave one")
    values = np.array([_value(name, given[name]) for name in given], dtype=np.float64)
    order = np.argsort(fixed)
    fixed, values = [fixed[i] for i in order], values[order]
    rest = [j for j in range(model.n_features) if j not in fixed]
    z = _given_z(model, fixed, values)
    boxed = [i for i, j in enumerate(fixed) if j in model.discrete]
    for i in boxed:
        if values[i] != math.floor(values[i]):
            raise DataError(
                f"given columns: '{model.columns[fixed[i]]}' takes whole numbers only (it is "
                f"modelled as discrete); give a whole number, not {values[i]:g}"
            )
    z_hi = _given_upper(model, fixed, values, z)  # the boxes' upper edges (discrete ones)
    # Values far out overflow to a log-weight of -inf, which _normalized refuses in one line.
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if model.family == "gmm":
            params = _gmm_condition(model, fixed, rest, z, boxed, z_hi)
        else:
            _require_gaussian(model, "a conditional")
            params = _kde_condition(model, fixed, rest, z, boxed, z_hi)
    record = {"given": {model.columns[j]: float(v) for j, v in zip(fixed, values, strict=True)}}
    return params, rest, record


def _given_upper(model: Model, fixed: list[int], values: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Where a given discrete value's box [v, v + 1) ends, in z (others: unused)."""
    z_hi = z + 1.0 / model.scale[fixed]
    if model.bounds is not None and model.bounds.discrete:
        boxed = [i for i, j in enumerate(fixed) if j in model.discrete]
        z_hi[boxed] = _given_z(model, [fixed[i] for i in boxed], values[boxed] + 1.0, edge=True)
    return z_hi


def _given_z(model: Model, fixed: list[int], values: np.ndarray, edge: bool = False) -> np.ndarray:
    """Given values in the estimator's space (a bounded column's through its transform)."""
    if model.bounds is None:
        return (values - model.shift[fixed]) / model.scale[fixed]
    lower, upper = model.bounds.lower, model.bounds.upper
    for j, v in zip(fixed, values, strict=True):
        inside = (
            lower[j] <= v <= upper[j] - (0 if edge else 1)
            if j in model.bounds.discrete
            else lower[j] < v < upper[j]
        )
        if not inside:
            raise DataError(
                f"given columns: '{model.columns[j]}' = {v:g} lies outside the model's bounds "
                "for it, where the density is zero; give a value inside"
            )
    row = np.array(model.shift, dtype=np.float64)  # any value inside; replaced below
    row[model.bounds.columns] = model.bounds.inner_point()
    row[fixed] = values
    return model.to_z(row[None])[0, fixed]


# ----------------------------------------------------------------------------- mixtures


def _gmm_marginal(params: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    out = copy.deepcopy(params)
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    kind = params["covariance_type"]
    out["means"] = np.ascontiguousarray(np.asarray(params["means"])[:, keep])
    if kind == "full":
        out["covariances"] = np.ascontiguousarray(covariances[:, keep][:, :, keep])
    elif kind == "tied":
        out["covariances"] = np.ascontiguousarray(covariances[keep][:, keep])
    elif kind == "diag":
        out["covariances"] = np.ascontiguousarray(covariances[:, keep])
    return out


def _gmm_condition(
    model: Model,
    fixed: list[int],
    rest: list[int],
    z: np.ndarray,
    boxed: list[int],
    z_hi: np.ndarray,
) -> dict[str, Any]:
    params = model.params
    kind = params["covariance_type"]
    means = np.asarray(params["means"], dtype=np.float64)
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    k, d = means.shape
    if boxed and kind not in ("diag", "spherical"):
        raise DataError(
            f"given columns: conditioning on the whole-number column "
            f"'{model.columns[fixed[boxed[0]]]}' is exact only for a diag or spherical "
            f"mixture, and this one is {kind}; give continuous columns only, or refit with "
            "--covariance diag"
        )
    points = [i for i in range(len(fixed)) if i not in boxed]  # given as points, not boxes
    pf = [fixed[i] for i in points]
    log_w = np.log(np.asarray(params["weights"], dtype=np.float64))
    out = copy.deepcopy(params)
    if kind in ("diag", "spherical"):
        var = covariances if kind == "diag" else np.repeat(covariances[:, None], d, axis=1)
        for i in boxed:
            from gencli.density.families.boxes import log_interval_mass

            j, sd = fixed[i], np.sqrt(var[:, fixed[i]])
            log_w = log_w + log_interval_mass(
                (z[i] - means[:, j]) / sd, (z_hi[i] - means[:, j]) / sd
            )
        if pf:
            zc, v = z[points], var[:, pf]
            log_w = log_w - 0.5 * np.sum(
                (zc - means[:, pf]) ** 2 / v + np.log(v) + _LOG_2PI, axis=1
            )
        out["means"] = np.ascontiguousarray(means[:, rest])
        out["covariances"] = (
            np.ascontiguousarray(covariances[:, rest]) if kind == "diag" else covariances.copy()
        )
    else:
        stack = covariances if kind == "full" else covariances[None]
        zc = z[points]
        new_means = np.empty((k, len(rest)))
        new_covs = np.empty((stack.shape[0], len(rest), len(rest)))
        for c in range(stack.shape[0]):
            lower, gain, new_covs[c] = regression(stack[c], rest, pf)
            members = range(k) if kind == "tied" else [c]
            for m in members:
                offset = zc - means[m, pf]
                y = np.linalg.solve(lower, offset)
                log_w[m] += (
                    -0.5 * (y @ y) - np.sum(np.log(np.diag(lower))) - 0.5 * len(pf) * _LOG_2PI
                )
                new_means[m] = means[m, rest] + gain @ offset
        new_covs = 0.5 * (new_covs + np.transpose(new_covs, (0, 2, 1)))
        out["means"] = new_means
        out["covariances"] = new_covs if kind == "full" else new_covs[0]
    out["weights"] = _normalized(log_w, model)
    return out


# ----------------------------------------------------------------------------- kernel densities


def _kde_marginal(params: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    out = copy.deepcopy(params)
    out["points"] = np.ascontiguousarray(np.asarray(params["points"])[:, keep])
    if "rotation" in params:
        shape = kernel_shape(params)[np.ix_(keep, keep)]
        out["rotation"] = _rotation_for(shape)
    return out


def _kde_condition(
    model: Model,
    fixed: list[int],
    rest: list[int],
    z: np.ndarray,
    boxed: list[int],
    z_hi: np.ndarray,
) -> dict[str, Any]:
    params = model.params
    points = np.asarray(params["points"], dtype=np.float64)
    h = float(params["bandwidth"])
    log_w = np.zeros(points.shape[0])
    if "weights" in params:
        with np.errstate(divide="ignore"):
            log_w = np.log(np.asarray(params["weights"], dtype=np.float64))
    out = copy.deepcopy(params)
    at = [i for i in range(len(fixed)) if i not in boxed]
    pf = [fixed[i] for i in at]
    if "rotation" not in params:
        from gencli.density.families.boxes import log_interval_mass

        for i in boxed:
            j = fixed[i]
            log_w = log_w + log_interval_mass(
                (z[i] - points[:, j]) / h, (z_hi[i] - points[:, j]) / h
            )
        if pf:
            log_w = log_w - 0.5 * np.sum((z[at] - points[:, pf]) ** 2, axis=1) / (h * h)
        moved = points[:, rest]
    else:
        if boxed:
            raise DataError(
                f"given columns: conditioning on the whole-number column "
                f"'{model.columns[fixed[boxed[0]]]}' is exact only for kernels without a "
                "rotation; give continuous columns only"
            )
        shape = kernel_shape(params)  # the kernels' covariance is h^2 times this
        lower, gain, rest_shape = regression(shape, rest, pf)
        offsets = z[at] - points[:, pf]
        y = np.linalg.solve(lower, offsets.T)
        log_w = log_w - 0.5 * np.sum(y * y, axis=0) / (h * h)
        moved = points[:, rest] + offsets @ gain.T
        out["rotation"] = _rotation_for(rest_shape)
    weights = _normalized(log_w, model)
    live = weights > 0  # kernels whose weight underflowed add nothing, to double precision
    out["points"] = np.ascontiguousarray(moved[live])
    out["weights"] = weights[live] / weights[live].max()
    return out


def kernel_shape(params: dict[str, Any]) -> np.ndarray:
    """M with the kernels' covariance h^2 M in z: kernels round in y = z W have M = (W W^T)^-1
    (the identity when there is no rotation)."""
    if "rotation" not in params:
        return np.eye(np.asarray(params["points"]).shape[1])
    inverse = np.linalg.inv(np.asarray(params["rotation"], dtype=np.float64))
    return inverse.T @ inverse


def regression(s: np.ndarray, rest: Any, given: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a Gaussian with covariance ``s``: the Cholesky factor of S_gg, the regression of the
    ``rest`` columns on the ``given`` ones (S_rg S_gg^-1) and the covariance of the rest given
    them (the Schur complement S_rr - S_rg S_gg^-1 S_gr)."""
    lower = np.linalg.cholesky(s[np.ix_(given, given)])
    s_rg = s[np.ix_(rest, given)]
    gain = np.linalg.solve(lower.T, np.linalg.solve(lower, s_rg.T)).T
    return lower, gain, s[np.ix_(rest, rest)] - gain @ s_rg.T


def _rotation_for(shape: np.ndarray) -> np.ndarray:
    """W with (W W^T)^-1 = ``shape``: W = L^-T for shape = L L^T."""
    lower = np.linalg.cholesky(0.5 * (shape + shape.T))
    return np.ascontiguousarray(np.linalg.inv(lower).T)


# ----------------------------------------------------------------------------- shared


def _normalized(log_w: np.ndarray, model: Model) -> np.ndarray:
    log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    top = float(np.max(log_w))
    if not math.isfinite(top):
        raise DataError(
            "given columns: the given values lie where the model's density is zero (to double "
            "precision), so there is nothing to condition on; check the values"
        )
    weights = np.exp(log_w - top)
    return weights / weights.sum()


def _require_gaussian(model: Model, what: str) -> None:
    kernel = model.params.get("kernel")
    if kernel != "gaussian":
        raise DataError(
            f"{what} of a kernel density is exact only for the gaussian kernel; this model's "
            f"kernel is {kernel} (refit with --kernel gaussian, or use a mixture)"
        )


def _value(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"given columns: '{name}' = {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"given columns: '{name}' = {value!r} is not a finite number")
    return number
