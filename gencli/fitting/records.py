"""A fit as plain data: what the summary, ``--json`` and the report show, from either engine."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gencli.density.model import DensityModel
from gencli.io.table import Table


def fit_record(
    fitted: DensityModel,
    source: str,
    rows: int,
    dropped_rows: int,
    output: str | os.PathLike[str],
    seconds: float,
    summary: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything worth knowing about a fit, as plain data (see :func:`fit_file`);
    ``summary`` is :func:`data_summary` of the rows as read, before the fit."""
    from gencli.density.modelinfo import bandwidth_in_data_units

    meta = fitted.metadata
    discrete = meta.get("discrete_columns", [])
    return {
        "model_file": str(output),
        "family": fitted.family,
        "parameters": fitted.describe(),
        "source": source,
        "rows": rows,
        "dropped_rows": dropped_rows,
        "columns": fitted.columns,
        "standardized": meta["standardized"],
        "discrete_columns": list(meta.get("discrete_columns", [])),
        "bounds": meta.get("bounds"),
        "missing": meta.get("missing"),
        "weights": meta.get("weights"),
        "mean_log_likelihood": meta["train_mean_log_likelihood"],
        "bits_per_dimension": meta["train_bits_per_dimension"],
        "train_estimate": meta.get("train_estimate"),
        "validation": meta.get("validation"),
        "selection": meta.get("selection"),
        "fixes": list(meta.get("fixes", [])),
        "warnings": list(meta.get("warnings", [])),
        "data_summary": [
            column | {"kind": "discrete" if column["name"] in discrete else "continuous"}
            for column in summary
        ],
        "seconds": seconds,
        "data_sha256": meta["data_sha256"],
        "versions": {
            "gencli": meta["gencli_version"],
            "sklearn": meta["sklearn_version"],
            "numpy": meta["numpy_version"],
            "python": meta["python_version"],
        },
        "bandwidth_data_units": bandwidth_in_data_units(fitted),
    }


def data_summary(table: Table) -> list[dict[str, Any]]:
    """Each column's name, mean, standard deviation, least and largest value."""
    from gencli.density.preprocess import column_moments

    X = table.values
    if np.isnan(X).any():  # --missing em: each column's observed cells
        return [
            {
                "name": name,
                "mean": float(np.nanmean(column)),
                "std": float(np.nanstd(column)),
                "min": float(np.nanmin(column)),
                "max": float(np.nanmax(column)),
            }
            for name, column in zip(table.columns, X.T, strict=True)
        ]
    return [
        {
            "name": name,
            "mean": float(mean),
            "std": float(std),
            "min": float(low),
            "max": float(high),
        }
        for name, mean, std, low, high in zip(
            table.columns,
            *column_moments(X),  # finite for values near 1e308, whose sum overflows
            X.min(axis=0),
            X.max(axis=0),
            strict=True,
        )
    ]
