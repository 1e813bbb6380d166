"""A fit record or an evaluation result, as the document its report shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.reports.document import Document, is_evaluation
from gencli.reports.evaluation_report import evaluation_document
from gencli.reports.fit_report import fit_document

if TYPE_CHECKING:
    from gencli.density.model import DensityModel


def build_document(
    record: dict[str, Any], model: DensityModel | None, X: Any, figures: bool = True
) -> Document:
    rows = None if X is None else np.asarray(X, dtype=np.float64)
    if rows is not None and rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if is_evaluation(record):
        return evaluation_document(record, model, rows, figures)
    return fit_document(record, model, rows, figures)
