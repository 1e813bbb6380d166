"""The document of a fit report: what was fitted, how the model was chosen (the candidates
and the criterion), how it does on held-out rows, its parameters and figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.fitting.names import candidate_name
from gencli.reports.document import (
    Document,
    count,
    data_summary,
    data_table,
    density_caption,
    model_summary,
    num,
    parameter_tables,
    png_bytes,
    reproducibility,
    seed_of,
)

if TYPE_CHECKING:
    from gencli.density.model import DensityModel


def _candidate_rows(selection: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    candidates = selection.get("candidates") or []
    if selection.get("parameter") == "model":  # --model auto
        headers = ["candidate", "parameters", "CV mean log-lik.", "standard error", "status"]
        return [*headers, "chosen"], [
            [
                candidate_name(c),
                num(c.get("parameters")),
                num(c.get("cv_mean_log_likelihood")),
                num(c.get("cv_standard_error")),
                str(c.get("status", "")),
                "✓" if c.get("chosen") else "",
            ]
            for c in candidates
        ]
    if candidates and "bandwidth" in candidates[0]:
        key = (
            "cv_mean_log_likelihood"
            if "cv_mean_log_likelihood" in candidates[0]
            else "heldout_mean_log_likelihood"
        )
        label = "CV mean log-lik." if key.startswith("cv") else "held-out mean log-lik."
        return ["bandwidth", label, "chosen"], [
            [num(c["bandwidth"]), num(c.get(key)), "✓" if c.get("chosen") else ""]
            for c in candidates
        ]
    headers = ["K", "covariance", "BIC", "AIC", "held-out mean log-lik.", "converged"]
    headers += ["iterations", "fixes", "chosen"]
    return headers, [
        [
            num(c.get("components")),
            str(c.get("covariance", "")),
            num(c.get("bic"), 6),
            num(c.get("aic"), 6),
            num(c.get("heldout_mean_log_likelihood")),
            num(c.get("converged")),
            num(c.get("iterations")),
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


def fit_document(
    record: dict[str, Any], model: DensityModel | None, X: np.ndarray | None, figures: bool
) -> Document:
    columns = list(record.get("columns") or (model.columns if model else []))
    doc = Document(f"gencli fit report: {record.get('source', '')}")
    doc.p(
        f"A {model_summary(record)}, fitted by maximum likelihood to "
        f"{record.get('rows', '?')} rows × {count(len(columns), 'column')} of "
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
            f"{count(len(columns), 'column')}",
        ),
        ("dropped rows", num(record.get("dropped_rows", 0))),
        ("standardized", num(record.get("standardized"))),
        (
            "training fit",
            f"{num(record.get('mean_log_likelihood'))} nats/row, "
            f"{num(record.get('bits_per_dimension'))} bits/dim",
        ),
        (
            "held-out fit",
            f"{num(validation['heldout_mean_log_likelihood'])} nats/row, "
            f"{num(validation['heldout_bits_per_dimension'])} bits/dim"
            if validation
            else "not measured (no rows held out)",
        ),
    ]
    weights, gaps = record.get("weights"), record.get("missing")
    if weights:
        pairs.append(
            (
                "row weights",
                f"{weights.get('column') or 'given'}: total {num(weights['total'])}, effective "
                f"rows {num(weights['effective_rows'])} (every figure is a weighted mean)",
            )
        )
    if gaps:
        pairs.append(
            (
                "missing cells",
                f"{gaps['cells_missing']} ({num(100 * gaps['fraction_missing'])}%) in "
                f"{gaps['rows_with_gaps']} rows, latent in EM; figures are densities of each "
                "row's observed cells",
            )
        )
    params = record.get("parameters") or {}
    if record.get("family") == "gmm" and "converged" in params:
        state = "converged" if params["converged"] else "did NOT converge"
        pairs.append(("convergence", f"EM {state} in {params.get('iterations', '?')} iterations"))
    pairs += [
        ("time", f"{num(record.get('seconds'), 3)} s"),
        ("data SHA-256", str(record.get("data_sha256", "—"))),
    ]
    doc.kv(pairs)

    doc.h("Data")
    summary = data_summary(record, X, columns)
    if summary:
        data_table(doc, summary)
        for bound in record.get("bounds") or []:
            from gencli.density.bounds import text

            doc.p(
                f"Column {bound['column']} is bounded ({text(bound)}): fitted through a "
                f"{bound['transform']} transform, so the density integrates to 1 over the "
                "bounds (the transform's Jacobian is in every figure) and samples stay inside."
            )
    else:
        doc.p("No per-column summary was recorded.")

    doc.h("Chosen model")
    if model is not None:
        parameter_tables(doc, model)
    else:
        doc.kv([(str(k), num(v)) for k, v in params.items()])

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
                    num(validation.get("train_rows")),
                    num(validation.get("train_mean_log_likelihood")),
                    num(validation.get("train_bits_per_dimension")),
                ],
                [
                    "held out",
                    num(validation.get("heldout_rows")),
                    num(validation.get("heldout_mean_log_likelihood")),
                    num(validation.get("heldout_bits_per_dimension")),
                ],
            ],
        )
    else:
        doc.p(
            f"Training rows: mean log-likelihood {num(record.get('mean_log_likelihood'))} "
            f"nats/row, {num(record.get('bits_per_dimension'))} bits/dim. No rows were held "
            "out, so how the model does on new rows was not measured (pass --validation 0.2)."
        )
    estimate = record.get("train_estimate")
    if estimate:
        doc.p(
            f"The training figures are estimated on a seeded sample of "
            f"{estimate['rows_scored']:,} of {estimate['rows']:,} rows (standard error "
            f"{num(estimate['standard_error'])} nats/row): scoring every training row against "
            "every kernel would cost n^2."
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
            from gencli.reports.plots import selection_figure

            fig = selection_figure(selection)
            if fig is not None:
                doc.figure(
                    "The score of every candidate; the chosen one is ringed.", png_bytes(fig)
                )
    else:
        doc.p("No selection: the model was fitted with the settings given.")

    if figures and model is not None and X is not None and len(X):
        from gencli.reports.plots import density_figure

        doc.h("The fitted density and the data")
        shown = record.get("figure_rows") or {}
        if shown and shown.get("shown", 0) < shown.get("rows", 0):
            doc.p(
                f"The fit ran on a Dask cluster: the figure shows a seeded uniform sample of "
                f"{shown['shown']:,} of the {shown['rows']:,} rows."
            )
        doc.figure(
            density_caption(model.n_features),
            png_bytes(density_figure(model, X, seed=seed_of(record, model))),
        )

    doc.h("Fixes and warnings")
    notes = [f"fix: {f}" for f in record.get("fixes") or []]
    notes += [f"warning: {w}" for w in record.get("warnings") or []]
    if notes:
        doc.items(notes)
    else:
        doc.p("None: no fixes were needed and there were no warnings.")

    doc.h("Reproducibility")
    reproducibility(doc, record, model)
    return doc


def _candidate_name(candidate: dict[str, Any]) -> str:
    if "bandwidth" in candidate:
        return f"bandwidth {num(candidate['bandwidth'])}"
    return f"K = {candidate.get('components')}, {candidate.get('covariance')} covariance"
