"""What is in a model file, without refitting and without running anything in it.

:func:`inspect_model` always returns a report, even for a file that is not a model at all:
the format and its version, the family, the columns, the parameters in the data's own units,
the training metadata, and a verdict ``sound`` with the ``problems`` found. The file is read
by :func:`gencli.density.plainpickle.read_plain`, the one reader every command uses, so
nothing in it can run and the work it takes is bounded by its size, before anything here
walks it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.errors import GencliError

if TYPE_CHECKING:
    from gencli.density.model import DensityModel

__all__ = ["inspect_model", "parameters_in_data_units"]

_SELF_CHECK_ROWS = 64


def component_variances(params: dict[str, Any]) -> np.ndarray:
    """Each mixture component's variance per column (components x columns), in the
    standardized units the parameters are in, for any covariance type."""
    covariance_type = str(params["covariance_type"])
    covariances = np.asarray(params["covariances"], dtype=np.float64)
    k, d = np.asarray(params["means"]).shape
    if covariance_type == "full":
        return np.diagonal(covariances, axis1=1, axis2=2)
    if covariance_type == "tied":
        return np.tile(np.diag(covariances), (k, 1))
    if covariance_type == "diag":
        return covariances
    return np.repeat(covariances.reshape(-1, 1), d, axis=1)


def parameters_in_data_units(model: DensityModel) -> dict[str, Any]:
    """The family's parameters in the data's own units (the model stores standardized ones).

    GMM: weights, means (``means * scale + shift``) and each component's standard deviation
    per column (``sqrt(diagonal of its covariance) * scale``). On a bounded column the mean
    is mapped back through the inverse transform (the component's median there) and the
    standard deviation stays in the transform's units (log or logit). KDE: kernel, bandwidth in
    standardized units and per column in data units (``bandwidth * scale``, or the square
    root of the bandwidth matrix's diagonal for kernels rotated to the data's correlations),
    training points.
    """
    params = model.params
    scale, shift = model.scale, model.shift
    if model.family == "gmm":
        covariance_type = str(params["covariance_type"])
        weights = np.asarray(params["weights"], dtype=np.float64)
        means = np.asarray(params["means"], dtype=np.float64)
        k = means.shape[0]
        variances = component_variances(params)
        centres = means * scale + shift
        if model.bounds is not None:  # a bounded column's centre maps back as a median
            centres = model.bounds.inverse(centres)
        return {
            "covariance_type": covariance_type,
            "components": int(k),
            "weights": weights.tolist(),
            "means": centres.tolist(),
            "standard_deviations": (np.sqrt(variances) * scale).tolist(),
            "converged": bool(params.get("converged", True)),
            "iterations": int(params.get("n_iter", 0)),
        }
    from gencli.density.families.kde import bandwidth_matrix

    matrix = bandwidth_matrix(params, scale)
    per_column = np.sqrt(np.diag(matrix))
    out = {
        "kernel": str(params["kernel"]),
        "bandwidth": float(params["bandwidth"]),
        "bandwidth_rule": params.get("bandwidth_rule"),
        "bandwidth_data_units": dict(zip(model.columns, per_column.tolist(), strict=True)),
        "training_points": int(np.asarray(params["points"]).shape[0]),
        "rotated": "rotation" in params,
    }
    if "rotation" in params:  # the kernels follow the data's correlations
        out["bandwidth_matrix_data_units"] = matrix.tolist()
    return out


def _empty_report(path: str) -> dict[str, Any]:
    return {
        "file": path,
        "format": None,
        "format_version": None,
        "family": None,
        "columns": None,
        "named_columns": None,
        "standardization": None,
        "description": None,
        "parameters": None,
        "metadata": None,
        "sound": False,
        "problems": [],
        "notes": [],
    }


def inspect_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe the model file at ``path`` and say whether it is sound; never raises for a
    bad file.

    Sound means the file loads through :func:`gencli.load` (every field checked, the
    estimator rebuilt) and a quick self-check passes: rows sampled from the model get
    finite scores. A file from a newer gencli is described as far as it can be read.
    """
    report = _empty_report(str(path))
    try:
        _inspect(Path(path), report)
    except Exception as exc:  # a report, never a crash: whatever the file holds
        report["problems"].append(
            f"could not be inspected ({type(exc).__name__}: {exc}); refit the model"
        )
    report["sound"] = not report["problems"]
    return report


def _inspect(file: Path, report: dict[str, Any]) -> None:
    from gencli.density import modelfile
    from gencli.density.plainpickle import read_plain

    problems: list[str] = report["problems"]
    name = str(file)
    try:
        os.lstat(file)
    except FileNotFoundError:
        problems.append("no such file; check the path")
        return
    except OSError:
        pass  # a loop, a file in the path, no permission: read_model_file says which
    try:
        # The one reader every command uses: regular files only, work bounded by the size.
        payload = modelfile.read_model_file(file)
        problem = _not_a_pickle(payload)
        if problem is not None:
            problems.append(problem)
            return
        plain = read_plain(payload, name)
    except GencliError as exc:
        problems.append(_without_name(str(exc), name))
        return
    if (
        type(plain) is not dict
        or type(plain.get("format")) is not str
        or plain.get("format") != modelfile.FORMAT_NAME
    ):
        problems.append("not a gencli model file (a pickle, but not one written by gencli)")
        return
    report["format"] = modelfile.FORMAT_NAME
    version = plain.get("format_version")
    report["format_version"] = version if type(version) is int else None
    _describe_raw(plain, report)
    if type(version) is int and version > modelfile.FORMAT_VERSION:
        problems.append(
            f"written by a newer gencli (format {version}; this gencli reads up to format "
            f"{modelfile.FORMAT_VERSION}); upgrade gencli: pip install --upgrade gencli"
        )
        return
    try:
        model = modelfile.from_plain(plain, name)
    except GencliError as exc:
        problems.append(_without_name(str(exc), name))
        return
    _describe_model(model, report)
    _self_check(model, report)


def _not_a_pickle(payload: bytes) -> str | None:
    """What the bytes are at a glance when they cannot be a model file at all, or None."""
    if not payload:
        return "is empty: not a gencli model file"
    if payload[:1] != b"\x80":
        text = b"\x00" not in payload[:4096]
        kind = "text; is it a data file?" if text else "binary, but not a pickle"
        return f"not a gencli model file (it is {kind})"
    return None


def _without_name(message: str, name: str) -> str:
    """A library message without its leading 'file: ' (the report names the file)."""
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _describe_raw(plain: dict[str, Any], report: dict[str, Any]) -> None:
    """What can be read from the raw dictionary without trusting it."""
    from gencli.io.jsonable import to_jsonable

    family = plain.get("family")
    report["family"] = family if isinstance(family, str) else None
    columns = plain.get("columns")
    if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
        report["columns"] = list(columns)
    named = plain.get("named_columns")
    report["named_columns"] = named if isinstance(named, bool) else None
    metadata = plain.get("metadata")
    if isinstance(metadata, dict):
        report["metadata"] = to_jsonable(metadata)


def _describe_model(model: DensityModel, report: dict[str, Any]) -> None:
    from gencli.io.jsonable import to_jsonable

    report["family"] = model.family
    report["columns"] = list(model.columns)
    report["named_columns"] = bool(model.named_columns)
    report["standardization"] = {
        "standardized": bool(model.metadata.get("standardized", True)),
        "shift": model.shift.tolist(),
        "scale": model.scale.tolist(),
    }
    report["description"] = to_jsonable(model.describe())
    report["bounds"] = None if model.bounds is None else model.bounds.describe(model.columns)
    report["parameters"] = to_jsonable(parameters_in_data_units(model))
    report["metadata"] = to_jsonable(model.metadata)
    if model.family == "gmm" and not model.params.get("converged", True):
        report["notes"].append(
            f"EM did not converge in {model.params.get('n_iter', '?')} iterations; the fit may "
            "improve with a larger --max-iter"
        )


def _self_check(model: DensityModel, report: dict[str, Any]) -> None:
    try:
        rows = model.sample(_SELF_CHECK_ROWS, seed=0)
        if not np.all(np.isfinite(rows)):
            report["problems"].append("self-check failed: sampled rows are not finite; refit")
            return
        scores = model.score_samples(rows)
    except Exception as exc:
        report["problems"].append(
            f"self-check failed: sampling and scoring raised {type(exc).__name__}: {exc}"
        )
        return
    if not np.all(np.isfinite(scores)):
        bad = int(np.sum(~np.isfinite(scores)))
        report["problems"].append(
            f"self-check failed: {bad} of {_SELF_CHECK_ROWS} rows sampled from the model have a "
            "non-finite log-density; refit the model"
        )


def bandwidth_in_data_units(model: DensityModel) -> dict[str, float] | None:
    """A KDE's bandwidth per column in the data's own units (bandwidth x column scale)."""
    if model.family != "kde":
        return None
    from gencli.density.families.kde import bandwidth_matrix

    per_column = np.sqrt(np.diag(bandwidth_matrix(model.params, model.scale)))
    return {c: float(b) for c, b in zip(model.columns, per_column, strict=True)}
