"""The numbers between a table and an estimator: column moments, standardizing, the split.

Every step here keeps working across the whole float64 range. Values near 1e300 overflow
when squared or summed, and differences across -1.7e308..1.7e308 overflow too, so moments
are taken in units of each column's largest magnitude and differences that overflow are
taken in halves (exact: halving a double only moves its exponent). Constant columns are
found by comparing values (max == min), never by a floating-point spread that happens to
round to zero (or not: 4.2 repeated has a standard deviation of 8.9e-16).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gencli.errors import FitError

# Within this range of magnitudes, sums of squares of a million values cannot overflow or
# underflow, so moments are taken directly (and bit-for-bit as numpy gives them).
_PLAIN_MAGNITUDE = (1e-100, 1e100)
# Largest magnitude an estimator works on without standardizing: squares and sums of
# squares stay finite (the model-file loader holds KDE points to the same bound).
MAX_UNSTANDARDIZED = 1e100
MIN_HELDOUT_ROWS = 1
# Standard deviations beyond the data that a fitted density still puts mass (a Gaussian
# puts 1e-15 of it past 8): past the largest double there, draws would overflow.
_TAIL_REACH = 8.0


def column_magnitudes(X: np.ndarray) -> np.ndarray:
    """Each column's largest absolute value (1 for an all-zero or empty column)."""
    if X.shape[0] == 0:
        return np.ones(X.shape[1])
    magnitude = np.maximum(X.max(axis=0), -X.min(axis=0))
    magnitude[~(magnitude > 0)] = 1.0
    return magnitude


def column_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0) of each column, finite for any finite values.

    Columns beyond 1e+-100 are divided by their largest magnitude first: the variance of
    values near 1e300 overflows, that of values near 1e-300 underflows, and the sum of
    values near 1.7e308 overflows although their mean is a double.
    """
    magnitude = column_magnitudes(X)
    plain = (magnitude > _PLAIN_MAGNITUDE[0]) & (magnitude < _PLAIN_MAGNITUDE[1])
    if np.all(plain):
        return X.mean(axis=0), X.std(axis=0)
    unit = X / magnitude
    return unit.mean(axis=0) * magnitude, unit.std(axis=0) * magnitude


def constant_columns(X: np.ndarray) -> np.ndarray:
    """Mask of the columns whose values are all equal (0.0 and -0.0 count as equal; missing
    cells are left out)."""
    if X.shape[0] == 0:
        return np.zeros(X.shape[1], dtype=bool)
    return np.asarray(np.fmax.reduce(X, axis=0) == np.fmin.reduce(X, axis=0))


def refuse_constant_columns(
    X: np.ndarray, columns: Sequence[str], source: str, where: str = ""
) -> None:
    """FitError naming every constant column: a density over one is infinite (a spike).

    ``where`` says which rows were looked at when they are not all the rows.
    """
    constant = [c for c, flat in zip(columns, constant_columns(X), strict=True) if flat]
    if not constant:
        return
    quoted = ", ".join(f"'{c}'" for c in constant[:10])
    if len(constant) > 10:
        quoted += f" and {len(constant) - 10} more"
    if len(constant) == 1:
        value = float(X[0, list(columns).index(constant[0])])
        subject = f"column {quoted} is constant{where} (every value is {value:g})"
    else:
        subject = f"columns {quoted} are constant{where}"
    also = " or use --validation 0" if where else ""
    raise FitError(
        f"{source}: {subject}, so a density over it would be an infinitely narrow spike; "
        f"leave it out with --columns{also}"
    )


def standardization(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) for each column: its mean and standard deviation (call after the
    constant-column check, so every scale is positive)."""
    shift, scale = column_moments(X)
    scale = np.where(scale > 0, scale, np.finfo(np.float64).smallest_normal)
    return shift, scale


def refuse_tails_past_the_double_range(
    X: np.ndarray, scale: np.ndarray, columns: Sequence[str], source: str
) -> None:
    """FitError for a column whose fitted density would reach past 1.8e308.

    Data spanning -1.7e308..1.7e308 has a standard deviation near 1e308: the density is
    fine, but its draws, plots and grids fall beyond the largest double.
    """
    largest = float(np.finfo(np.float64).max)
    shrink = 0.5 / _TAIL_REACH  # magnitude + 8 sd, compared in units that cannot overflow
    reach = column_magnitudes(X) * shrink + scale * 0.5
    for j in np.flatnonzero(reach > largest * shrink):
        low, high = float(X[:, j].min()), float(X[:, j].max())
        raise FitError(
            f"{source}: column '{columns[int(j)]}' spans {low:.3g} to {high:.3g}, so a density "
            f"fitted to it reaches past the largest double ({largest:.2g}), where it cannot "
            "be sampled or plotted; divide the column by 1e10 (say) and fit again"
        )


