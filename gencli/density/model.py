"""DensityModel: preprocessing + a fitted scikit-learn density + metadata.

The estimator works in standardized space z = (x - shift) / scale. Every density this
class reports is in the data's own units: log p_x(x) = log p_z(z) - sum(log(scale)),
so a fitted model integrates to 1 over the original space.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from gencli.density import fileformat
from gencli.density.families import FAMILIES
from gencli.density.modelparts import (
    check_sample_count,
    derived_metadata,
    family_module,
    sample_entropy,
)
from gencli.density.preprocess import standardize, unstandardize
from gencli.errors import DataError, GencliError, ModelFileError, ResourceError
from gencli.io.data import Table, as_table

SCORE_MODES = ("fast", "exact", "approx")
SAMPLE_CHUNK_ROWS = 1 << 16
# Numbers drawn at a time: SAMPLE_CHUNK_ROWS rows up to 64 columns, fewer rows beyond
# (65,536 rows of a 10,000-column model would be 5 GB a chunk).
SAMPLE_CHUNK_NUMBERS = SAMPLE_CHUNK_ROWS * 64


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
        discrete: indices of the columns that take integer values only. The model was fitted
            to x + U[0, 1) on them; a row scores the log-probability of its integer box on
            those columns (times the density on the others), and samples are whole numbers.
        bounds: the support of bounded columns (:class:`gencli.density.bounds.Bounds`), or
            None. The estimator sees them through a log or logit transform applied before
            standardizing (:meth:`to_z`); scores add its log-Jacobian, samples stay inside.
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
        discrete: Sequence[int] = (),
        bounds: Any = None,
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
        self.discrete = sorted(int(j) for j in discrete)
        self.bounds = bounds
        self._cache: dict[str, Any] = {}  # precomputed factors and trees for scoring

    # ------------------------------------------------------------------ structure

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def standardized_estimator(self) -> Any:
        """The fitted scikit-learn estimator, in standardized units, not the data's.

        It sees rows as :meth:`to_z` makes them (bounded columns transformed, then
        ``(x - shift) / scale``; a kernel density rotated to the data's correlations works
        in ``to_z(X) @ params["rotation"]``), so its ``score_samples`` on raw rows is not
        the data's density: use :meth:`score_samples`, which adds the Jacobian. Rebuilt from
        the parameters after loading.
        """
        if self._estimator is None:
            self._estimator = family_module(self.family).from_params(self.params)
        return self._estimator

    @property
    def estimator(self) -> Any:
        """:attr:`standardized_estimator` by its old name: standardized units, not the data's."""
        return self.standardized_estimator

    @property
    def log_jacobian(self) -> float:
        """log |dz/dx| over the continuous columns: what standardizing adds to every
        log-density (a discrete column's box has the same probability in either unit)."""
        continuous = np.ones(self.n_features, dtype=bool)
        continuous[self.discrete] = False
        return -float(np.sum(np.log(self.scale[continuous])))

    @property
    def density_dimensions(self) -> int:
        """Columns the scores are a density over (bits per dimension divide by this)."""
        return self.n_features

    @property
    def discrete_columns(self) -> list[str]:
        return [self.columns[j] for j in self.discrete]

    def describe(self) -> dict[str, Any]:
        """The family's parameters in a short printable form."""
        return dict(family_module(self.family).describe(self.params))

    # ------------------------------------------------------------------ densities

    def to_z(self, X: np.ndarray) -> np.ndarray:
        """Rows in the estimator's space: bounded columns transformed, then standardized
        (cells outside a column's bounds become NaN or infinite)."""
        if self.bounds is not None:
            X = self.bounds.forward(X)
        return standardize(X, self.shift, self.scale)

    def check_width(self, X: np.ndarray) -> np.ndarray:
        """``X`` as a float 2-D array with the model's number of columns, or a DataError."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(-1, 1) if self.n_features == 1 else X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(
                f"expected {self.n_features} columns ({', '.join(self.columns)}) "
                f"but got {X.shape[1] if X.ndim == 2 else X.shape}"
            )
        return X

    def score_samples(self, X: Any, *, mode: str = "fast") -> np.ndarray:
        """Natural log of the density at each row, in the data's own units.

        ``X`` is an array with the training columns in order, or a DataFrame / Table,
        whose columns are matched by name. For a KDE, ``mode`` is 'fast' (relative error
        at most 1e-6), 'exact', or 'approx' (gridded, Gaussian kernel in 1-D and 2-D,
        relative error below 1e-3); see :mod:`gencli.density.families.kde_scoring`.
        """
        if mode not in SCORE_MODES:
            raise ValueError(f"mode must be one of {SCORE_MODES}, got {mode!r}")
        if hasattr(X, "columns") and not isinstance(X, np.ndarray):
            X = self.align(as_table(X)).values
        X = self.check_width(X)
        family = family_module(self.family)
        outside = None
        if self.bounds is not None:  # rows off the support: density 0, scored -inf
            outside = ~self.bounds.inside(X)
            jacobian = self.bounds.log_jacobian(X)
            if outside.any():
                X = X.copy()
                X[np.ix_(outside, self.bounds.columns)] = self.bounds.inner_point()
        try:
            if self.discrete:
                log_density = self._log_box_mass(X)
            else:
                log_density = family.log_density(
                    self.params, self.to_z(X), mode=mode, cache=self._cache
                )
        except MemoryError:
            raise ResourceError(
                f"ran out of memory while scoring {X.shape[0]} rows with the {self.family} "
                "model; score fewer rows at a time"
                + (" or use --approx" if self.family == "kde" else "")
            ) from None
        log_density = np.asarray(log_density) + self.log_jacobian
        if outside is not None:
            log_density = log_density + jacobian
            log_density[outside] = -np.inf
        return log_density

    def _log_box_mass(self, X: np.ndarray) -> np.ndarray:
        """log of the density on the continuous columns times the probability of the row's
        integer box [k, k + 1) on the discrete ones (z units; see families/boxes.py)."""
        from gencli.density.families import boxes

        d = np.asarray(self.discrete)
        Z, upper = self.box_edges(X)
        widths = 1.0 / self.scale[d]
        if self.family == "gmm":
            return boxes.gmm_log_mass(self.params, Z, d, widths, upper=upper)
        return boxes.kde_log_mass(self.params, Z, d, widths, cache=self._cache, upper=upper)

    def box_edges(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows in z with each discrete cell at its box's lower edge, and the boxes' upper
        edges in z (None when every box is 1 / scale wide: no bounded discrete column)."""
        d = np.asarray(self.discrete)
        edges = np.array(X, dtype=np.float64, copy=True)
        edges[:, d] = np.floor(X[:, d])
        Z = self.to_z(edges)
        if self.bounds is None or not self.bounds.discrete:
            return Z, None
        edges[:, d] += 1.0
        return Z, self.to_z(edges)[:, d]

    def sample(self, n: int, seed: int | None = None, *, as_frame: bool = False) -> Any:
        """Draw ``n`` rows from the fitted density, in the data's own units: an array, or
        with ``as_frame=True`` a pandas DataFrame whose columns are the model's."""
        from gencli.limits import check_memory

        n = check_sample_count(n)
        check_memory(
            2.0 * n * self.n_features * 8,
            f"drawing {n} rows x {self.n_features} columns at once",
            "draw fewer rows, or stream them with iter_samples (gencli sample -o writes "
            "them in chunks)",
        )
        chunks = list(self.iter_samples(n, seed))
        rows = np.vstack(chunks) if chunks else np.empty((0, self.n_features))
        if as_frame:
            import pandas as pd

            return pd.DataFrame(rows, columns=self.columns)
        return rows

    def iter_samples(
        self, n: int, seed: int | None = None, chunk_rows: int = SAMPLE_CHUNK_ROWS
    ) -> Iterator[np.ndarray]:
        """The same rows as :meth:`sample`, in chunks of ``chunk_rows`` (memory stays flat).

        Rows are drawn in blocks of :meth:`block_rows` rows, block i from its own generator
        ``SeedSequence(seed).spawn`` child i (see :meth:`draw_block`), so the output for a
        seed does not depend on how it is consumed, nor on which process draws which block
        (the Dask engine draws them on its workers).
        """
        n = check_sample_count(n)
        entropy = sample_entropy(seed)
        draw_rows = self.block_rows()
        chunk_rows = max(1, min(chunk_rows, draw_rows))
        pending: list[np.ndarray] = []
        held = 0
        for index, start in enumerate(range(0, n, draw_rows)):
            size = min(draw_rows, n - start)
            pending.append(self.draw_block(index, size, entropy))
            held += size
            while held >= chunk_rows:
                block = np.vstack(pending)
                yield block[:chunk_rows]
                rest = block[chunk_rows:]
                pending, held = ([rest] if rest.shape[0] else []), rest.shape[0]
        if held:
            yield np.vstack(pending)

    def block_rows(self) -> int:
        """Rows drawn per block: SAMPLE_CHUNK_ROWS, fewer for models of more than 64 columns."""
        return max(1, min(SAMPLE_CHUNK_ROWS, SAMPLE_CHUNK_NUMBERS // self.n_features))

    def draw_block(self, index: int, size: int, entropy: int) -> np.ndarray:
        """Block ``index`` of a sample (``size`` rows, data units), drawn with the generator
        of child ``index`` of ``SeedSequence(entropy)``."""
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
        try:
            drawn = family_module(self.family).sample(self.params, size, rng)
        except MemoryError:
            raise ResourceError(
                f"ran out of memory while drawing {size} rows x {self.n_features} columns "
                "from the model; draw fewer rows at a time"
            ) from None
        rows = unstandardize(drawn, self.shift, self.scale)
        if rows is None:
            raise GencliError(
                "a drawn row lies beyond the largest double (1.8e308): the model spreads "
                "past the float64 range; fit the data in smaller units (divide it by "
                "1e10, say) to sample from it"
            )
        if self.bounds is not None:
            rows = self.bounds.inverse(rows)
        if self.discrete:
            rows[:, self.discrete] = np.floor(rows[:, self.discrete])
        return rows

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

    def column_picks(self, table: Table) -> list[int]:
        """Indices of ``table``'s columns in the model's order (see :meth:`align`)."""
        if self.named_columns and table.named:
            self.align(table)  # raises with the missing names
            index = {c: i for i, c in enumerate(table.columns)}
            return [index[c] for c in self.columns]
        self.align(table)
        return list(range(self.n_features))

    def usecols(self, source: str) -> Any:
        """A reader's ``usecols``: given a file's names, the positions of the model's columns."""

        def picks(columns: list[str], named: bool) -> list[int]:
            return self.column_picks(Table(np.empty((0, len(columns))), columns, named, source))

        return picks

    def extra_columns(self, table: Table) -> list[str]:
        """Named columns of ``table`` the model does not use (they are ignored)."""
        if not (self.named_columns and table.named):
            return []
        return [c for c in table.columns if c not in set(self.columns)]

    # ------------------------------------------------------------------ other densities

    def marginal(self, columns: Sequence[str]) -> DensityModel:
        """The density of ``columns`` alone, the other columns integrated out (closed form;
        see :mod:`gencli.density.conditional`). An ordinary model, in the data's units."""
        from gencli.density.conditional import marginal

        return self._derived(*marginal(self, columns))

    def condition(self, given: dict[str, float]) -> DensityModel:
        """The density of the other columns given values of some (``{"col": value}``, data
        units): a mixture (or weighted kernel density) over the remaining columns."""
        from gencli.density.conditional import condition

        return self._derived(*condition(self, given))

    def impute(self, X: Any, *, draws: int | None = None, seed: int | None = None) -> np.ndarray:
        """``X`` with its NaN cells filled by the conditional mean given each row's observed
        cells (model column order, data units); with ``draws``, each row repeated ``draws``
        times with its own conditional draw (see :mod:`gencli.density.imputation`)."""
        from gencli.density.imputation import check_supported, fill

        if draws is not None and (
            isinstance(draws, bool) or not isinstance(draws, int) or draws < 1
        ):
            raise DataError(f"draws must be a whole number of at least 1 (or None), not {draws!r}")
        check_supported(self, "impute")
        if hasattr(X, "columns") and not isinstance(X, np.ndarray):
            X = self.align(as_table(X, allow_missing=True)).values
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"expected {self.n_features} columns ({', '.join(self.columns)})")
        if np.isinf(X).any():
            raise DataError("a row has an infinite value; only NaN cells are filled")
        return fill(self, X, draws, np.random.default_rng(seed))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each component's posterior probability per row (a mixture's; rows x components),
        as ``gencli predict --proba`` writes them."""
        from gencli.density.imputation import check_supported, component_log_probabilities

        if self.family != "gmm":
            raise DataError("predict_proba needs a Gaussian mixture; this is a kernel density")
        check_supported(self, "predict_proba")
        if hasattr(X, "columns") and not isinstance(X, np.ndarray):
            X = self.align(as_table(X)).values
        return np.exp(component_log_probabilities(self, self.check_width(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Each row's most likely mixture component, counting from 0."""
        return np.argmax(self.predict_proba(X), axis=1)

    def _derived(self, params: dict[str, Any], keep: list[int], record: dict) -> DensityModel:
        metadata = derived_metadata(self.metadata, record)
        metadata["discrete_columns"] = [self.columns[j] for j in self.discrete if j in keep]
        return DensityModel(
            self.family,
            params,
            [self.columns[j] for j in keep],
            self.shift[keep],
            self.scale[keep],
            named_columns=self.named_columns,
            metadata=metadata,
            discrete=[keep.index(j) for j in self.discrete if j in keep],
            bounds=None if self.bounds is None else self.bounds.pick(keep),
        )

    # ------------------------------------------------------------------ files

    def to_plain(self) -> dict[str, Any]:
        """The model as the plain dictionary a model file holds (builtins and arrays)."""
        plain = {
            "format": fileformat.FORMAT_NAME,
            "format_version": fileformat.FORMAT_VERSION,
            "family": self.family,
            "params": copy.deepcopy(self.params),
            "preprocessing": {
                "standardize": bool(self.metadata.get("standardized", True)),
                "shift": np.asarray(self.shift, dtype=np.float64),
                "scale": np.asarray(self.scale, dtype=np.float64),
            },
            "columns": list(self.columns),
            "named_columns": bool(self.named_columns),
            "metadata": copy.deepcopy(self.metadata),
        }
        if self.discrete:  # absent for continuous models, so their files read as before
            plain["discrete_columns"] = [self.columns[j] for j in self.discrete]
        if self.bounds is not None:
            plain["bounds"] = self.bounds.to_plain(self.columns)
        plain["format_version"] = fileformat.version_for(plain)
        return dict(fileformat.builtin(plain))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically, as plain data only (read back with
        :func:`gencli.load`, which never runs anything a file holds)."""
        fileformat.write(self.to_plain(), path)

    def __repr__(self) -> str:
        return f"DensityModel(family={self.family!r}, columns={self.columns!r})"
