"""The command line: parse options, make one library call, render the result.

This is the only place where library errors become ``Error: ...`` lines (exit 1); bad
flags are click usage errors (exit 2). Heavy libraries are imported inside the commands so
that ``gencli --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Any

import click

from gencli._version import __version__
from gencli.cli_curse import curse
from gencli.cli_options import (
    CONTEXT_SETTINGS,
    COVARIANCE_TYPES,
    DATA_FORMATS,
    KERNELS,
    MAX_ROWS,
    SELECTION_CRITERIA,
    BandwidthType,
    CandidatePrinter,
    ComponentsType,
    columns_option,
    debug_option,
    format_option,
    header_option,
    json_option,
    json_option_for,
    precision_option,
    quiet_option,
    seed_option,
)
from gencli.cli_report import evaluate, inspect
from gencli.console import one_line, out, say
from gencli.errors import STOP_SIGNALS, GencliError, Stopped

EXIT_SIGINT = STOP_SIGNALS["SIGINT"]


class Interrupted(click.ClickException):
    """The run was stopped by a signal; the message says what had been written."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        setattr(self, "exit_code", exit_code)  # noqa: B010 - click's is a class attribute


class QuietExit(Exception):
    """End the process with this status and no message (a reader closed the pipe)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def _interrupted(signum: int | None) -> Interrupted:
    """The truthful one-line report of a stop: which outputs were finished before it."""
    from gencli import atomic

    name = signal.Signals(signum).name if signum is not None else "SIGINT"
    verb = {"SIGTERM": "terminated", "SIGHUP": "hung up"}.get(name, "interrupted")
    if atomic.written:
        done = f"after writing {', '.join(atomic.written)}; nothing else was written"
    else:
        done = "no output file was written"
    if atomic.touched:
        done += f" (part of the output went to {', '.join(atomic.touched)})"
    return Interrupted(one_line(f"{verb}; {done}"), STOP_SIGNALS.get(name, EXIT_SIGINT))


def translate(exc: BaseException) -> BaseException:
    """The one-line error a user sees for any exception a command raised."""
    from gencli import errors

    if isinstance(exc, (click.ClickException, click.exceptions.Exit, click.Abort, QuietExit)):
        return exc
    if isinstance(exc, KeyboardInterrupt) or errors.pending_signal is not None:
        # While a stop signal unwinds, whatever it broke on the way (an import cut short,
        # a worker thread) is the signal, not a new error.
        signum = exc.signum if isinstance(exc, Stopped) else errors.pending_signal
        return _interrupted(signum)
    if isinstance(exc, BrokenPipeError):
        return QuietExit(EXIT_BROKEN_PIPE)
    error = _one_line_error(exc)
    from gencli import atomic

    if not isinstance(error, click.ClickException):
        return error
    notes = []
    if atomic.written:
        notes.append(f"{', '.join(atomic.written)} had been written before this")
    if atomic.touched:
        notes.append(f"what went to {', '.join(atomic.touched)} is incomplete")
    return click.ClickException(f"{error.message} ({'; '.join(notes)})") if notes else error


_OUT_OF_MEMORY = (
    "ran out of memory; use fewer rows or --columns, a smaller model, or a machine with more memory"
)
# What a library says when the address space (ulimit -v) is too small to load or start it.
_MAPPING_FAILURES = (
    "failed to map segment",
    "cannot allocate memory",
    "failed to launch worker thread",
    "can't start new thread",
    "out of memory",
)


def _one_line_error(exc: BaseException) -> BaseException:
    """The one-line error for an exception that is neither a signal nor a closed pipe."""
    if isinstance(exc, GencliError):
        return click.ClickException(one_line(str(exc)))
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ArrowMemoryError":
        return click.ClickException(_OUT_OF_MEMORY)
    if isinstance(exc, (ImportError, OSError, RuntimeError)) or "Arrow" in type(exc).__name__:
        text = str(exc).lower()
        if any(words in text for words in _MAPPING_FAILURES):
            return click.ClickException(
                f"ran out of memory (or address space, ulimit -v) while starting: {one_line(exc)}"
                "; raise the limit or free memory"
            )
    if isinstance(exc, RecursionError):
        return click.ClickException("the input is nested too deeply to process; check it")
    if isinstance(exc, OSError):
        from gencli.atomic import reason

        where = f"{exc.filename}: " if exc.filename is not None else ""
        return click.ClickException(one_line(f"{where}{reason(exc)}; check the path and retry"))
    return click.ClickException(
        one_line(f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and report it")
    )


class GencliGroup(click.Group):
    """The one error boundary: every error is one line, tracebacks need --debug."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Bare ``gencli`` shows the usage on stderr and exits 2, as a usage error does."""
        if not args:
            if sys.stderr is not None:
                sys.stderr.write(ctx.get_help() + "\n")
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from gencli import atomic

        atomic.written.clear()  # what this invocation writes (a test may run several)
        atomic.touched.clear()
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            translated = translate(exc)
            if translated is exc:
                raise
            if ctx.meta.get("gencli.debug") and not isinstance(translated, QuietExit):
                raise
            raise translated from None

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Like click's, but every error is one line on stderr (click prints three for a
        usage error, falls back to stdout when stderr is closed, and turns a stop signal or
        a closed pipe outside a command into exit 1)."""
        from gencli import errors

        run: Any = super().main
        if not standalone_mode:
            return run(*args, standalone_mode=False, **kwargs)
        try:
            code = run(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _print_error(f"{exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # click's word for a KeyboardInterrupt outside a command
            if isinstance(exc.__cause__, KeyboardInterrupt) or errors.pending_signal is not None:
                signum = getattr(exc.__cause__, "signum", None) or errors.pending_signal
                stopped = _interrupted(signum)
                _print_error(stopped.format_message())
                sys.exit(stopped.exit_code)
            _print_error("aborted")
            sys.exit(1)
        except QuietExit as exc:
            sys.exit(exc.code)
        except SystemExit:
            if type(sys.stdout).__name__ == "_PacifyFlushWrapper":  # click met a closed pipe
                sys.exit(EXIT_BROKEN_PIPE)
            raise
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=GencliGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="gencli")
@debug_option
def cli() -> None:
    """Learn the distribution behind a table of numbers, score new rows, draw new ones.

    gencli fits a density (a Gaussian mixture or a kernel density) to the rows of a CSV,
    TSV, NPY or Parquet file by maximum likelihood, saves it as a model file, and uses
    that file to score rows by log-density or to draw new rows. Densities are always in
    the data's own units. Data goes to stdout, messages to stderr, so pipes work.

    \b
    Examples:
      gencli fit sample_data/iris.csv -k 3 -o iris.pkl
      gencli score iris.pkl sample_data/iris.csv -o scores.csv
      gencli sample iris.pkl -n 1000 > synthetic.csv
      gencli sample iris.pkl -n 500 | gencli score iris.pkl - -o -
    """


def writes_to_stdout(output: str) -> bool:
    """Whether ``output`` is stdout: '-', or stdout by another name (``/dev/stdout``)."""
    from gencli.atomic import standard_stream

    return standard_stream(output) == 1


def _check_jobs(_ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
    if value == 0:
        raise click.BadParameter("0 candidates at a time cannot run; use -1 (one per core) or 1+")
    return value


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        say(message)


def _json(data: dict[str, Any]) -> str:
    """Strict JSON (NaN and infinities become null); json.dumps escapes control characters."""
    from gencli.report import to_jsonable

    return json.dumps(to_jsonable(data), indent=2, allow_nan=False)


def _emit(summary_lines: list[str], data: dict[str, Any], as_json: bool, to_stderr: bool) -> None:
    """The summary, as lines or JSON, on stdout (or on stderr when stdout carries data)."""
    if as_json:
        if to_stderr:
            say(_json(data), escape=False)
        else:
            out(_json(data), escape=False)
        return
    for line in summary_lines:
        if to_stderr:
            say(line)
        else:
            out(line)


# Options that belong to one family only; giving one to the other family is a usage error.
FOREIGN_OPTIONS = {
    "gmm": ("bandwidth", "kernel", "folds"),
    "kde": ("components", "covariance", "select", "max_iter", "n_init", "tol", "reg_covar", "jobs"),
}


def _reject_foreign_options(ctx: click.Context, family: str) -> None:
    """Options of the other family are a usage error, not silently ignored."""
    for name in FOREIGN_OPTIONS[family]:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} applies to the other --model, not --model {family}")


@cli.command()
@click.argument("data", type=click.Path(path_type=str, allow_dash=True, readable=False))
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
    type=click.Choice(["gmm", "kde"]),
    default="gmm",
    show_default=True,
    help="gmm: Gaussian mixture (EM). kde: kernel density.",
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
    help="[gmm] Covariance of each component; auto searches all four by --select.",
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
    help="[kde] Folds for --bandwidth cv.",
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
    callback=_check_jobs,
    help="[gmm] Candidates fitted side by side, each on one core (-1: one per core). "
    "[default: one per core]",
)
@click.option(
    "--report",
    type=click.Path(path_type=str, dir_okay=False),
    help="Also write a report: JSON, Markdown or a self-contained HTML page, by extension.",
)
@json_option
@quiet_option
@debug_option
def fit(
    data: str,
    output: str,
    family: str,
    columns: list[str] | None,
    data_format: str | None,
    header: bool | None,
    dropna: bool,
    report: str | None,
    as_json: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Fit a density to DATA and write it to a model file.

    DATA is a CSV, TSV, NPY or Parquet file, or '-' for CSV on stdin. A CSV whose first
    row is not all numbers has a header; otherwise columns are named x0, x1, ... Columns
    are standardized before fitting unless --no-standardize; the model's densities are in
    the data's own units either way.

    By default 20% of the rows are held out (--validation): the mixture's number of
    components is chosen among 1..10 by BIC on the other rows, the choice is measured on
    the held-out rows, then refitted on every row. The summary gives the chosen model, the
    mean log-likelihood per row (nats) and bits per dimension on training and held-out
    rows, and any repair made to a fit that broke (one line each on stderr).

    \b
    Examples:
      gencli fit sample_data/iris.csv -o iris.pkl
      gencli fit sample_data/iris.csv -k 3 --validation 0 -o iris3.pkl
      gencli fit sample_data/wine.csv -k 1..6 --covariance auto --report wine.html
      gencli fit sample_data/moons.csv --model kde --bandwidth cv -o moons.pkl
      gencli fit data.parquet --columns height,weight --select heldout
      cat data.csv | gencli fit - -o model.pkl --json
    """
    from gencli.jobs import fit_file

    _reject_foreign_options(click.get_current_context(), family)
    settings = {k: v for k, v in options.items() if k not in FOREIGN_OPTIONS[family]}
    with CandidatePrinter(quiet or as_json) as printer:
        record = fit_file(
            data,
            output,
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
        _say(f"note: {note}", quiet)
    if record["dropped_rows"]:
        _say(f"note: dropped {record['dropped_rows']} rows with missing or infinite values", quiet)
    for line in record["fixes"]:
        _say(f"fixed: {line}", quiet)
    for line in record["warnings"]:
        _say(f"warning: {line}", quiet)
    if as_json or not quiet:
        _emit(_fit_lines(record), record, as_json, to_stderr=False)
    _say(f"wrote {record['model_file']}", quiet)
    for path in record.get("report_files", []):
        _say(f"wrote {path}", quiet)


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fit_lines(record: dict[str, Any]) -> list[str]:
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
        if selection["parameter"] == "components":
            lines.append(f"selected   by {how} among {len(candidates)} candidates")
        else:
            lines.append(f"selected   by {how}")
    lines.append(
        f"data       {record['source']}: {record['rows']} rows x {len(names)} columns"
        f" ({columns})" + (", standardized" if record["standardized"] else "")
    )
    validation = record["validation"]
    if validation is not None:
        lines.append(
            f"held-out   mean log-likelihood {_number(validation['heldout_mean_log_likelihood'])}"
            f" nats/row, {_number(validation['heldout_bits_per_dimension'])} bits/dim "
            f"({validation['heldout_rows']} rows the chosen fit never saw)"
        )
    refit_note = "" if validation is None or validation["refit"] else ", not refitted"
    lines += [
        f"train      mean log-likelihood {record['mean_log_likelihood']:.4f} nats/row, "
        f"{record['bits_per_dimension']:.4f} bits/dim (data units{refit_note})",
        f"time       {record['seconds']:.2f} s",
    ]
    return lines


@cli.command()
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str, readable=False))
@click.argument("data", type=click.Path(path_type=str, allow_dash=True, readable=False))
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.Path(path_type=str, dir_okay=False, allow_dash=True),
    help="Where the scores go, one row per input row: '-' is stdout (the summary then goes "
    "to stderr); a file is written atomically, in the format of its extension.",
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
@format_option
@header_option
@json_option_for("the summary; on stdout with -o FILE, on stderr when the scores are on stdout")
@quiet_option
@debug_option
def score(
    model_file: str,
    data: str,
    output: str,
    output_format: str | None,
    precision: int | None,
    exact: bool,
    approx: bool,
    flag_below: float | None,
    dropna: bool,
    allow_underflow: bool,
    data_format: str | None,
    header: bool | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Score the rows of DATA by their log-density under MODEL.

    Writes one log_density per input row, in input order, to stdout (or -o FILE). The
    log-density is the natural log of the density in the data's own units. Columns are
    matched by name (in any order; extra columns are ignored with a note); data without
    names (NPY, headerless CSV) is matched by position. The summary (rows scored, the mean
    log-likelihood per row in nats, bits per dimension, the total) goes to stderr when the
    scores are on stdout, to stdout when they go to a file. Rows are read, scored and
    written in chunks, so memory stays flat for any file size.

    \b
    Examples:
      gencli score iris.pkl new_rows.csv > scores.csv
      gencli score iris.pkl new_rows.csv -o scores.csv
      gencli score iris.pkl new_rows.csv --flag-below 0.01 -o flagged.csv
      gencli score moons-kde.pkl big.csv --approx -o scores.npy
      gencli score iris.pkl gappy.csv --dropna --precision 6
      gencli sample iris.pkl -n 500 | gencli score iris.pkl -
      gencli sample iris.pkl --format parquet | gencli score iris.pkl - --format parquet
    """
    from gencli.console import progress_bar
    from gencli.jobs import score_file

    if exact and approx:
        raise click.UsageError("--exact and --approx contradict each other; choose one")
    _check_output_format(output, output_format, precision, "--output-format")
    mode = "exact" if exact else "approx" if approx else "fast"
    with progress_bar(None, "scoring", quiet) as progress:
        result = score_file(
            model_file,
            data,
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
        )
    to_stderr = writes_to_stdout(output)  # '-', or /dev/stdout by another name
    for note in result.get("notes", []):
        _say(f"note: {note}", quiet)
    if result["ignored_columns"]:
        _say(
            f"note: ignoring columns not in the model: {', '.join(result['ignored_columns'])}",
            quiet,
        )
    if as_json or not quiet:
        _emit(_score_lines(result), result, as_json, to_stderr=to_stderr)
    if not to_stderr:
        _say(f"wrote {output}", quiet)


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
            f"-inf       {result['underflow_rows']} rows scored -inf (a density of zero, or "
            "below the smallest float)"
        )
    outliers = result["outliers"]
    if outliers is not None:
        lines.append(
            f"outliers   {outliers['count']} rows below {outliers['threshold']:.4f}, the "
            f"{outliers['quantile']:g}-quantile of the held-out rows' log-density"
        )
    return lines


def _check_output_format(
    output: str, output_format: str | None, precision: int | None, flag: str
) -> None:
    """Contradictory output flags are usage errors, found before any work."""
    from gencli.errors import OutputError
    from gencli.writers import BINARY_FORMATS
    from gencli.writers import output_format as format_of

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


@cli.command()
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
@quiet_option
@debug_option
def sample(
    model_file: str,
    num_samples: int,
    output: str,
    data_format: str | None,
    precision: int | None,
    seed: int | None,
    quiet: bool,
) -> None:
    """Draw new rows from MODEL, in the data's own units, with the training column names.

    Every kernel can be sampled: a KDE draw is a random training point plus a draw from
    the kernel. Without --seed each run draws fresh rows. Rows are drawn and written in
    chunks, so memory stays flat for any -n.

    \b
    Examples:
      gencli sample iris.pkl -n 1000 > synthetic.csv
      gencli sample iris.pkl -n 1000 --seed 7 -o synthetic.parquet
      gencli sample iris.pkl -n 10 --precision 4
      gencli sample iris.pkl --format parquet > synthetic.parquet
      gencli sample iris.pkl -n 500 | gencli score iris.pkl -
    """
    from gencli.console import progress_bar
    from gencli.jobs import sample_file

    _check_output_format(output, data_format, precision, "--format")
    with progress_bar(num_samples, "sampling", quiet) as progress:
        result = sample_file(
            model_file,
            num_samples,
            output,
            seed=seed,
            format=data_format,
            precision=precision,
            progress=progress,
        )
    if output != "-":
        _say(f"wrote {result['rows']} rows to {output}", quiet)


def main() -> None:
    """Run the command line: every outcome is data, one line, or usage, with its exit status.

    The stop-signal handlers are installed by :mod:`gencli.__main__` before this module is
    imported; they are installed again here for callers that start at this function.
    """
    from gencli.console import guard_standard_streams
    from gencli.errors import install_stop_handlers

    install_stop_handlers()
    try:
        guard_standard_streams()
        keep_freed_memory()
        _quiet_library_warnings()
        cli.main(prog_name="gencli")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:  # outside the error boundary: while starting or rendering
        from gencli.cli_options import DEBUG

        translated = translate(exc)
        if DEBUG["on"] and not isinstance(translated, (QuietExit, Interrupted)):
            raise
        if isinstance(translated, QuietExit):
            _exit_now(translated.code)
        if isinstance(translated, click.ClickException):
            _print_error(translated.format_message())
            _exit_now(translated.exit_code)
        raise
    _exit_now(code)


def _print_error(message: str) -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"Error: {one_line(message)}\n")
            sys.stderr.flush()


def _quiet_library_warnings() -> None:
    """numpy's floating-point RuntimeWarnings are noise here (every result is checked for
    non-finite values); any other library warning is one escaped ``warning:`` line."""
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)

    def show(message: Any, category: Any, *_args: Any, **_kwargs: Any) -> None:
        _print_warning(f"warning: {category.__name__}: {message}")

    warnings.showwarning = show


def _print_warning(line: str) -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            say(one_line(line))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the system at once.

    numpy's temporaries of more than 128 KiB are otherwise mapped afresh and unmapped on
    every allocation, and in a virtual machine each page first touched costs a fault on
    the host too: the 2-D ``--approx`` evaluation took 43 ms cold against 16 ms with this
    (measured). The heap keeps up to 64 MiB free at its top instead of trimming it; the
    benchmarks' peak memory for fit, score and sample stayed within their run-to-run
    spread. False where this is not Linux with a C library that has mallopt (nothing is
    changed then), or where the library refuses a setting (the others still apply).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        wide = ctypes.sizeof(ctypes.c_void_p) >= 8
    except Exception:  # no C library to load, or one without mallopt
        return False
    settings = (
        # glibc's largest mmap threshold: 32 MiB on 64-bit systems, 512 KiB on 32-bit ones.
        (_M_MMAP_THRESHOLD, 32 << 20 if wide else 512 << 10),
        (_M_TRIM_THRESHOLD, 64 << 20),
        (_M_TOP_PAD, 16 << 20),
    )
    return all([mallopt(option, value) == 1 for option, value in settings])


def _exit_now(code: Any) -> None:
    """End the process without unloading the interpreter.

    Tearing down scikit-learn, scipy and their thread pools takes 0.15-0.2 s after a fit
    has finished; by this point every output file has been written and renamed, and
    gencli registers no exit handlers, so nothing is lost. Output still buffered on stdout
    is flushed first: a reader that went away ends the process quietly with 141 (as
    coreutils do), any other failure (a full disk, a closed stdout) is one error line.
    """
    if code is None:
        code = 0
    if not isinstance(code, int):
        raise SystemExit(code)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    except Exception as exc:  # a full disk or a closed stdout (see console._StdoutRaw)
        if code == 0:  # else the error that ended the run has been said already
            from gencli.atomic import reason

            why = (
                str(exc)
                if isinstance(exc, GencliError)
                else f"cannot write to stdout: {reason(exc) if isinstance(exc, OSError) else exc}"
            )
            _print_error(f"{why}; what was printed is incomplete")
            code = 1
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.flush()
    os._exit(code)


cli.add_command(curse)
cli.add_command(inspect)
cli.add_command(evaluate)
