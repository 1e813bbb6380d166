"""The table a ``--missing em`` fit starts from: rows with gaps kept, what cannot work refused.

Missing cells are latent in the mixture's EM (:mod:`gencli.fitting.missing_fit`): every
row with at least one value informs the fit. What needs every cell is refused in one line
before any work: a kernel density (its kernels sit on whole rows), discrete columns and
bounds (not combined with gaps yet). Rows with no value at all carry no information and are
dropped, and a column with no value, or one value only, cannot be modelled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from gencli.errors import FitError
from gencli.io.data import Table


def prepare(table: Table, model: str, options: dict[str, Any]) -> tuple[Table, str, list[str]]:
    """(the rows to fit, the family, notes for the user) for ``--missing em``."""
    source, notes = table.source, []
    if model == "kde":
        raise FitError(
            f"{source}: --missing em needs a Gaussian mixture (a kernel density has no "
            "latent cells); use --model gmm, or drop the rows with gaps first"
        )
    if model == "auto":
        notes.append(
            "--missing em: only Gaussian mixtures can treat missing cells as latent, so "
            "kernel densities are not among the candidates (--model gmm)"
        )
    if options.get("discrete") not in (None, "none", "warn"):
        raise FitError(f"{source}: --missing em and --discrete cannot be combined yet")
    options["discrete"] = "none"
    if options.get("bounds") not in (None, "none"):
        raise FitError(f"{source}: --missing em and --bounds cannot be combined yet")
    X = table.values
    if np.isinf(X).any():
        row, j = np.argwhere(np.isinf(X))[0]
        raise FitError(
            f"{source}: row {row + 1}, column '{table.columns[j]}' is infinite; only empty "
            "(missing) cells are modelled as latent"
        )
    observed = ~np.isnan(X)
    counts = observed.sum(axis=0)
    for j, name in enumerate(table.columns):
        values = X[observed[:, j], j]
        if counts[j] < 2 or values.min() == values.max():
            raise FitError(
                f"{source}: column '{name}' has {'no' if counts[j] == 0 else 'one'} distinct "
                "observed value, so no density can be fitted over it; leave it out with "
                "--columns"
            )
    empty = ~observed.any(axis=1)
    if empty.any():
        notes.append(f"--missing em: dropped {int(empty.sum())} rows with no value at all")
        table = replace(
            table,
            values=np.ascontiguousarray(X[~empty]),
            dropped_rows=table.dropped_rows + int(empty.sum()),
        )
    return table, "gmm", notes


def standardization(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column's observed cells."""
    return np.nanmean(X, axis=0), np.nanstd(X, axis=0)


def record(X: np.ndarray) -> dict[str, Any]:
    """What the model file says about the gaps it was fitted with."""
    missing = np.isnan(X)
    return {
        "method": "em",
        "cells_missing": int(missing.sum()),
        "fraction_missing": float(missing.mean()),
        "rows_with_gaps": int(missing.any(axis=1).sum()),
        "observed_cells_per_row": float((~missing).sum(axis=1).mean()),
    }
