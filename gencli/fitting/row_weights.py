"""Row weights for a fit (``--weights COLUMN``): read, checked, and described.

The fit maximizes sum_i w_i log p(x_i) (see :mod:`gencli.fitting.family_fits`): whole-number
weights count rows as repeated, and any positive weights (survey or importance weights)
weigh them; sample-size rules use Kish's effective size (sum w)^2 / sum w^2. The weight
column is not modelled. Rows of weight 0 carry nothing and are dropped (and counted).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from gencli.errors import FitError
from gencli.io.data import Table


def take(table: Table, weights: Any) -> tuple[Table, np.ndarray | None, list[str]]:
    """(the table without the weight column and rows of weight 0, the weights, notes)."""
    if weights is None:
        return table, None, []
    source = table.source
    if isinstance(weights, str):
        if weights not in table.columns:
            raise FitError(
                f"--weights: no column '{weights}' in {source}; its columns are "
                f"{', '.join(table.columns)}"
            )
        j = table.columns.index(weights)
        w = np.array(table.values[:, j], dtype=np.float64)
        keep = [c for c in range(table.n_columns) if c != j]
        if not keep:
            raise FitError(f"--weights: {source} has no column left to model besides '{weights}'")
        table = replace(
            table,
            values=np.ascontiguousarray(table.values[:, keep]),
            columns=[table.columns[c] for c in keep],
        )
        what = f"column '{weights}'"
    else:
        w = np.array(weights, dtype=np.float64).reshape(-1)
        if w.shape != (table.n_rows,):
            raise FitError(f"weights: {w.size} weights for {table.n_rows} rows of {source}")
        what = "the weights"
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise FitError(
            f"{source}: row {row + 1}: {what} holds {w[row]:g}; weights must be finite and "
            "non-negative"
        )
    zero = w == 0
    notes = []
    if zero.all():
        raise FitError(f"{source}: every weight in {what} is 0; nothing is left to fit")
    if zero.any():
        notes.append(f"--weights: dropped {int(zero.sum())} rows of weight 0")
        table = replace(
            table,
            values=np.ascontiguousarray(table.values[~zero]),
            dropped_rows=table.dropped_rows + int(zero.sum()),
        )
        w = w[~zero]
    unit = w / np.max(w)
    effective = float(np.sum(unit) ** 2 / np.sum(unit * unit))
    if effective < max(2.0, 0.01 * w.size):
        notes.append(
            f"--weights: a few rows carry almost all the weight (effective rows {effective:.3g} "
            f"of {w.size}): the fit is then a fit to those rows"
        )
    return table, w, notes


def rescaled(w: np.ndarray) -> np.ndarray:
    """The weights with the largest at 1: only their ratios matter, and on their own scale
    tiny ones (importance weights exp(log w)) would meet EM's +10 eps counts while huge ones
    overflow the sums."""
    return w / np.max(w)


def record(w: np.ndarray, column: Any) -> dict[str, Any]:
    """What the model file says about the weights it was fitted with (as given)."""
    unit = w / w.max()
    return {
        "column": column if isinstance(column, str) else None,
        "total": float(np.sum(w)),
        "effective_rows": float(np.sum(unit) ** 2 / np.sum(unit * unit)),
        "least_relative": float(w.min() / w.max()),
    }


def standardization(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and standard deviation (ddof 0) of each column: whole-number weights
    give those of the repeated rows, so the whole fit is the repeated rows' fit."""
    p = w / np.sum(w)
    shift = p @ X
    return shift, np.sqrt(p @ (X - shift) ** 2)


def mean(values: np.ndarray, w: np.ndarray | None) -> float:
    """The (weighted) mean of per-row figures."""
    if w is None:
        return float(np.mean(values))
    return float(np.sum(values * w) / np.sum(w))
