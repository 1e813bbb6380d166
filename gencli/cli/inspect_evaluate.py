"""``gencli inspect`` and ``gencli evaluate``: what a model file holds, and how its samples
compare with real rows.

Parsing and rendering only: the work is in :mod:`gencli.density.modelinfo` and
:mod:`gencli.evaluate`. numpy, scipy, scikit-learn and matplotlib are imported inside the
commands so that ``gencli --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import click

from gencli.cli.options import (
    CONTEXT_SETTINGS,
    debug_option,
    format_option,
    header_option,
    json_option,
    quiet_option,
    seed_option,
)
from gencli.cli.output import estimate_note
from gencli.errors import ModelFileError
from gencli.io.console import out, say

__all__ = ["evaluate", "inspect"]


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if value >= 0.001 else f"{value:.1e}"


# ----------------------------------------------------------------------------- inspect


@click.command("inspect", context_settings=CONTEXT_SETTINGS)
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@json_option
@debug_option
def inspect(model_file: str, as_json: bool) -> None:
    """Show what is in a model file, and check that it is sound, without refitting.

    Prints the file's format and version, the family, the columns, the parameters in the
    data's own units (a mixture's weights, means and per-column standard deviations; a
    kernel density's kernel and bandwidth per column), and everything recorded when it was
    trained (versions, rows, data SHA-256, command line, time). The file is read through
    the same allowlist as every model file, so nothing in it runs. Sound means it loads and
    rows sampled from it get finite log-densities. Exit status: 0 for a sound file; 1 for
    anything else (a one-line error, or with --json the whole report with "sound": false).

    \b
    Examples:
      gencli inspect iris.pkl
      gencli inspect iris.pkl --json | jq .parameters.means
      gencli inspect downloaded.pkl || echo "do not use it"
    """
    from gencli.density.modelinfo import inspect_model
    from gencli.io.jsonable import to_jsonable

    info = inspect_model(model_file)
    if as_json:
        out(json.dumps(to_jsonable(info), indent=2, allow_nan=False), escape=False)
        if not info["sound"]:
            click.get_current_context().exit(1)
        return
    if not info["sound"]:
        raise ModelFileError(f"{model_file}: {'; '.join(info['problems'])}")
    for line in _inspect_lines(info):
        out(line)  # escaped: names and metadata come from the file
    for note in info["notes"]:
        say(f"note: {note}")


def _model_line(info: dict[str, Any]) -> str:
    desc = info["description"] or {}
    if info["family"] == "gmm":
        k = desc.get("components")
        state = "converged" if desc.get("converged") else "did NOT converge"
        return (
            f"Gaussian mixture, {k} component{'s' if k != 1 else ''}, "
            f"{desc.get('covariance')} covariance; EM {state} in {desc.get('iterations')} "
            "iterations"
        )
    rule = f" ({desc['bandwidth_rule']})" if desc.get("bandwidth_rule") else ""
    standardized = (info["standardization"] or {}).get("standardized", True)
    units = "standardized" if standardized else "data"
    return (
        f"kernel density, {desc.get('kernel')} kernel, bandwidth {_fmt(desc.get('bandwidth'))}"
        f"{rule} in {units} units, {desc.get('training_points')} training points"
    )


_SHOWN_METADATA = (
    "created",
    "source",
    "rows",
    "seed",
    "standardized",
    "train_mean_log_likelihood",
    "train_bits_per_dimension",
    "gencli_version",
    "sklearn_version",
    "numpy_version",
    "python_version",
    "data_sha256",
    "command_line",
)


def _derived_line(steps: Any) -> str:
    """What a marginal or conditional density was made from, step by step."""
    said = []
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict) and "marginal" in step:
            said.append(f"the marginal of {', '.join(map(str, step['marginal']))}")
        elif isinstance(step, dict) and isinstance(step.get("given"), dict):
            given = ", ".join(f"{k} = {v:g}" for k, v in step["given"].items())
            said.append(f"conditioned on {given}")
    return (
        f"derived    {'; then '.join(said) or 'from a fitted model'} (the fitted model's "
        "training and held-out figures do not apply)"
    )


def _inspect_lines(info: dict[str, Any]) -> list[str]:
    from gencli.density.bounds import text as bound_text

    meta = info["metadata"] or {}
    columns = info["columns"]
    matched = "by name" if info["named_columns"] else "by position"
    lines = [
        f"file       {info['file']} ({info['format']}, format {info['format_version']})",
        "verdict    sound: it loads, and rows sampled from it score finite",
        f"model      {_model_line(info)}",
        f"columns    {len(columns)}: {', '.join(columns)} (new data is matched {matched})",
        *(
            [f"discrete   {', '.join(meta['discrete_columns'])}: scored as log-probability"]
            if meta.get("discrete_columns")
            else []
        ),
        *(
            [
                f"bounds     {', '.join(bound_text(b) for b in info['bounds'])} "
                "(log/logit transforms): densities over the support, samples inside"
            ]
            if info.get("bounds")
            else []
        ),
        *(
            [
                f"weights    {meta['weights'].get('column') or 'given'}: total "
                f"{meta['weights']['total']:.6g}, effective rows "
                f"{meta['weights']['effective_rows']:.1f}"
            ]
            if isinstance(meta.get("weights"), dict)
            else []
        ),
        *(
            [
                f"missing    {meta['missing']['cells_missing']} cells latent in EM "
                f"({meta['missing']['fraction_missing']:.1%} of the training cells)"
            ]
            if isinstance(meta.get("missing"), dict)
            else []
        ),
        f"trained    {meta.get('created', '?')}: {meta.get('rows', '?')} rows from "
        f"{meta.get('source', '?')}, seed {meta.get('seed')}, "
        f"{'standardized' if meta.get('standardized', True) else 'not standardized'}",
        _derived_line(meta.get("derived"))
        if meta.get("derived")
        else f"fit        training mean log-likelihood "
        f"{_fmt(meta.get('train_mean_log_likelihood'))} nats/row, "
        f"{_fmt(meta.get('train_bits_per_dimension'))} bits/dim"
        + estimate_note(meta.get("train_estimate")),
        f"versions   gencli {meta.get('gencli_version')}, scikit-learn "
        f"{meta.get('sklearn_version')}, numpy {meta.get('numpy_version')}, python "
        f"{meta.get('python_version')}",
        f"data hash  sha256 {meta.get('data_sha256')}",
        f"command    {meta.get('command_line')}",
    ]
    more = {key: value for key, value in meta.items() if key not in _SHOWN_METADATA}
    if more:
        lines.append("metadata   (the rest of what was recorded at training)")
        lines += [f"  {key}: {_short(value)}" for key, value in more.items()]
    params = info["parameters"]
    shift, scale = info["standardization"]["shift"], info["standardization"]["scale"]
    width = max(12, *(len(c) for c in columns))
    lines.append("")
    if info["family"] == "kde":
        lines.append(f"{'column':<{width}}  {'mean':>11}  {'sd':>11}  {'bandwidth':>11}")
        for c, m, s in zip(columns, shift, scale, strict=True):
            h = params["bandwidth_data_units"][c]
            lines.append(f"{c:<{width}}  {m:>11.5g}  {s:>11.5g}  {h:>11.5g}")
        lines.append("(mean and sd: the standardization; bandwidth in the column's own units)")
        return lines
    lines.append(f"{'column':<{width}}  {'mean':>11}  {'sd':>11}   (the standardization)")
    for c, m, s in zip(columns, shift, scale, strict=True):
        lines.append(f"{c:<{width}}  {m:>11.5g}  {s:>11.5g}")
    for i, weight in enumerate(params["weights"]):
        lines += ["", f"component {i + 1}, weight {weight:.4f}"]
        lines.append(f"  {'column':<{width}}  {'mean':>11}  {'sd':>11}")
        means, sds = params["means"][i], params["standard_deviations"][i]
        for c, m, s in zip(columns, means, sds, strict=True):
            lines.append(f"  {c:<{width}}  {m:>11.5g}  {s:>11.5g}")
    return lines


def _short(value: Any, limit: int = 90) -> str:
    """A metadata value on one line: long ones say what they are (--json has them whole)."""
    text = json.dumps(value)
    if len(text) <= limit:
        return text
    if isinstance(value, dict):
        keys = ", ".join(map(str, value))
        return f"{{{keys[: limit - 30]}{'...' if len(keys) > limit - 30 else ''}}} (see --json)"
    if isinstance(value, list):
        return f"[{len(value)} values] (see --json)"
    return text[: limit - 14] + "... (see --json)"


# ----------------------------------------------------------------------------- evaluate


@click.command("evaluate", context_settings=CONTEXT_SETTINGS)
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@click.argument("data", type=click.Path(path_type=str, allow_dash=True, readable=False))
@click.option(
    "--report",
    type=click.Path(path_type=str, dir_okay=False),
    help="Also write a report of the evaluation: JSON, Markdown (figures as PNGs beside it) "
    "or a self-contained HTML page, by extension (.json, .md, .html); atomically.",
)
@click.option(
    "--permutations",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Permutations for the energy test's p-value (0: no p-value).",
)
@format_option
@header_option
@click.option("--dropna", is_flag=True, help="Drop rows with missing or infinite values.")
@seed_option(
    default=0, help="Seed for the generated rows, the subsamples, the permutations and the folds."
)
@json_option
@quiet_option
@debug_option
def evaluate(
    model_file: str,
    data: str,
    report: str | None,
    permutations: int,
    data_format: str | None,
    header: bool | None,
    dropna: bool,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare rows drawn from MODEL with the real rows in DATA.

    Draws as many rows from the model as DATA has and compares the two samples: per
    column, the Kolmogorov–Smirnov statistic and p-value; the largest difference between
    their correlation matrices; the energy distance between them on standardized columns,
    with a permutation p-value; and how often a classifier (gradient-boosted trees,
    5-fold cross-validated) tells real from generated rows, where 0.5 means it cannot.
    Columns are matched by name, or by position for data without names. Use rows the model
    was not trained on: a warning says when DATA is the training data.

    \b
    Examples:
      gencli evaluate iris.pkl heldout.csv
      gencli evaluate iris.pkl heldout.csv --report evaluation.html
      gencli evaluate iris.pkl heldout.csv --json --seed 3 > evaluation.json
    """
    from gencli.evaluate import summary_lines
    from gencli.io.jsonable import to_jsonable
    from gencli.jobs import evaluate_file

    result = evaluate_file(
        model_file,
        data,
        report,
        format=data_format,
        header=header,
        dropna=dropna,
        seed=seed,
        n_permutations=permutations,
    )
    if not quiet:
        for note in result.get("data_notes", []):
            say(f"note: {note}")
        if result["dropped_rows"]:
            say(f"note: dropped {result['dropped_rows']} rows with missing or infinite values")
        if result["ignored_columns"]:
            say(f"note: ignoring columns not in the model: {', '.join(result['ignored_columns'])}")
        if result["training_rows_warning"]:
            say(
                f"warning: {result['source']} holds the very rows the model was trained on "
                "(same SHA-256), which flatters it; evaluate on held-out rows"
            )
    if as_json:
        out(json.dumps(to_jsonable(result), indent=2, allow_nan=False), escape=False)
    elif not quiet:
        for line in [*_evaluate_lines(result), "", *summary_lines(result)]:
            out(line)
    if not quiet:
        for path in result.get("report_files", []):
            say(f"wrote {path}")


