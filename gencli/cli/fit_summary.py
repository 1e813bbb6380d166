"""The summary ``gencli fit`` prints: the model, why it was chosen, the data and how it was
read (bounds, weights, gaps, discrete columns), and the training and held-out figures."""

from __future__ import annotations

from typing import Any

from gencli.cli.output import estimate_note, number


def fit_lines(record: dict[str, Any]) -> list[str]:
    params = record["parameters"]
    if record["family"] == "gmm":
        state = "converged" if params["converged"] else "did NOT converge"
        model_line = (
            f"model      Gaussian mixture, {params['components']} component"
            f"{'s' if params['components'] != 1 else ''}, {params['covariance']} covariance; "
            f"EM {state} in {params['iterations']} iterations"
        )
    else:
        rule = f" ({params['bandwidth_rule']})" if params["bandwidth_rule"] else ""
        units = "standardized" if record["standardized"] else "data"
        if params.get("rotated"):
            units = "decorrelated (kernels follow the columns' correlations)"
        model_line = (
            f"model      kernel density, {params['kernel']} kernel, bandwidth "
            f"{params['bandwidth']:.4g}{rule} in {units} units"
        )
    names = record["columns"]
    columns = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    lines = [model_line]
    selection = record["selection"]
    if selection is not None:
        candidates = selection["candidates"]
        how = {
            "bic": "lowest BIC",
            "aic": "lowest AIC",
            "heldout": "best held-out log-likelihood",
            "cv": f"best {len(candidates)}-point search of the cross-validated log-likelihood",
        }[selection["criterion"]]
        if selection["parameter"] == "model":
            lines += auto_lines(selection)
        elif selection["parameter"] == "components":
            lines.append(f"selected   by {how} among {len(candidates)} candidates")
        else:
            lines.append(f"selected   by {how}")
    lines.append(
        f"data       {record['source']}: {record['rows']} rows x {len(names)} columns"
        f" ({columns})" + (", standardized" if record["standardized"] else "")
    )
    bounded = record.get("bounds") or []
    if bounded:
        from gencli.density.bounds import text

        lines.append(
            "bounds     "
            + ", ".join(f"{text(b)} ({b['transform']})" for b in bounded)
            + ": densities over the support, samples inside"
        )
    weights = record.get("weights")
    if weights:
        lines.append(
            f"weights    {weights['column'] or 'given'}: total {weights['total']:.6g}, "
            f"effective rows {weights['effective_rows']:.1f} (figures are weighted)"
        )
    gaps = record.get("missing")
    if gaps:
        lines.append(
            f"missing    {gaps['cells_missing']} cells ({gaps['fraction_missing']:.1%}) in "
            f"{gaps['rows_with_gaps']} rows, latent in EM; figures are densities of each "
            f"row's observed cells ({gaps['observed_cells_per_row']:.3g} per row on average)"
        )
    discrete = record.get("discrete_columns") or []
    if discrete:
        shown = ", ".join(discrete[:8]) + (
            f", ... ({len(discrete)} in all)" if len(discrete) > 8 else ""
        )
        lines.append(
            f"discrete   {shown}: whole numbers, scored as log-probability of the value "
            "(the other columns as log-density)"
        )
    validation = record["validation"]
    if validation is not None:
        lines.append(
            f"held-out   mean log-likelihood {number(validation['heldout_mean_log_likelihood'])}"
            f" nats/row, {number(validation['heldout_bits_per_dimension'])} bits/dim "
            f"({validation['heldout_rows']} rows the chosen fit never saw)"
        )
    refit_note = "" if validation is None or validation["refit"] else ", not refitted"
    refit_note += estimate_note(record.get("train_estimate"))
    lines += [
        f"train      mean log-likelihood {record['mean_log_likelihood']:.4f} nats/row, "
        f"{record['bits_per_dimension']:.4f} bits/dim (data units{refit_note})",
        f"time       {record['seconds']:.2f} s",
    ]
    return lines


def auto_lines(selection: dict[str, Any]) -> list[str]:
    """Why the winner won: the method, and the best of each family with its CV score."""
    from gencli.fitting.names import candidate_name

    candidates = selection["candidates"]
    scored = [c for c in candidates if c["status"] == "ok"]
    lines = [
        f"selected   by {selection['method']} (mean held-out log-likelihood on the training "
        f"rows) among {len(candidates)} candidates ({len(scored)} scored to the end):"
    ]
    for family in ("gmm", "kde"):
        mine = [c for c in scored if c["family"] == family]
        if mine:
            best = max(mine, key=lambda c: c["cv_mean_log_likelihood"])
            mark = " <- chosen" if best["chosen"] else ""
            lines.append(
                f"           best {candidate_name(best):<34s} "
                f"{best['cv_mean_log_likelihood']:.4f} ± {best['cv_standard_error']:.4f} "
                f"nats/row{mark}"
            )
    return lines
