"""Scoring by a marginal or a conditional density: ``score --columns`` and ``--given``.

``--columns`` scores by the marginal density of some columns (a model of its own, see
:meth:`gencli.density.model.DensityModel.marginal`); ``--given`` scores each row by the
conditional density of the other columns at its own given values, which needs no model per
row: log p(rest | given) = log p(row) - log p_given(row's given values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gencli.density.model import DensityModel
from gencli.density.modelparts import derived_metadata
from gencli.errors import DataError
from gencli.io.data import as_table


def for_scoring(
    model: DensityModel, columns: Sequence[str] | None, given: Sequence[str] | None
) -> DensityModel:
    """The model ``score --columns/--given`` scores with: the marginal of ``columns`` (and
    the given ones), and with ``given`` log p(other columns | given columns) row by row."""
    from gencli.density.conditional import pick_columns

    for names, flag in ((columns, "--columns"), (given, "--given")):
        if names:
            pick_columns(model, names, flag)  # unknown names refused under their flag's name
    if columns:
        model = model.marginal([*columns, *[g for g in given or () if g not in columns]])
    return GivenScores(model, given) if given else model


class GivenScores(DensityModel):
    """Scores each row by log p(x_rest | x_given) = log p(x) - log p_given(x_given): the
    conditional density of the other columns at the row's own given values, in the data's
    units. Columns, alignment and metadata are the joint model's."""

    def __init__(self, model: DensityModel, given: Sequence[str]) -> None:
        metadata = derived_metadata(model.metadata, {"given_by_row": list(given)})
        super().__init__(
            model.family, model.params, model.columns, model.shift, model.scale,
            named_columns=model.named_columns, metadata=metadata, discrete=model.discrete,
        )  # fmt: skip
        self.given_model = model.marginal(given)
        if self.given_model.n_features == model.n_features:
            raise DataError("--given: every column is given, so no density is left; leave one")
        self.given_index = [model.columns.index(c) for c in self.given_model.columns]

    @property
    def density_dimensions(self) -> int:
        return self.n_features - len(self.given_index)

    def score_samples(self, X: Any, *, mode: str = "fast") -> np.ndarray:
        if hasattr(X, "columns") and not isinstance(X, np.ndarray):
            X = self.align(as_table(X)).values
        X = self.check_width(X)
        joint = super().score_samples(X, mode=mode)
        given = self.given_model.score_samples(X[:, self.given_index], mode=mode)
        with np.errstate(invalid="ignore"):
            return np.where(np.isneginf(given), -np.inf, joint - given)
