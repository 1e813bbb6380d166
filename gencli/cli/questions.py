"""``gencli impute`` and ``gencli predict``: fill gaps from the conditional density, and say
which mixture component each row belongs to."""

from __future__ import annotations

from typing import Any

import click

from gencli.cli.options import (
    CONTEXT_SETTINGS,
    DATA_FORMATS,
    debug_option,
    format_option,
    header_option,
    json_option_for,
    precision_option,
    quiet_option,
    seed_option,
)
from gencli.cli.output import emit, say_unless, writes_to_stdout

_OUTPUT_HELP = (
    "Where the rows go: '-' is stdout (the summary then goes to stderr); a file is written "
    "atomically, in the format of its extension."
)
_OUTPUT_FORMAT_HELP = (
    "Format of the output: needed for NPY or Parquet on stdout; with -o FILE it must agree "
    "with the extension. [default: the extension's, CSV on stdout]"
)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@click.argument("data", type=click.Path(path_type=str, allow_dash=True, readable=False))
@click.option("-o", "--output", default="-", show_default=True, help=_OUTPUT_HELP,
              type=click.Path(path_type=str, dir_okay=False, allow_dash=True))  # fmt: skip
@click.option("--output-format", type=click.Choice(DATA_FORMATS), help=_OUTPUT_FORMAT_HELP)
@precision_option
@click.option(
    "--draws",
    type=click.IntRange(1, 10_000),
    metavar="M",
    help="Multiple imputation: M draws from the conditional distribution per row, in long "
    "format (columns 'row' and 'draw' first; a complete row is repeated M times). [default: "
    "one row each, filled with the conditional mean]",
)
@seed_option(default=None, help="Seed for --draws; the same seed gives identical draws.")
@format_option
@header_option
@json_option_for("the summary; on stdout with -o FILE, on stderr when the rows are on stdout")
@quiet_option
@debug_option
def impute(
    model_file: str,
    data: str,
    output: str,
    output_format: str | None,
    precision: int | None,
    draws: int | None,
    seed: int | None,
    data_format: str | None,
    header: bool | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Fill the empty cells of DATA from MODEL's conditional density.

    Each row's missing cells (empty, NaN or NA) get their conditional mean given the row's
    observed cells, E[missing | observed], in closed form for Gaussian mixtures and for
    kernel densities with the gaussian kernel; with --draws M, M draws from that conditional
    per row (multiple imputation). Rows with nothing missing pass through unchanged; a row
    with every cell missing gets the model's mean. Columns are matched to the model's by
    name (others are left out, with a note); rows are read and written in chunks.

    \b
    Examples:
      gencli impute iris.pkl gappy.csv -o filled.csv
      gencli impute iris.pkl gappy.csv --draws 20 --seed 1 -o draws.parquet
      cat gappy.csv | gencli impute iris.pkl - > filled.csv
    """
    from gencli.io.console import progress_bar
    from gencli.questions import impute_file

    with progress_bar(None, "imputing", quiet) as progress:
        result = impute_file(
            model_file, data, output, draws=draws, seed=seed, format=data_format,
            output_format=output_format, precision=precision, header=header, progress=progress,
        )  # fmt: skip
    _notes(result, quiet)
    filled = {c: k for c, k in result["cells"].items() if k}
    lines = [
        f"rows       {result['rows']} from {result['source']}, {result['rows_filled']} with "
        "missing cells",
        "filled     "
        + (", ".join(f"{c} {k}" for c, k in filled.items()) if filled else "nothing was missing")
        + (f" ({result['draws']} draws each)" if result["draws"] else " (conditional means)"),
    ]
    _finish(lines, result, output, as_json, quiet)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@click.argument("data", type=click.Path(path_type=str, allow_dash=True, readable=False))
@click.option("-o", "--output", default="-", show_default=True, help=_OUTPUT_HELP,
              type=click.Path(path_type=str, dir_okay=False, allow_dash=True))  # fmt: skip
@click.option("--output-format", type=click.Choice(DATA_FORMATS), help=_OUTPUT_FORMAT_HELP)
@precision_option
@click.option(
    "--proba",
    is_flag=True,
    help="Also write each component's posterior probability, columns p_0, p_1, ...",
)
@format_option
@header_option
@json_option_for("the summary; on stdout with -o FILE, on stderr when the rows are on stdout")
@quiet_option
@debug_option
def predict(
    model_file: str,
    data: str,
    output: str,
    output_format: str | None,
    precision: int | None,
    proba: bool,
    data_format: str | None,
    header: bool | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Say which component of a Gaussian mixture MODEL each row of DATA most likely comes from.

    Writes 'component' (counting from 0, as scikit-learn's predict does) per row, and with
    --proba each component's posterior probability P(k | row) = w_k p_k(row) / p(row) (the
    same in the data's units as in the model's standardized ones). Columns are matched to
    the model's by name; rows are read and written in chunks.

    \b
    Examples:
      gencli predict iris.pkl new_rows.csv -o clusters.csv
      gencli predict iris.pkl new_rows.csv --proba --precision 4
    """
    from gencli.io.console import progress_bar
    from gencli.questions import predict_file

    with progress_bar(None, "predicting", quiet) as progress:
        result = predict_file(
            model_file, data, output, proba=proba, format=data_format,
            output_format=output_format, precision=precision, header=header, progress=progress,
        )  # fmt: skip
    _notes(result, quiet)
    counts = result["components"]
    lines = [
        f"rows       {result['rows']} from {result['source']}",
        "components " + ", ".join(f"{k}: {n}" for k, n in enumerate(counts)) + " rows",
    ]
    _finish(lines, result, output, as_json, quiet)


def _notes(result: dict[str, Any], quiet: bool) -> None:
    for note in result.get("notes", []):
        say_unless(f"note: {note}", quiet)
    if result["ignored_columns"]:
        say_unless(
            f"note: ignoring columns not in the model: {', '.join(result['ignored_columns'])}",
            quiet,
        )


def _finish(
    lines: list[str], result: dict[str, Any], output: str, as_json: bool, quiet: bool
) -> None:
    to_stderr = writes_to_stdout(output)
    if as_json or not quiet:
        emit(lines, result, as_json, to_stderr=to_stderr)
    if not to_stderr:
        say_unless(f"wrote {output}", quiet)
