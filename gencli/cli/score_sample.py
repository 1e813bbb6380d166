"""``gencli score`` and ``gencli sample``: use a model file on rows, streamed in chunks."""

from __future__ import annotations

from typing import Any

import click

from gencli.cli.options import (
    CONTEXT_SETTINGS,
    DATA_FORMATS,
    MAX_ROWS,
    cluster_settings,
    debug_option,
    engine_options,
    format_option,
    header_option,
    json_option_for,
    precision_option,
    quiet_option,
    seed_option,
)
from gencli.cli.output import emit, say_unless, writes_to_stdout


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@click.argument(
    "data", nargs=-1, required=True, type=click.Path(path_type=str, allow_dash=True, readable=False)
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.Path(path_type=str, dir_okay=False, allow_dash=True),
    help="Where the scores go, one row per input row: '-' is stdout (the summary then goes "
    "to stderr); a file is written atomically, in the format of its extension; a new folder "
    "NAME/ (trailing slash) gets one Parquet file per input part, part-00000.parquet, ..., "
    "written by whoever scores the part (the Dask workers) and published whole (a temporary "
    "folder, renamed).",
)
@click.option(
    "--output-format",
    type=click.Choice(DATA_FORMATS),
    help="Format of the scores: needed for NPY or Parquet on stdout (binary goes to stdout "
    "only when it is not a terminal); with -o FILE it must agree with the extension. "
    "[default: the extension's, CSV on stdout]",
)
@precision_option
@click.option(
    "--exact",
    is_flag=True,
    help="[kde] Sum every kernel exactly. By default a KDE is scored to a relative error of "
    "at most 1e-6 per row (tails included), much faster.",
)
@click.option(
    "--approx",
    is_flag=True,
    help="[kde] Gaussian gridding (an FFT grid) for the gaussian kernel in 1-D and 2-D: "
    "relative error below 1e-3 (about 1e-4), usually faster than the default. Rows too far "
    "out for the grid are scored the default way, and so is every row when the grid would "
    "be much larger than the training data.",
)
@click.option(
    "--flag-below",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    metavar="Q",
    help="Add a column 'outlier': true for rows whose log-density is below the Q-quantile "
    "(e.g. 0.01) of the held-out rows' at fit time; the summary counts them.",
)
@click.option(
    "--dropna",
    is_flag=True,
    help="Skip rows with a missing or infinite value in a column the model uses, and count "
    "them. The scores then start with a column 'row' (the data row, counting from 1) to join "
    "them back.",
)
@click.option(
    "--allow-underflow",
    is_flag=True,
    help="Score a row whose density is below the smallest positive float as -inf (counted in "
    "the summary) and go on, instead of stopping at it.",
)
@click.option(
    "--columns",
    "marginal_columns",
    metavar="A,B",
    help="Score by the marginal density of these model columns alone (the others integrated "
    "out, in closed form); DATA then needs only these (and any --given) columns.",
)
@click.option(
    "--given",
    "given_columns",
    metavar="C,D",
    help="Score each row by the conditional density of the other columns given these "
    "columns' values in the same row: log p(rest | C, D) = log p(row) - log p(C, D).",
)
@format_option
@header_option
@engine_options
@json_option_for("the summary; on stdout with -o FILE, on stderr when the scores are on stdout")
@quiet_option
@debug_option
def score(
    model_file: str,
    data: tuple[str, ...],
    output: str,
    output_format: str | None,
    precision: int | None,
    exact: bool,
    approx: bool,
    flag_below: float | None,
    dropna: bool,
    allow_underflow: bool,
    marginal_columns: str | None,
    given_columns: str | None,
    data_format: str | None,
    header: bool | None,
    as_json: bool,
    quiet: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    memory_limit: str | None,
) -> None:
    """Score the rows of DATA by their log-density under MODEL.

    Writes one log_density per input row, in input order, to stdout (or -o FILE). The
    log-density is the natural log of the density in the data's own units. Columns are
    matched by name (in any order; extra columns are ignored with a note); data without
    names (NPY, headerless CSV) is matched by position. The summary (rows scored, the mean
    log-likelihood per row in nats, bits per dimension, the total) goes to stderr when the
    scores are on stdout, to stdout when they go to a file. Rows are read, scored and
    written in chunks, so memory stays flat for any file size. DATA may also be several
    files, a glob or a folder of part files, scored in name order as one table, or a URL
    fsspec reads (s3://, https://, file://, ...); with --engine dask the parts are scored on
    a Dask cluster's workers (the same numbers; the summary adds the parts, the workers and
    the seconds they took, start-up excluded). --columns scores by a marginal density,
    --given by a conditional one (Gaussian mixtures, and kernel densities with the gaussian
    kernel), both in the data's units.

    \b
    Examples:
      gencli score iris.pkl new_rows.csv > scores.csv
      gencli score iris.pkl new_rows.csv -o scores.csv
      gencli score iris.pkl new_rows.csv --flag-below 0.01 -o flagged.csv
      gencli score moons-kde.pkl big.csv --approx -o scores.npy
      gencli score iris.pkl gappy.csv --dropna --precision 6
      gencli sample iris.pkl -n 500 | gencli score iris.pkl -
      gencli sample iris.pkl --format parquet | gencli score iris.pkl - --format parquet
      gencli score big.pkl parts/ --engine dask -o scores.parquet
      gencli score big.pkl parts/ --engine dask -o scores/
      gencli score iris.pkl new_rows.csv --columns petal_length,petal_width
      gencli score iris.pkl new_rows.csv --given sepal_length,sepal_width
    """
    from gencli.io.console import progress_bar
    from gencli.jobs import score_file

    if exact and approx:
        raise click.UsageError("--exact and --approx contradict each other; choose one")
    _check_output_format(output, output_format, precision, "--output-format")
    mode = "exact" if exact else "approx" if approx else "fast"
    if flag_below is not None and (marginal_columns or given_columns):
        raise click.UsageError(
            "--flag-below compares with the whole model's held-out rows; it does not apply "
            "with --columns or --given"
        )
    cluster = cluster_settings(engine, scheduler, workers, memory_limit)
    with progress_bar(None, "scoring", quiet) as progress:
        result = score_file(
            model_file,
            data[0] if len(data) == 1 else list(data),
            output,
            format=data_format,
            output_format=output_format,
            precision=precision,
            flag_below=flag_below,
            mode=mode,
            dropna=dropna,
            allow_underflow=allow_underflow,
            header=header,
            progress=progress,
            engine=engine,
            cluster=cluster,
            say=lambda line: say_unless(line, quiet),
            columns=_names(marginal_columns, "--columns"),
            given=_names(given_columns, "--given"),
        )
    to_stderr = writes_to_stdout(output)  # '-', or /dev/stdout by another name
    for note in result.get("notes", []):
        say_unless(f"note: {note}", quiet)
    if result["ignored_columns"]:
        say_unless(
            f"note: ignoring columns not in the model: {', '.join(result['ignored_columns'])}",
            quiet,
        )
    if as_json or not quiet:
        emit(_score_lines(result), result, as_json, to_stderr=to_stderr)
    if not to_stderr:
        say_unless(f"wrote {output}", quiet)