def standardize(
    X: np.ndarray, shift: np.ndarray, scale: np.ndarray, *, in_place: bool = False
) -> np.ndarray:
    """(X - shift) / scale, exact where the difference overflows (it is taken in halves).

    ``in_place`` writes it over X (the caller gives X up) unless a difference could
    overflow, which needs X's values to redo it in halves.
    """
    if in_place and X.flags.writeable and X.dtype == np.float64 and X.size:
        bound = max(abs(float(X.max())), abs(float(X.min())), float(np.max(np.abs(shift))))
        if bound < 8e307:  # |x - shift| < 1.6e308: no difference overflows
            X -= shift
            X /= scale
            return X
    with np.errstate(over="ignore", invalid="ignore"):
        Z = np.subtract(X, shift)  # in place from here: one n x d array, not two at once
        Z /= scale
    if np.all(np.isfinite(Z)):
        return Z
    wrong = ~np.isfinite(Z) & np.isfinite(X)
    if np.any(wrong):
        rows, cols = np.nonzero(wrong)
        half = (X[rows, cols] * 0.5 - shift[cols] * 0.5) / scale[cols]
        with np.errstate(over="ignore"):
            Z[rows, cols] = half * 2.0  # inf only where the true value is beyond any double
    return Z


def unstandardize(Z: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    """Z * scale + shift, or None when a value lies beyond the largest double."""
    with np.errstate(over="ignore", invalid="ignore"):
        X = Z * scale + shift
    if np.all(np.isfinite(X)):
        return X
    wrong = ~np.isfinite(X) & np.isfinite(Z)
    rows, cols = np.nonzero(wrong)
    with np.errstate(over="ignore", invalid="ignore"):
        X[rows, cols] = (Z[rows, cols] * (scale[cols] * 0.5) + shift[cols] * 0.5) * 2.0
    return X if np.all(np.isfinite(X[wrong])) else None


def refuse_unstandardized_extremes(
    X: np.ndarray, columns: Sequence[str], source: str, model: str, reg_covar: float
) -> None:
    """Refuse data an estimator cannot take in its own units (``--no-standardize``).

    Values past 1e100 overflow once squared; and a mixture's regularizer ``reg_covar`` is
    added to every variance, so a column that varies far less than sqrt(reg_covar) would
    be fitted as the regularizer's spread, not its own.
    """
    magnitude = column_magnitudes(X)
    for name, largest in zip(columns, magnitude, strict=True):
        if largest > MAX_UNSTANDARDIZED:
            raise FitError(
                f"{source}: column '{name}' has values as large as {largest:.3g}, too large to "
                f"fit without standardizing (beyond {MAX_UNSTANDARDIZED:g} their squares "
                "overflow); drop --no-standardize"
            )
    if model != "gmm":
        return
    _, std = column_moments(X)
    for name, spread in zip(columns, std, strict=True):
        if spread * spread < reg_covar:
            raise FitError(
                f"{source}: column '{name}' varies by only {spread:.3g} (standard deviation), "
                f"so --reg-covar {reg_covar:g} added to its variance would swamp it; drop "
                "--no-standardize (or give a --reg-covar well below its variance)"
            )


def split_rows(
    n_rows: int, fraction: float, seed: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Training and held-out row indices (seeded); no held-out rows when there are too few."""
    if not 0.0 <= fraction < 1.0:
        raise FitError(f"--validation must be at least 0 and below 1 but got {fraction}")
    n_valid = round(fraction * n_rows)
    if fraction == 0.0 or n_valid < MIN_HELDOUT_ROWS:
        return np.arange(n_rows), None
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def refuse_small_training_split(
    n_rows: int, n_train: int, fraction: float, need: int, what: str, source: str
) -> None:
    """FitError when holding out rows leaves fewer training rows than the model needs.

    ``need`` rows for ``what`` ("a 3-component mixture"); the message says how many rows
    each side gets and which --validation would leave enough.
    """
    if n_train >= need or n_rows < need:  # too few rows even unsplit: the model says so
        return
    n_valid = n_rows - n_train
    largest = (n_rows - need) / n_rows  # the largest fraction that still leaves `need`
    fit_fraction = np.floor(min(largest, 0.5) * 100) / 100
    if fit_fraction > 0 and round(fit_fraction * n_rows) >= 1:
        hint = f"use --validation {fit_fraction:g} or less, or --validation 0"
    else:
        hint = "use --validation 0"
    raise FitError(
        f"{source}: --validation {fraction:g} holds out {n_valid} of the {n_rows} rows and "
        f"leaves {n_train} to fit on, but {what} needs at least {need}; {hint}"
    )
