"""``gencli fit``: read a table, fit a density, write the model file (and a report)."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from gencli.cli.fit_summary import fit_lines
from gencli.cli.options import (
    CONTEXT_SETTINGS,
    COVARIANCE_TYPES,
    KERNELS,
    SELECTION_CRITERIA,
    BandwidthType,
    CandidatePrinter,
    ComponentsType,
    check_jobs,
    cluster_settings,
    columns_option,
    debug_option,
    engine_options,
    format_option,
    header_option,
    json_option,
    quiet_option,
    seed_option,
)
from gencli.cli.output import emit, say_unless

# Options that belong to one family only; giving one to the other family is a usage error.
FOREIGN_OPTIONS = {
    "gmm": ("bandwidth", "kernel", "folds"),
    "kde": ("components", "covariance", "select", "max_iter", "n_init", "tol", "reg_covar", "jobs"),
}


def _family_settings(ctx: click.Context, family: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options to pass on: for gmm or kde, that family's (the other family's are a
    usage error, not silently ignored); for auto, the shared ones and the family options
    given on the command line, which pick their family (both families' is a usage error)."""
    if family != "auto":
        _reject_foreign_options(ctx, family)
        return {k: v for k, v in options.items() if k not in FOREIGN_OPTIONS[family]}
    given = {
        k for k in options if ctx.get_parameter_source(k) is click.core.ParameterSource.COMMANDLINE
    }
    kde_only = {"bandwidth", "kernel"}
    gmm_only = set(FOREIGN_OPTIONS["kde"]) - {"jobs"}
    if given & kde_only and given & gmm_only:
        flags = [
            "--" + name.replace("_", "-") for name in (min(given & gmm_only), min(given & kde_only))
        ]
        raise click.UsageError(
            f"{flags[0]} is for mixtures and {flags[1]} for kernel densities; choose one "
            "with --model gmm or --model kde"
        )
    return {k: v for k, v in options.items() if k not in kde_only | gmm_only or k in given}


