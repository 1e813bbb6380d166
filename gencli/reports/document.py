"""A report as neutral blocks (headings, key/value tables, tables, lists, figures), and the
sections fit and evaluation reports share: the data summary, the parameters in the data's
own units, versions and how to reproduce the run. Renderers: :mod:`gencli.reports.markdown`,
:mod:`gencli.reports.html`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gencli.density.model import DensityModel


MAX_TABLE_COLUMNS = 10


@dataclass
class Document:
    """A report as neutral blocks, rendered by :func:`markdown_text` and :func:`html_page`."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def kv(self, pairs: list[tuple[str, str]]) -> None:
        self.blocks.append(("kv", pairs))

    def table(self, headers: list[str], rows: list[list[str]], note: str | None = None) -> None:
        self.blocks.append(("table", (headers, rows, note)))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("list", items))

    def figure(self, caption: str, png: bytes) -> None:
        self.blocks.append(("figure", (caption, png)))

    @property
    def figures(self) -> list[bytes]:
        return [b[1][1] for b in self.blocks if b[0] == "figure"]


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "—"
    return f"{number:.{digits}g}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def p_value(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if value >= 0.001 else f"{value:.1e}"


def model_summary(record: dict[str, Any]) -> str:
    params = record.get("parameters") or record.get("model") or {}
    if record.get("family") == "gmm":
        k = params.get("components", "?")
        text = f"Gaussian mixture, {k} component{'s' if k != 1 else ''}"
        if params.get("covariance"):
            text += f", {params['covariance']} covariance"
        return text
    text = f"kernel density, {params.get('kernel', '?')} kernel"
    if params.get("bandwidth") is not None:
        rule = f" ({params['bandwidth_rule']})" if params.get("bandwidth_rule") else ""
        units = "standardized" if record.get("standardized", True) else "data"
        text += f", bandwidth {num(params['bandwidth'])} in {units} units{rule}"
    return text


def column_cut(columns: list[str]) -> tuple[list[str], str | None]:
    if len(columns) <= MAX_TABLE_COLUMNS:
        return columns, None
    return columns[:MAX_TABLE_COLUMNS], (
        f"The first {MAX_TABLE_COLUMNS} of {len(columns)} columns; the JSON report has all."
    )


def data_summary(record: dict[str, Any], X: np.ndarray | None, columns: list[str]) -> list[Any]:
    summary = record.get("data_summary")
    if summary:
        return list(summary)
    if X is None or len(X) == 0:
        return []
    X = np.asarray(X, dtype=np.float64)
    return [
        {
            "name": name,
            "mean": float(X[:, j].mean()),
            "std": float(X[:, j].std()),
            "min": float(X[:, j].min()),
            "max": float(X[:, j].max()),
        }
        for j, name in enumerate(columns)
    ]


def versions(record: dict[str, Any], model: DensityModel | None) -> dict[str, Any]:
    versions = dict(record.get("versions") or {})
    if not versions and model is not None:
        meta = model.metadata
        versions = {
            "gencli": meta.get("gencli_version"),
            "sklearn": meta.get("sklearn_version"),
            "numpy": meta.get("numpy_version"),
            "python": meta.get("python_version"),
        }
    return versions


def data_table(doc: Document, summary: list[Any]) -> None:
    """One row per column; with its kind (continuous, or discrete: scored as a probability)
    when the record says."""
    kinds = any("kind" in s for s in summary)
    doc.table(
        ["column", *(["kind"] if kinds else []), "mean", "std", "min", "max"],
        [
            [
                str(s["name"]),
                *([str(s.get("kind", ""))] if kinds else []),
                num(s["mean"]),
                num(s["std"]),
                num(s["min"]),
                num(s["max"]),
            ]
            for s in summary
        ],
    )


def parameter_tables(doc: Document, model: DensityModel) -> None:
    from gencli.density.modelinfo import parameters_in_data_units

    params = parameters_in_data_units(model)
    shown, note = column_cut(model.columns)
    if model.family == "gmm":
        doc.kv(
            [
                ("components", str(params["components"])),
                ("covariance", params["covariance_type"]),
                (
                    "convergence",
                    f"EM {'converged' if params['converged'] else 'did NOT converge'} in "
                    f"{params['iterations']} iterations",
                ),
            ]
        )
        bounded = [] if model.bounds is None else model.bounds.describe(model.columns)
        for title, key in (("means", "means"), ("standard deviations", "standard_deviations")):
            doc.p(f"Component {title}, in the data's own units:")
            if bounded:
                names = ", ".join(b["column"] for b in bounded)
                doc.p(
                    f"(Bounded columns {names} are modelled through a log or logit transform: "
                    + (
                        "there the mean shown is the component's median."
                        if key == "means"
                        else "there the standard deviation is in the transform's units."
                    )
                    + ")"
                )
            doc.table(
                ["component", "weight", *shown],
                [
                    [str(i + 1), num(w), *(num(v) for v in row[: len(shown)])]
                    for i, (w, row) in enumerate(zip(params["weights"], params[key], strict=True))
                ],
                note,
            )
    else:
        rule = params["bandwidth_rule"]
        units = "standardized" if model.metadata.get("standardized", True) else "data"
        doc.kv(
            [
                ("kernel", params["kernel"]),
                (
                    "bandwidth",
                    f"{num(params['bandwidth'])} in {units} units" + (f" ({rule})" if rule else ""),
                ),
                ("training points", str(params["training_points"])),
            ]
        )
        doc.p("Bandwidth per column, in the data's own units (bandwidth × the column's scale):")
        doc.table(
            ["column", "bandwidth"],
            [[c, num(params["bandwidth_data_units"][c])] for c in model.columns],
        )


def seed_of(record: dict[str, Any], model: DensityModel | None) -> int:
    seed = record.get("seed")
    if seed is None and model is not None:
        seed = model.metadata.get("seed")
    return int(seed) if isinstance(seed, (int, np.integer)) else 0


def density_caption(d: int) -> str:
    if d == 1:
        return "Histogram of the rows with the model's density (data units)."
    if d == 2:
        return "The rows over the model's density (data units)."
    return "Pairwise marginals: the rows (blue) against as many model samples (orange)."


def png_bytes(fig: Any) -> bytes:
    from gencli.reports.plots import figure_png

    return figure_png(fig)


def reproducibility(doc: Document, record: dict[str, Any], model: DensityModel | None) -> None:
    pairs = [(f"{name} version", str(v)) for name, v in versions(record, model).items()]
    pairs.append(("data SHA-256", str(record.get("data_sha256", "—"))))
    pairs.append(("time", f"{num(record.get('seconds'), 3)} s"))
    if model is not None:
        whose = "model's " if is_evaluation(record) else ""
        for key in ("created", "command_line", "seed"):
            if key in model.metadata:
                pairs.append((whose + key.replace("_", " "), str(model.metadata[key])))
    doc.kv(pairs)


def is_evaluation(record: dict[str, Any]) -> bool:
    return record.get("kind") == "evaluation"
