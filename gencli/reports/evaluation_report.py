"""The document of an evaluation report: the two-sample checks of a model's samples against
real rows (per column, correlations, energy distance, a classifier), with figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.reports.document import (
    Document,
    density_caption,
    model_summary,
    num,
    p_value,
    png_bytes,
    reproducibility,
)

if TYPE_CHECKING:
    from gencli.density.model import DensityModel


def evaluation_document(
    result: dict[str, Any], model: DensityModel | None, X: np.ndarray | None, figures: bool
) -> Document:
    from gencli.evaluate import summary_lines

    doc = Document(f"gencli evaluation report: {result.get('source', '')}")
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
                f"{num(result['mean_log_likelihood'])} nats/row, "
                f"{num(result['bits_per_dimension'])} bits/dim (these rows under the model)",
            ),
            (
                "classifier accuracy",
                f"{clf['accuracy']:.3f} ± {clf['standard_error']:.3f} "
                f"(p = {p_value(clf['pvalue'])}; 0.5 = indistinguishable)",
            ),
            ("energy distance", f"{num(energy['statistic'])} (p = {p_value(energy['pvalue'])})"),
            ("max |correlation difference|", num(corr["max_abs_difference"])),
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
                num(c["real_mean"]),
                num(c["generated_mean"]),
                num(c["real_std"]),
                num(c["generated_std"]),
                f"{c['ks_statistic']:.4f}",
                p_value(c["ks_pvalue"]),
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
                ("largest |difference|", f"{num(corr['max_abs_difference'])}"),
                ("between", " and ".join(corr["worst_pair"])),
                ("Frobenius norm of the difference", num(corr["frobenius"])),
            ]
        )
        if figures:
            from gencli.reports.plots import correlation_figure

            fig = correlation_figure(
                np.asarray(corr["real"], dtype=float),
                np.asarray(corr["generated"], dtype=float),
                result["columns"],
            )
            doc.figure("Correlation matrices of the data and of the samples.", png_bytes(fig))
    doc.h("Energy distance")
    doc.kv(
        [
            (
                "energy distance",
                f"{num(energy['statistic'])} (standardized columns; an unbiased estimate, "
                "so about 0, possibly below, when the two samples match)",
            ),
            (
                "permutation p-value",
                f"{p_value(energy['pvalue'])} ({energy['permutations']} perm.)",
            ),
            ("rows used", " vs ".join(str(n) for n in energy["rows_used"])),
        ]
    )
    doc.h("Classifier two-sample test")
    doc.kv(
        [
            ("classifier", clf["classifier"]),
            ("accuracy", f"{clf['accuracy']:.4f} ± {clf['standard_error']:.4f}"),
            ("one-sided p-value (accuracy > 0.5)", p_value(clf["pvalue"])),
            ("fold accuracies", ", ".join(f"{a:.3f}" for a in clf["fold_accuracies"])),
            ("rows used", " vs ".join(str(n) for n in clf["rows_used"])),
        ]
    )
    if figures and model is not None and X is not None and len(X):
        from gencli.reports.plots import density_figure

        doc.h("The model against these rows")
        doc.figure(
            density_caption(model.n_features),
            png_bytes(density_figure(model, X, seed=int(result.get("seed") or 0))),
        )
    doc.h("Reproducibility")
    reproducibility(doc, result, model)
    return doc
