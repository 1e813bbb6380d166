"""DensityModel: preprocessing + a fitted scikit-learn density + metadata.

The estimator works in standardized space z = (x - shift) / scale. Every density this
class reports is in the data's own units: log p_x(x) = log p_z(z) - sum(log(scale)),
so a fitted model integrates to 1 over the original space.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from gencli.data import Table, as_table
from gencli.errors import DataError, ModelFileError
from gencli.families import FAMILIES

_LOG2 = math.log(2.0)


class DensityModel:
    """A fitted density over named columns, in the data's own units.

    Attributes:
        family: 'gmm' or 'kde'.
        columns: the training column names, in order.
        named_columns: False when the names were made up (x0, x1, ...), so new data is
            matched by position rather than by name.
        shift, scale: the standardization (zeros and ones when turned off).
        params: the family's fitted parameters as builtins and arrays (estimator space).
        metadata: versions, rows, data hash, command line, time, training log-likelihood.
    """

    def __init__(
        self,
        family: str,
        params: dict[str, Any],
        columns: Sequence[str],
        shift: np.ndarray,
        scale: np.ndarray,
        *,
        named_columns: bool = True,
        metadata: dict[str, Any] | None = None,
        estimator: Any = None,
    ) -> None:
        if family not in FAMILIES:
            raise ModelFileError(f"unknown model family '{family}'")
        self.family = family
        self.params = params
        self.columns = list(columns)
        self.named_columns = named_columns
        self.shift = np.asarray(shift, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.metadata = dict(metadata or {})
        self._estimator = estimator

    # ------------------------------------------------------------------ structure

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def estimator(self) -> Any:
        """The fitted scikit-learn estimator (rebuilt from the parameters after loading)."""
        if self._estimator is None:
            self._estimator = _family_module(self.family).from_params(self.params)
        return self._estimator

    @property
    def log_jacobian(self) -> float:
        """log |dz/dx|: what standardizing adds to every log-density."""
        return -float(np.sum(np.log(self.scale)))

    def describe(self) -> dict[str, Any]:
        """The family's parameters in a short printable form."""
        return dict(_family_module(self.family).describe(self.params))

    # ------------------------------------------------------------------ densities

    def _to_z(self, X: np.ndarray) -> np.ndarray:
        return (X - self.shift) / self.scale

    def _check_width(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(-1, 1) if self.n_features == 1 else X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(
                f"expected {self.n_features} columns ({', '.join(self.columns)}) "
                f"but got {X.shape[1] if X.ndim == 2 else X.shape}"
            )
        return X

    def score_samples(self, X: Any) -> np.ndarray:
        """Natural log of the density at each row, in the data's own units.

        ``X`` is an array with the training columns in order, or a DataFrame / Table,
        whose columns are matched by name.
        """
        if hasattr(X, "columns") and not isinstance(X, np.ndarray):
            X = self.align(as_table(X)).values
        X = self._check_width(X)
        family = _family_module(self.family)
        return family.score_samples(self.estimator, self._to_z(X)) + self.log_jacobian

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` rows from the fitted density, in the data's own units."""
        if n < 0:
            raise ValueError(f"n must be >= 0 but got {n}")
        rng = np.random.default_rng(seed)
        Z = _family_module(self.family).sample(self.params, int(n), rng)
        return Z * self.scale + self.shift

    def align(self, table: Table) -> Table:
        """Reorder ``table``'s columns to the model's: by name when both have names, else by
        position. Extra named columns are dropped (see :func:`extra_columns`)."""
        if self.named_columns and table.named:
            index = {c: i for i, c in enumerate(table.columns)}
            missing = [c for c in self.columns if c not in index]
            if missing:
                quoted = ", ".join(f"'{m}'" for m in missing)
                raise DataError(
                    f"{table.source}: no column {quoted}, which the model was trained on; "
                    f"the model needs columns {', '.join(self.columns)}"
                )
            picks = [index[c] for c in self.columns]
            return Table(table.values[:, picks], list(self.columns), True, table.source)
        if table.n_columns != self.n_features:
            raise DataError(
                f"{table.source}: has {table.n_columns} columns but the model was trained on "
                f"{self.n_features} ({', '.join(self.columns)}); give data with the same columns"
            )
        return Table(table.values, list(self.columns), table.named, table.source)

    def extra_columns(self, table: Table) -> list[str]:
        """Named columns of ``table`` the model does not use (they are ignored)."""
        if not (self.named_columns and table.named):
            return []
        return [c for c in table.columns if c not in set(self.columns)]

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically (plain data only; see :mod:`gencli.modelfile`)."""
        from gencli import modelfile

        modelfile.save(self, path)

    def __repr__(self) -> str:
        return f"DensityModel(family={self.family!r}, columns={self.columns!r})"


def _family_module(family: str) -> Any:
    if family == "gmm":
        from gencli.families import gmm

        return gmm
    if family == "kde":
        from gencli.families import kde

        return kde
    raise ModelFileError(f"unknown model family '{family}'")


def log_likelihood_summary(log_density: np.ndarray, n_features: int) -> dict[str, float]:
    """Mean and total log-likelihood (nats) and bits per dimension of scored rows."""
    mean = float(np.mean(log_density)) if log_density.size else float("nan")
    return {
        "rows": int(log_density.size),
        "mean_log_likelihood": mean,
        "total_log_likelihood": float(np.sum(log_density)),
        "bits_per_dimension": -mean / (n_features * _LOG2),
    }


def data_sha256(values: np.ndarray) -> str:
    """SHA-256 of the training values as little-endian float64, row-major (format-independent)."""
    array = np.ascontiguousarray(values, dtype="<f8")
    return hashlib.sha256(array.tobytes()).hexdigest()