def _evaluate_lines(result: dict[str, Any]) -> list[str]:
    from gencli.reports.document import model_summary

    clf, energy, corr = result["classifier"], result["energy"], result["correlation"]
    per_column = result["per_column"]
    width = max(12, *(len(c["column"]) for c in per_column))
    lines = [
        f"model        {result['model_file']}: {model_summary(result)}",
        f"data         {result['source']}: {result['rows']} rows (columns matched by "
        f"{result['matched_by']}), against {result['generated_rows']} rows drawn with seed "
        f"{result['seed']}",
        f"likelihood   mean log-likelihood {result['mean_log_likelihood']:.4f} nats/row, "
        f"{result['bits_per_dimension']:.4f} bits/dim (DATA under the model)",
        "",
        f"{'column':<{width}}  {'real mean':>10}  {'gen mean':>10}  {'real sd':>10}  "
        f"{'gen sd':>10}  {'KS':>6}  {'p-value':>8}",
    ]
    for c in per_column:
        lines.append(
            f"{c['column']:<{width}}  {c['real_mean']:>10.4g}  {c['generated_mean']:>10.4g}  "
            f"{c['real_std']:>10.4g}  {c['generated_std']:>10.4g}  {c['ks_statistic']:>6.3f}  "
            f"{_p(c['ks_pvalue']):>8}"
        )
    lines.append("")
    if corr["max_abs_difference"] is not None:
        a, b = corr["worst_pair"]
        lines.append(
            f"correlation  largest difference {corr['max_abs_difference']:.3f} ({a} with {b}), "
            f"Frobenius norm {corr['frobenius']:.3f}"
        )
    used = " vs ".join(str(n) for n in energy["rows_used"])
    lines.append(
        f"energy       distance {energy['statistic']:.4g} on standardized columns, permutation "
        f"p = {_p(energy['pvalue'])} ({energy['permutations']} permutations, {used} rows)"
    )
    lines.append(
        f"classifier   accuracy {clf['accuracy']:.3f} ± {clf['standard_error']:.3f}, "
        f"p = {_p(clf['pvalue'])} ({clf['classifier']}, {clf['folds']}-fold; "
        "0.5 = indistinguishable)"
    )
    lines.append(f"time         {result['seconds']:.2f} s")
    return lines
