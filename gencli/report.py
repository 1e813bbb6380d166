"""Reports of a fit or an evaluation: JSON, Markdown or a self-contained HTML page.

The format comes from the extension (:data:`REPORT_FORMATS`). A report is built once as a
list of neutral blocks (headings, key/value tables, tables, lists, figures) and rendered to
Markdown or HTML; JSON is the record itself, coerced to strict JSON (NaN and infinities
become null), plus the parameters in the data's own units.

Figures: the HTML page embeds them as ``data:image/png;base64`` images, so it needs nothing
beside it. A Markdown *file* references PNGs written beside it (``<name>.fig1.png``, ...),
because most Markdown viewers (GitHub's among them) do not show data-URI images;
:func:`render_markdown` on its own embeds them as data URIs so that the string stands
alone. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.errors import OutputError

if TYPE_CHECKING:
    from gencli.model import DensityModel

__all__ = [
    "REPORT_FORMATS",
    "render_html",
    "render_json",
    "render_markdown",
    "report_files",
    "report_format",
    "report_outputs",
    "to_jsonable",
    "write_report",
]

#: Extensions a report can have, and the format each one means.
REPORT_FORMATS = {
    ".json": "json",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
}
REPORT_VERSION = 1
_MAX_TABLE_COLUMNS = 10


def report_format(path: str | os.PathLike[str]) -> str:
    """'json', 'markdown' or 'html' from ``path``'s extension; OutputError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_FORMATS:
        found = f"'{suffix}'" if suffix else "no extension"
        raise OutputError(
            f"{path}: cannot tell the report format from {found}; use one of "
            f"{', '.join(REPORT_FORMATS)}"
        )
    return REPORT_FORMATS[suffix]


def to_jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: numpy scalars and arrays become numbers and lists,
    NaN and infinities None, tuples and sets lists, other objects their repr."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(value, key=repr)]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return repr(value)


# ----------------------------------------------------------------------------- blocks


@dataclass
class _Doc:
    """A report as neutral blocks, rendered by :func:`_markdown` and :func:`_html`."""

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


def _num(value: Any, digits: int = 4) -> str:
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _p(value: Any) -> str:
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
        text += f", bandwidth {_num(params['bandwidth'])} in {units} units{rule}"
    return text


def _column_cut(columns: list[str]) -> tuple[list[str], str | None]:
    if len(columns) <= _MAX_TABLE_COLUMNS:
        return columns, None
    return columns[:_MAX_TABLE_COLUMNS], (
        f"The first {_MAX_TABLE_COLUMNS} of {len(columns)} columns; the JSON report has all."
    )


def _data_summary(record: dict[str, Any], X: np.ndarray | None, columns: list[str]) -> list[Any]:
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


def _versions(record: dict[str, Any], model: DensityModel | None) -> dict[str, Any]:
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


def _data_table(doc: _Doc, summary: list[Any]) -> None:
    doc.table(
        ["column", "mean", "std", "min", "max"],
        [
            [str(s["name"]), _num(s["mean"]), _num(s["std"]), _num(s["min"]), _num(s["max"])]
            for s in summary
        ],
    )


def _parameter_tables(doc: _Doc, model: DensityModel) -> None:
    from gencli.modelinfo import parameters_in_data_units

    params = parameters_in_data_units(model)
    shown, note = _column_cut(model.columns)
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
        for title, key in (("means", "means"), ("standard deviations", "standard_deviations")):
            doc.p(f"Component {title}, in the data's own units:")
            doc.table(
                ["component", "weight", *shown],
                [
                    [str(i + 1), _num(w), *(_num(v) for v in row[: len(shown)])]
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
                    f"{_num(params['bandwidth'])} in {units} units"
                    + (f" ({rule})" if rule else ""),
                ),
                ("training points", str(params["training_points"])),
            ]
        )
        doc.p("Bandwidth per column, in the data's own units (bandwidth × the column's scale):")
        doc.table(
            ["column", "bandwidth"],
            [[c, _num(params["bandwidth_data_units"][c])] for c in model.columns],
        )