def _names(text: str | None, flag: str) -> list[str] | None:
    """Comma-separated column names, or None; an empty or repeated name is a usage error."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if any(not name for name in names) or len(set(names)) != len(names):
        raise click.UsageError(f"{flag} '{text}': give column names separated by commas, once each")
    return names


def _score_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"rows       {result['rows']} from {result['source']} (columns matched by "
        f"{result['matched_by']})",
    ]
    if result["skipped_rows"]:
        lines.append(
            f"skipped    {result['skipped_rows']} rows with missing or infinite values (--dropna)"
        )
    lines += [
        f"mean       {result['mean_log_likelihood']:.4f} nats/row log-likelihood",
        f"bits/dim   {result['bits_per_dimension']:.4f}",
        f"total      {result['total_log_likelihood']:.4f} nats",
    ]
    if result["underflow_rows"]:
        lines.append(
            f"-inf       {result['underflow_rows']} rows scored -inf (a density of zero, as "
            "outside a model's bounds, or below the smallest float)"
        )
    outliers = result["outliers"]
    if outliers is not None:
        lines.append(
            f"outliers   {outliers['count']} rows below {outliers['threshold']:.4f}, the "
            f"{outliers['quantile']:g}-quantile of the held-out rows' log-density"
        )
    engine = result.get("engine")
    if engine:
        rate = result["rows"] / max(engine["scoring_seconds"], 1e-9)
        lines.append(
            f"cluster    {engine['parts']} parts on {engine['workers']} workers in "
            f"{engine['scoring_seconds']:.2f} s ({rate:,.0f} rows/s)"
        )
    return lines


def _check_output_format(
    output: str, output_format: str | None, precision: int | None, flag: str
) -> None:
    """Contradictory output flags are usage errors, found before any work."""
    from gencli.errors import OutputError
    from gencli.io.writers import BINARY_FORMATS
    from gencli.io.writers import output_format as format_of

    try:
        fmt = format_of(output, output_format)
    except OutputError as exc:
        if output_format is None:
            return  # an unknown extension: the job says so, as for any output problem
        raise click.UsageError(str(exc).replace("--format", flag)) from None
    if precision is not None and fmt in BINARY_FORMATS:
        raise click.UsageError(
            f"--precision applies to CSV and TSV output; {fmt.upper()} keeps every bit of each "
            "number, so drop --precision"
        )


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@click.option(
    "-n",
    "--num-samples",
    type=click.IntRange(0, MAX_ROWS),
    default=1000,
    show_default=True,
    help="Rows to draw (at most 2**63 - 1).",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.Path(path_type=str, dir_okay=False, allow_dash=True),
    help="Where the rows go: '-' is stdout; a file is written atomically, in the format of "
    "its extension.",
)
@click.option(
    "--format",
    "data_format",
    type=click.Choice(DATA_FORMATS),
    help="Format of the rows: needed for NPY or Parquet on stdout (binary goes to stdout only "
    "when it is not a terminal); with -o FILE it must agree with the extension. "
    "[default: the extension's, CSV on stdout]",
)
@precision_option
@seed_option(default=None, help="Seed; the same seed gives identical rows. [default: random]")
@click.option(
    "--given",
    metavar="A=1.5,B=2",
    help="Draw from the density conditioned on these column values (data units): every row "
    "carries them, and the other columns are drawn from their conditional distribution.",
)
@click.option(
    "--given-file",
    type=click.Path(path_type=str, allow_dash=True, readable=False),
    metavar="ROWS",
    help="Draw -n rows for each row of this CSV/TSV/NPY/Parquet file, whose header names the "
    "given columns; the output starts with a column 'row' (the file's row, from 1).",
)
@engine_options
@quiet_option
@debug_option
def sample(
    model_file: str,
    num_samples: int,
    output: str,
    data_format: str | None,
    precision: int | None,
    seed: int | None,
    given: str | None,
    given_file: str | None,
    quiet: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    memory_limit: str | None,
) -> None:
    """Draw new rows from MODEL, in the data's own units, with the training column names.

    Every kernel can be sampled: a KDE draw is a random training point plus a draw from
    the kernel. Without --seed each run draws fresh rows. Rows are drawn and written in
    chunks, so memory stays flat for any -n. Blocks of rows are drawn from generators
    spawned from the seed, so --engine dask (blocks drawn on a Dask cluster's workers) gives
    the very same rows as the local engine, whatever the number of workers. --given and
    --given-file draw from conditionals (Gaussian mixtures, and kernel densities with the
    gaussian kernel, in closed form).

    \b
    Examples:
      gencli sample iris.pkl -n 1000 > synthetic.csv
      gencli sample iris.pkl -n 1000 --seed 7 -o synthetic.parquet
      gencli sample iris.pkl -n 10 --precision 4
      gencli sample iris.pkl --format parquet > synthetic.parquet
      gencli sample iris.pkl -n 500 | gencli score iris.pkl -
      gencli sample big.pkl -n 100000000 --seed 1 --engine dask -o big.parquet
      gencli sample iris.pkl -n 100 --given "petal_length=5.1,petal_width=1.8"
      gencli sample iris.pkl -n 10 --given-file petals.csv -o per_row.csv
    """
    from gencli.io.console import progress_bar
    from gencli.jobs import sample_file

    _check_output_format(output, data_format, precision, "--format")
    cluster = cluster_settings(engine, scheduler, workers, memory_limit)
    if given is not None or given_file is not None:
        _sample_given(model_file, num_samples, output, given, given_file, seed, data_format,
                      precision, engine, quiet)  # fmt: skip
        return
    with progress_bar(num_samples, "sampling", quiet) as progress:
        result = sample_file(
            model_file,
            num_samples,
            output,
            seed=seed,
            format=data_format,
            precision=precision,
            progress=progress,
            engine=engine,
            cluster=cluster,
            say=lambda line: say_unless(line, quiet),
        )
    if output != "-":
        say_unless(f"wrote {result['rows']} rows to {output}", quiet)


def _sample_given(
    model_file: str,
    n: int,
    output: str,
    given: str | None,
    given_file: str | None,
    seed: int | None,
    data_format: str | None,
    precision: int | None,
    engine: str,
    quiet: bool,
) -> None:
    from gencli.io.console import progress_bar
    from gencli.questions import parse_given, sample_given

    if given is not None and given_file is not None:
        raise click.UsageError("--given and --given-file contradict each other; choose one")
    if engine != "local":
        raise click.UsageError("--given and --given-file draw with the local engine; drop --engine")
    from gencli.errors import DataError

    try:
        values = parse_given(given) if given is not None else None
    except DataError as exc:
        raise click.UsageError(str(exc)) from None
    with progress_bar(None, "sampling", quiet) as progress:
        result = sample_given(
            model_file, n, output, given=values, given_file=given_file, seed=seed,
            format=data_format, precision=precision, progress=progress,
        )  # fmt: skip
    if output != "-":
        say_unless(f"wrote {result['rows']} rows to {output}", quiet)