def _reject_foreign_options(ctx: click.Context, family: str) -> None:
    """Options of the other family are a usage error, not silently ignored."""
    for name in FOREIGN_OPTIONS[family]:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} applies to the other --model, not --model {family}")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument(
    "data", nargs=-1, required=True, type=click.Path(path_type=str, allow_dash=True, readable=False)
)
@click.option(
    "-o",
    "--output",
    default="model.pkl",
    show_default=True,
    type=click.Path(path_type=str, dir_okay=False),
    help="Model file to write (atomically).",
)
@click.option(
    "--model",
    "family",
    type=click.Choice(["auto", "gmm", "kde"]),
    default="auto",
    show_default=True,
    help="gmm: Gaussian mixture (EM). kde: kernel density. auto: mixtures (every K and "
    "covariance type) and kernel densities (per-column and correlation-following bandwidths, "
    "cross-validated) compared by --folds cross-validated held-out log-likelihood on the "
    "training rows; a gmm or kde option given with it picks that family.",
)
@click.option(
    "-k",
    "--components",
    type=ComponentsType(),
    default="auto",
    show_default=True,
    help="[gmm] Components: a number, a range such as 1..12, a list 2,4,8, or auto (1..10), "
    "chosen by --select.",
)
@click.option(
    "--covariance",
    type=click.Choice([*COVARIANCE_TYPES, "auto"]),
    default="full",
    show_default=True,
    help="[gmm] Covariance of each component; auto searches all four by --select "
    "(--model auto compares all four unless this is given).",
)
@click.option(
    "--select",
    type=click.Choice(SELECTION_CRITERIA),
    default="bic",
    show_default=True,
    help="[gmm] How candidates are compared: BIC, AIC, or mean held-out log-likelihood.",
)
@click.option(
    "--max-iter", type=click.IntRange(min=1), default=100, show_default=True, help="[gmm] EM steps."
)
@click.option(
    "--n-init",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="[gmm] EM runs from different starts; the best is kept.",
)
@click.option(
    "--tol",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="[gmm] Stop EM when the lower bound gains less than this.",
)
@click.option(
    "--reg-covar",
    type=click.FloatRange(min=0),
    default=1e-6,
    show_default=True,
    help="[gmm] Added to covariance diagonals (standardized units) to keep them invertible; "
    "raised automatically when a fit breaks.",
)
@click.option(
    "--bandwidth",
    type=BandwidthType(),
    default="scott",
    show_default=True,
    help="[kde] A number (in standardized units unless --no-standardize), a rule of thumb "
    "computed at the data's own scale, or cv: maximise the k-fold cross-validated "
    "log-likelihood.",
)
@click.option(
    "--kernel",
    type=click.Choice(KERNELS),
    default="gaussian",
    show_default=True,
    help="[kde] Kernel shape.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="[kde, auto] Folds for --bandwidth cv and for --model auto.",
)
@click.option(
    "--discrete",
    default=None,
    metavar="auto|warn|none|COLS",
    help="Columns of whole numbers modelled as discrete: fitted to x + U[0,1), scored as the "
    "log-probability of their value (not a density), sampled as whole numbers. auto: those "
    "with at most 20 distinct values; names a,b: those; warn: none, but name such columns "
    "in a warning (a density over them is unbounded); none: none, silently. [default: auto "
    "with --model auto, warn with gmm or kde]",
)
@click.option(
    "--bounds",
    multiple=True,
    metavar="COL=LO:HI|auto|none",
    callback=lambda _ctx, _param, value: ",".join(value) or None,
    help="The support of bounded columns, fitted through log (one side) or logit (both "
    "sides) transforms, so densities integrate to 1 over it and samples stay inside: "
    "income=0: (positive), share=0:1, x=:100; several by commas or repeated flags. auto: "
    "every positive column and non-negative discrete column gets 0:, counts with many "
    "values -1: (log(x + 1)). none: no bounds. Training values must lie strictly inside; "
    "new rows outside score -inf. "
    "[default: none; --model auto tries auto and none and keeps the better by "
    "cross-validation]",
)
@click.option(
    "--weights",
    metavar="COLUMN",
    help="Row weights from COLUMN (not modelled): the fit maximizes the weighted "
    "log-likelihood, so whole-number weights count rows as repeated; rules that depend on "
    "the number of rows use the effective size (sum w)^2 / sum w^2, and every figure is "
    "weighted. Rows of weight 0 are dropped.",
)
@click.option(
    "--missing",
    type=click.Choice(["em"]),
    default=None,
    help="[gmm] em: keep rows with empty cells and fit the mixture by EM with those cells "
    "latent (each row's conditional expectation given its observed cells), so every row's "
    "values count; scores are then densities of each row's observed cells. Without it, "
    "empty cells are refused (or --dropna drops their rows).",
)
@click.option(
    "--validation",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Fraction of rows held out (seeded) to measure the chosen model; 0 turns it off.",
)
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="Refit the chosen model on every row after measuring it on the held-out rows.",
)
@click.option(
    "--standardize/--no-standardize",
    default=True,
    show_default=True,
    help="Fit on standardized columns. Reported densities are in the data's units either way.",
)
@columns_option
@format_option
@header_option
@click.option("--dropna", is_flag=True, help="Drop rows with missing or infinite values.")
@seed_option(default=0, help="Seed for every random step.")
@click.option(
    "--jobs",
    type=click.IntRange(min=-1),
    default=None,
    callback=check_jobs,
    help="[gmm, auto] Candidates fitted side by side, each on one core (-1: one per core). "
    "[default: one per core]",
)
@click.option(
    "--report",
    type=click.Path(path_type=str, dir_okay=False),
    help="Also write a report: JSON, Markdown or a self-contained HTML page, by extension.",
)
@engine_options
@click.option(
    "--max-rows",
    type=click.IntRange(min=2),
    default=100_000,
    show_default=True,
    help="[kde, dask] Training rows a kernel density keeps (a seeded uniform sample, said on "
    "stderr and recorded).",
)
@json_option
@quiet_option
@debug_option
def fit(
    data: tuple[str, ...],
    output: str,
    family: str,
    columns: list[str] | None,
    data_format: str | None,
    header: bool | None,
    dropna: bool,
    report: str | None,
    as_json: bool,
    quiet: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    memory_limit: str | None,
    **options: Any,
) -> None:
    """Fit a density to DATA and write it to a model file.

    DATA is a CSV, TSV, NPY or Parquet file, or '-' for CSV on stdin; or several files, a
    glob or a folder of part files (a Parquet dataset, CSVs), read in name order; or a URL
    fsspec reads (s3://, gs://, https://, file://: a file, a folder or a glob, with the
    protocol's package installed). A CSV whose first row is not all numbers has a header;
    otherwise columns are named x0, x1, ... Columns are standardized before fitting unless
    --no-standardize; the model's densities are in the data's own units either way.

    By default 20% of the rows are held out (--validation) and --model auto compares
    Gaussian mixtures (K 1..10, four covariance types, and one Gaussian with a shrunk
    covariance) with kernel densities by 5-fold cross-validated log-likelihood on the other
    rows; the winner is measured on the
    held-out rows, then refitted on every row (--model gmm chooses K by BIC instead).
    With --engine dask the rows are read and fitted on a Dask cluster's workers: mixtures
    by EM on sufficient statistics (--model auto there compares mixtures on the held-out
    rows), a kernel density on a sample of --max-rows rows; a --report's figures then show
    a seeded sample of 20,000 rows.
    Columns of whole numbers with few values are modelled as discrete (--discrete). The
    summary gives the chosen model and why, the mean log-likelihood per row (nats) and bits
    per dimension on training and held-out rows (a kernel density's training figure is
    estimated on 2,000 of its rows, with the standard error), and any repair made to a
    fit that broke.

    \b
    Examples:
      gencli fit sample_data/iris.csv -o iris.pkl
      gencli fit sample_data/iris.csv -k 3 --validation 0 -o iris3.pkl
      gencli fit sample_data/wine.csv -k 1..6 --covariance auto --report wine.html
      gencli fit sample_data/moons.csv --model kde --bandwidth cv -o moons.pkl
      gencli fit sample_data/digits.csv --report digits.html -o digits.pkl
      gencli fit sample_data/iris.csv --bounds auto -o iris_pos.pkl
      gencli fit survey.csv --bounds income=0:,share=0:1
      gencli fit sample_data/wine_holes.csv --missing em -o wine_em.pkl
      gencli fit survey.csv --weights w -o survey.pkl
      gencli fit data.parquet --columns height,weight --select heldout
      cat data.csv | gencli fit - -o model.pkl --json
      gencli fit parts/ --engine dask -k 1..6 -o big.pkl
      gencli fit 'parts/*.parquet' --engine dask --scheduler tcp://10.0.0.5:8786
    """
    from gencli.jobs import fit_file

    ctx = click.get_current_context()
    cluster = cluster_settings(engine, scheduler, workers, memory_limit)
    if engine == "local" and ctx.get_parameter_source("max_rows") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--max-rows applies to --engine dask; add --engine dask")
    settings = _family_settings(ctx, family, options)
    from gencli.io.console import progress_bar

    label = "dask: parts done" if engine == "dask" else ""
    bar = progress_bar(None, label, quiet or as_json or engine != "dask")
    with CandidatePrinter(quiet or as_json or engine == "dask") as printer, bar as progress:
        if engine == "dask":
            settings["progress"] = progress
        record = fit_file(
            data[0] if len(data) == 1 else list(data),
            output,
            engine=engine,
            cluster=cluster,
            say=lambda line: say_unless(line, quiet),
            model=family,
            format=data_format,
            columns=columns,
            header=header,
            dropna=dropna,
            report=report,
            on_candidate=printer,
            background_import=True,
            **settings,
        )
    for note in record.get("notes", []):
        say_unless(f"note: {note}", quiet)
    if record["dropped_rows"]:
        say_unless(
            f"note: dropped {record['dropped_rows']} rows with missing or infinite values", quiet
        )
    for line in record["fixes"]:
        say_unless(f"fixed: {line}", quiet)
    for line in record["warnings"]:
        say_unless(f"warning: {line}", quiet)
    if as_json or not quiet:
        emit(fit_lines(record), record, as_json, to_stderr=False)
    say_unless(f"wrote {record['model_file']}", quiet)
    for path in record.get("report_files", []):
        say_unless(f"wrote {path}", quiet)
