"""A report as JSON: the record itself, coerced to strict JSON (NaN and infinities become
null), with the report's kind and version and the parameters in the data's own units.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.io.jsonable import to_jsonable
from gencli.reports.document import data_summary, is_evaluation, versions

if TYPE_CHECKING:
    from gencli.density.model import DensityModel

REPORT_VERSION = 1


def render_json(record: dict[str, Any], model: DensityModel | None, X: Any = None) -> str:
    """The record as strict JSON, with the report's kind and version and, given the model,
    its parameters in the data's own units (and the data summary, if missing, from X)."""
    from gencli.density.modelinfo import parameters_in_data_units

    kind = "evaluation" if is_evaluation(record) else "fit"
    out: dict[str, Any] = {"report": f"gencli-{kind}-report", "report_version": REPORT_VERSION}
    out.update({k: v for k, v in record.items() if k != "kind"})
    if kind == "fit":
        columns = list(record.get("columns") or (model.columns if model else []))
        rows = None if X is None else np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        out["data_summary"] = data_summary(record, rows, columns)
        out["versions"] = versions(record, model)
    if model is not None:
        out["model_parameters"] = parameters_in_data_units(model)
    return json.dumps(to_jsonable(out), indent=2, allow_nan=False) + "\n"