def _candidate_rows(selection: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    candidates = selection.get("candidates") or []
    if candidates and "bandwidth" in candidates[0]:
        key = (
            "cv_mean_log_likelihood"
            if "cv_mean_log_likelihood" in candidates[0]
            else "heldout_mean_log_likelihood"
        )
        label = "CV mean log-lik." if key.startswith("cv") else "held-out mean log-lik."
        return ["bandwidth", label, "chosen"], [
            [_num(c["bandwidth"]), _num(c.get(key)), "✓" if c.get("chosen") else ""]
            for c in candidates
        ]
    headers = ["K", "covariance", "BIC", "AIC", "held-out mean log-lik.", "converged"]
    headers += ["iterations", "fixes", "chosen"]
    return headers, [
        [
            _num(c.get("components")),
            str(c.get("covariance", "")),
            _num(c.get("bic"), 6),
            _num(c.get("aic"), 6),
            _num(c.get("heldout_mean_log_likelihood")),
            _num(c.get("converged")),
            _num(c.get("iterations")),
            "; ".join(c.get("fixes") or []) or "—",
            "✓" if c.get("chosen") else "",
        ]
        for c in candidates
    ]


_CRITERIA = {
    "bic": "BIC (lower is better)",
    "aic": "AIC (lower is better)",
    "heldout": "held-out mean log-likelihood (higher is better)",
    "cv": "cross-validated mean log-likelihood (higher is better)",
}


def _fit_doc(
    record: dict[str, Any], model: DensityModel | None, X: np.ndarray | None, figures: bool
) -> _Doc:
    columns = list(record.get("columns") or (model.columns if model else []))
    doc = _Doc(f"gencli fit report: {record.get('source', '')}")
    doc.p(
        f"A {model_summary(record)}, fitted by maximum likelihood to "
        f"{record.get('rows', '?')} rows × {_count(len(columns), 'column')} of "
        f"{record.get('source', '?')}. Densities and likelihoods are in the data's own units."
    )
    validation = record.get("validation")
    doc.h("Summary")
    pairs = [
        ("model file", str(record.get("model_file", "—"))),
        ("model", model_summary(record)),
        (
            "data",
            f"{record.get('source', '—')}: {record.get('rows', '?')} rows × "
            f"{_count(len(columns), 'column')}",
        ),
        ("dropped rows", _num(record.get("dropped_rows", 0))),
        ("standardized", _num(record.get("standardized"))),
        (
            "training fit",
            f"{_num(record.get('mean_log_likelihood'))} nats/row, "
            f"{_num(record.get('bits_per_dimension'))} bits/dim",
        ),
        (
            "held-out fit",
            f"{_num(validation['heldout_mean_log_likelihood'])} nats/row, "
            f"{_num(validation['heldout_bits_per_dimension'])} bits/dim"
            if validation
            else "not measured (no rows held out)",
        ),
    ]
    params = record.get("parameters") or {}
    if record.get("family") == "gmm" and "converged" in params:
        state = "converged" if params["converged"] else "did NOT converge"
        pairs.append(("convergence", f"EM {state} in {params.get('iterations', '?')} iterations"))
    pairs += [
        ("time", f"{_num(record.get('seconds'), 3)} s"),
        ("data SHA-256", str(record.get("data_sha256", "—"))),
    ]
    doc.kv(pairs)

    doc.h("Data")
    summary = _data_summary(record, X, columns)
    if summary:
        _data_table(doc, summary)
    else:
        doc.p("No per-column summary was recorded.")

    doc.h("Chosen model")
    if model is not None:
        _parameter_tables(doc, model)
    else:
        doc.kv([(str(k), _num(v)) for k, v in params.items()])

    doc.h("Fit: training and held-out rows")
    if validation:
        refit = (
            "The model was refitted on all rows after validation; the summary's training "
            "figures are for that final model."
            if validation.get("refit")
            else "The model was fitted on the training rows only."
        )
        doc.p(f"{validation.get('fraction', 0):.0%} of the rows were held out. {refit}")
        doc.table(
            ["rows", "count", "mean log-likelihood (nats/row)", "bits/dim"],
            [
                [
                    "training",
                    _num(validation.get("train_rows")),
                    _num(validation.get("train_mean_log_likelihood")),
                    _num(validation.get("train_bits_per_dimension")),
                ],
                [
                    "held out",
                    _num(validation.get("heldout_rows")),
                    _num(validation.get("heldout_mean_log_likelihood")),
                    _num(validation.get("heldout_bits_per_dimension")),
                ],
            ],
        )
    else:
        doc.p(
            f"Training rows: mean log-likelihood {_num(record.get('mean_log_likelihood'))} "
            f"nats/row, {_num(record.get('bits_per_dimension'))} bits/dim. No rows were held "
            "out, so how the model does on new rows was not measured (pass --validation 0.2)."
        )

    doc.h("Model selection")
    selection = record.get("selection")
    if selection and selection.get("candidates"):
        criterion = str(selection.get("criterion", "?"))
        chosen = [c for c in selection["candidates"] if c.get("chosen")]
        doc.p(
            f"{len(selection['candidates'])} candidates were tried and scored by "
            f"{_CRITERIA.get(criterion, criterion)}"
            + (f"; the chosen one is marked ✓ ({_candidate_name(chosen[0])})." if chosen else ".")
        )
        headers, rows = _candidate_rows(selection)
        doc.table(headers, rows)
        if figures:
            from gencli.plots import selection_figure

            fig = selection_figure(selection)
            if fig is not None:
                doc.figure("The score of every candidate; the chosen one is ringed.", _png(fig))
    else:
        doc.p("No selection: the model was fitted with the settings given.")

    if figures and model is not None and X is not None and len(X):
        from gencli.plots import density_figure

        doc.h("The fitted density and the data")
        doc.figure(
            _density_caption(model.n_features),
            _png(density_figure(model, X, seed=_seed(record, model))),
        )

    doc.h("Fixes and warnings")
    notes = [f"fix: {f}" for f in record.get("fixes") or []]
    notes += [f"warning: {w}" for w in record.get("warnings") or []]
    if notes:
        doc.items(notes)
    else:
        doc.p("None: no fixes were needed and there were no warnings.")

    doc.h("Reproducibility")
    _reproducibility(doc, record, model)
    return doc


def _candidate_name(candidate: dict[str, Any]) -> str:
    if "bandwidth" in candidate:
        return f"bandwidth {_num(candidate['bandwidth'])}"
    return f"K = {candidate.get('components')}, {candidate.get('covariance')} covariance"


def _seed(record: dict[str, Any], model: DensityModel | None) -> int:
    seed = record.get("seed")
    if seed is None and model is not None:
        seed = model.metadata.get("seed")
    return int(seed) if isinstance(seed, (int, np.integer)) else 0


def _density_caption(d: int) -> str:
    if d == 1:
        return "Histogram of the rows with the model's density (data units)."
    if d == 2:
        return "The rows over the model's density (data units)."
    return "Pairwise marginals: the rows (blue) against as many model samples (orange)."


def _png(fig: Any) -> bytes:
    from gencli.plots import figure_png

    return figure_png(fig)


def _reproducibility(doc: _Doc, record: dict[str, Any], model: DensityModel | None) -> None:
    versions = _versions(record, model)
    pairs = [(f"{name} version", str(v)) for name, v in versions.items()]
    pairs.append(("data SHA-256", str(record.get("data_sha256", "—"))))
    pairs.append(("time", f"{_num(record.get('seconds'), 3)} s"))
    if model is not None:
        whose = "model's " if _is_evaluation(record) else ""
        for key in ("created", "command_line", "seed"):
            if key in model.metadata:
                pairs.append((whose + key.replace("_", " "), str(model.metadata[key])))
    doc.kv(pairs)


def _evaluation_doc(
    result: dict[str, Any], model: DensityModel | None, X: np.ndarray | None, figures: bool
) -> _Doc:
    from gencli.evaluate import summary_lines

    doc = _Doc(f"gencli evaluation report: {result.get('source', '')}")
    doc.p(
        f"{result['rows']} rows of {result.get('source', 'data')} against as many rows drawn "
        f"from the model (seed {result.get('seed')}). Evaluate on rows the model was not "
        "trained on."
    )
    if result.get("training_rows_warning"):
        doc.p(
            "⚠ Warning: these are the very rows the model was trained on (same SHA-256); "
            "the comparison flatters the model."
        )
    doc.h("Verdict")
    doc.items(summary_lines(result))
    doc.h("Summary")
    clf, energy, corr = result["classifier"], result["energy"], result["correlation"]
    doc.kv(
        [
            ("model file", str(result.get("model_file", "—"))),
            ("model", model_summary(result)),
            ("data", f"{result.get('source', '—')}: {result['rows']} rows"),
            (
                "mean log-likelihood",
                f"{_num(result['mean_log_likelihood'])} nats/row, "
                f"{_num(result['bits_per_dimension'])} bits/dim (these rows under the model)",
            ),
            (
                "classifier accuracy",
                f"{clf['accuracy']:.3f} ± {clf['standard_error']:.3f} "
                f"(p = {_p(clf['pvalue'])}; 0.5 = indistinguishable)",
            ),
            ("energy distance", f"{_num(energy['statistic'])} (p = {_p(energy['pvalue'])})"),
            ("max |correlation difference|", _num(corr["max_abs_difference"])),
            ("training rows", "yes (warning)" if result.get("training_rows_warning") else "no"),
            ("data SHA-256", str(result.get("data_sha256", "—"))),
        ]
    )
    doc.h("Per column: Kolmogorov–Smirnov")
    doc.table(
        ["column", "real mean", "generated mean", "real std", "generated std", "KS", "p-value"],
        [
            [
                c["column"],
                _num(c["real_mean"]),
                _num(c["generated_mean"]),
                _num(c["real_std"]),
                _num(c["generated_std"]),
                f"{c['ks_statistic']:.4f}",
                _p(c["ks_pvalue"]),
            ]
            for c in result["per_column"]
        ],
    )
    doc.h("Correlations")
    if corr["max_abs_difference"] is None:
        doc.p("Not compared (a single column, or a constant one).")
    else:
        doc.kv(
            [
                ("largest |difference|", f"{_num(corr['max_abs_difference'])}"),
                ("between", " and ".join(corr["worst_pair"])),
                ("Frobenius norm of the difference", _num(corr["frobenius"])),
            ]
        )
        if figures:
            from gencli.plots import correlation_figure

            fig = correlation_figure(
                np.asarray(corr["real"], dtype=float),
                np.asarray(corr["generated"], dtype=float),
                result["columns"],
            )
            doc.figure("Correlation matrices of the data and of the samples.", _png(fig))
    doc.h("Energy distance")
    doc.kv(
        [
            (
                "energy distance",
                f"{_num(energy['statistic'])} (standardized columns; an unbiased estimate, "
                "so about 0, possibly below, when the two samples match)",
            ),
            ("permutation p-value", f"{_p(energy['pvalue'])} ({energy['permutations']} perm.)"),
            ("rows used", " vs ".join(str(n) for n in energy["rows_used"])),
        ]
    )
    doc.h("Classifier two-sample test")
    doc.kv(
        [
            ("classifier", clf["classifier"]),
            ("accuracy", f"{clf['accuracy']:.4f} ± {clf['standard_error']:.4f}"),
            ("one-sided p-value (accuracy > 0.5)", _p(clf["pvalue"])),
            ("fold accuracies", ", ".join(f"{a:.3f}" for a in clf["fold_accuracies"])),
            ("rows used", " vs ".join(str(n) for n in clf["rows_used"])),
        ]
    )
    if figures and model is not None and X is not None and len(X):
        from gencli.plots import density_figure

        doc.h("The model against these rows")
        doc.figure(
            _density_caption(model.n_features),
            _png(density_figure(model, X, seed=int(result.get("seed") or 0))),
        )
    doc.h("Reproducibility")
    _reproducibility(doc, result, model)
    return doc


def _is_evaluation(record: dict[str, Any]) -> bool:
    return record.get("kind") == "evaluation"


def _doc(record: dict[str, Any], model: DensityModel | None, X: Any, figures: bool = True) -> _Doc:
    rows = None if X is None else np.asarray(X, dtype=np.float64)
    if rows is not None and rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if _is_evaluation(record):
        return _evaluation_doc(record, model, rows, figures)
    return _fit_doc(record, model, rows, figures)


# ----------------------------------------------------------------------------- renderers


def render_json(record: dict[str, Any], model: DensityModel | None, X: Any = None) -> str:
    """The record as strict JSON, with the report's kind and version and, given the model,
    its parameters in the data's own units (and the data summary, if missing, from X)."""
    from gencli.modelinfo import parameters_in_data_units

    kind = "evaluation" if _is_evaluation(record) else "fit"
    out: dict[str, Any] = {"report": f"gencli-{kind}-report", "report_version": REPORT_VERSION}
    out.update({k: v for k, v in record.items() if k != "kind"})
    if kind == "fit":
        columns = list(record.get("columns") or (model.columns if model else []))
        rows = None if X is None else np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        out["data_summary"] = _data_summary(record, rows, columns)
        out["versions"] = _versions(record, model)
    if model is not None:
        out["model_parameters"] = parameters_in_data_units(model)
    return json.dumps(to_jsonable(out), indent=2, allow_nan=False) + "\n"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _markdown(doc: _Doc, figure_names: list[str] | None) -> str:
    lines = [f"# {doc.title}", ""]
    figure_index = 0
    for kind, body in doc.blocks:
        if kind == "h":
            lines += [f"## {body}", ""]
        elif kind == "p":
            lines += [body, ""]
        elif kind == "kv":
            lines += [*_md_table(["", ""], [[f"**{k}**", v] for k, v in body]), ""]
        elif kind == "table":
            headers, rows, note = body
            lines += [*_md_table(headers, rows), ""]
            if note:
                lines += [f"*{note}*", ""]
        elif kind == "list":
            lines += [*(f"- {item}" for item in body), ""]
        elif kind == "figure":
            caption, png = body
            if figure_names is not None:
                src = figure_names[figure_index]
            else:
                src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            figure_index += 1
            lines += [f"![{caption}]({src})", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(record: dict[str, Any], model: DensityModel | None, X: Any = None) -> str:
    """The report as Markdown, figures embedded as data-URI PNGs (see :func:`write_report`
    for the file, whose figures are PNGs beside it)."""
    return _markdown(_doc(record, model, X), None)


_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 0; background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 1.5em 2em 3em; background: #fff; }
h1 { font-size: 1.6em; border-bottom: 2px solid #345; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; color: #345; }
table { border-collapse: collapse; margin: .6em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f0f3f6; }
td:first-child, th:first-child { text-align: left; }
table.kv th { text-align: left; font-weight: 600; }
table.kv td { text-align: left; font-family: ui-monospace, monospace; font-size: 13px; }
tr.chosen td { background: #eef7ee; font-weight: 600; }
.note { color: #666; font-style: italic; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
"""


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        chosen = ' class="chosen"' if row and row[-1] == "✓" else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{chosen}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(doc: _Doc) -> str:
    parts = [f"<h1>{html.escape(doc.title)}</h1>"]
    for kind, body in doc.blocks:
        if kind == "h":
            parts.append(f"<h2>{html.escape(body)}</h2>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(body)}</p>")
        elif kind == "kv":
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in body
            )
            parts.append(f'<table class="kv"><tbody>{rows}</tbody></table>')
        elif kind == "table":
            headers, rows, note = body
            parts.append(_html_table(headers, rows))
            if note:
                parts.append(f'<p class="note">{html.escape(note)}</p>')
        elif kind == "list":
            items = "".join(f"<li>{html.escape(item)}</li>" for item in body)
            parts.append(f"<ul>{items}</ul>")
        elif kind == "figure":
            caption, png = body
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(doc.title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )


def render_html(record: dict[str, Any], model: DensityModel | None, X: Any = None) -> str:
    """The report as one self-contained HTML page: inline stylesheet, figures as data URIs."""
    return _html(_doc(record, model, X))


# ----------------------------------------------------------------------------- files

#: The most figures any report holds (a fit: selection and density; an evaluation:
#: correlations and density).
MAX_FIGURES = 2


def report_outputs(path: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """:func:`report_files`, each with what it is, for :func:`gencli.atomic.check_outputs`."""
    files = report_files(path)
    return [(files[0], "the report"), *((f, "a figure of the report") for f in files[1:])]


def report_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every file a report at ``path`` may write: the report, then (Markdown) its figures
    ``<name>.fig1.png``, ... beside the file the path leads to. Commands check them all
    against their inputs and other outputs before any work (:func:`gencli.atomic.check_outputs`),
    so a figure can never overwrite the data or the model."""
    from gencli.atomic import resolve_target

    fmt = report_format(path)
    if fmt != "markdown":
        return [Path(path)]
    target, _special = resolve_target(path)
    base = target if Path(path).is_symlink() else Path(path)
    stem = base.name[: -len(base.suffix)] if base.suffix else base.name
    figures = [base.with_name(f"{stem}.fig{i}.png") for i in range(1, MAX_FIGURES + 1)]
    return [Path(path), *figures]


def write_report(
    path: str | os.PathLike[str],
    record: dict[str, Any],
    model: DensityModel | None,
    X: Any = None,
) -> list[Path]:
    """Write a fit record (from ``fit``) or an evaluation result (from
    :func:`gencli.evaluate.evaluate`) as a report, in the format of ``path``'s extension.

    ``X`` is the rows the figures show (the training rows for a fit, the evaluated rows for
    an evaluation), in the model's column order; None draws no data figures. A Markdown
    report also writes its figures beside it as ``<name>.fig1.png``, ... (first, so that
    the report never points at a missing figure). Every file is written atomically.

    Returns:
        The paths written, the report last.
    """
    from gencli.atomic import atomic_write

    fmt = report_format(path)
    target = Path(path)
    written: list[Path] = []
    if fmt == "json":
        text = render_json(record, model, X)
    elif fmt == "html":
        text = render_html(record, model, X)
    else:
        doc = _doc(record, model, X)
        figures = report_files(path)[1:]
        if len(doc.figures) > len(figures):
            raise OutputError(f"{path}: a report has at most {len(figures)} figures; report it")
        for figure, png in zip(figures, doc.figures, strict=False):
            with atomic_write(figure) as handle:
                handle.write(png)
            written.append(figure)
        text = _markdown(doc, [figure.name for figure in figures[: len(doc.figures)]])
    with atomic_write(target) as handle:
        handle.write(text.encode("utf-8", "backslashreplace"))
    written.append(target)
    return written
