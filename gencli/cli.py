"""The command line: parse options, make one library call, render the result.

This is the only place where library errors become ``Error: ...`` lines (exit 1); bad
flags are click usage errors (exit 2). Heavy libraries are imported inside the commands so
that ``gencli --help`` stays fast.
"""

from __future__ import annotations

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
    SELECTION_CRITERIA,
    BandwidthType,
    CandidatePrinter,
    ComponentsType,
    columns_option,
    debug_option,
    format_option,
    json_option,
    quiet_option,
    seed_option,
)
from gencli.cli_report import evaluate, inspect
from gencli.errors import GencliError, Stopped

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Interrupted(click.ClickException):
    """The run was interrupted; no output file was written."""

    exit_code = EXIT_SIGINT


class Terminated(Interrupted):
    """The run was stopped by SIGTERM; no output file was written."""

    exit_code = EXIT_SIGTERM


def one_line(message: str) -> str:
    """Messages quote library errors and names that may hold newlines: keep them one line."""
    return " ".join(message.split())


class GencliGroup(click.Group):
    """The one error boundary: every error is one line, tracebacks need --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GencliError as exc:
            if ctx.meta.get("gencli.debug"):
                raise
            raise click.ClickException(one_line(str(exc))) from None
        except KeyboardInterrupt as exc:
            if isinstance(exc, Stopped) and exc.signum == signal.SIGTERM:
                raise Terminated("terminated; no output file was written") from None
            raise Interrupted("interrupted; no output file was written") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click stops quietly on a closed pipe (`gencli sample ... | head`)
        except Exception as exc:
            if ctx.meta.get("gencli.debug"):
                raise
            raise click.ClickException(
                one_line(
                    f"unexpected {type(exc).__name__}: {exc}; rerun with --debug and report it"
                )
            ) from None

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Like click's, but a usage error is one line too (click prints three)."""
        run: Any = super().main
        if not standalone_mode:
            return run(*args, standalone_mode=False, **kwargs)
        try:
            code = run(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
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


def _check_jobs(_ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
    if value == 0:
        raise click.BadParameter("0 candidates at a time cannot run; use -1 (one per core) or 1+")
    return value


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        click.echo(message, err=True)


def _emit(summary_lines: list[str], data: dict[str, Any], as_json: bool, to_stderr: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default))
    else:
        for line in summary_lines:
            click.echo(line, err=to_stderr)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")


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
@click.argument("data", type=click.Path(path_type=str, allow_dash=True))
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
            dropna=dropna,
            report=report,
            on_candidate=printer,
            background_import=True,
            **settings,
        )
    if record["dropped_rows"]:
        _say(f"note: dropped {record['dropped_rows']} rows with missing or infinite values", quiet)
    for line in record["fixes"]:
        _say(f"fixed: {line}", quiet)
    for line in record["warnings"]:
        _say(f"warning: {line}", quiet)
    if quiet and not as_json:
        return
    _emit(_fit_lines(record), record, as_json, to_stderr=False)


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
        f"wrote      {record['model_file']}",
    ]
    if record.get("report_file"):
        lines.append(f"report     {record['report_file']}")
    return lines


@cli.command()
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str))
@click.argument("data", type=click.Path(path_type=str, allow_dash=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=str, dir_okay=False, allow_dash=True),
    help="Write one log_density per input row (CSV/TSV/NPY/Parquet by extension; '-' is CSV "
    "on stdout, with the summary on stderr).",
)
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
@format_option
@json_option
@quiet_option
@debug_option
def score(
    model_file: str,
    data: str,
    output: str | None,
    exact: bool,
    approx: bool,
    flag_below: float | None,
    data_format: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Score the rows of DATA by their log-density under MODEL.

    Columns are matched by name (in any order; extra columns are ignored with a note).
    Data without names (NPY, headerless CSV) is matched by position. The log-density is
    the natural log of the density in the data's own units. Prints the rows scored, the
    mean log-likelihood per row (nats), bits per dimension and the total log-likelihood.
    Rows are read, scored and written in chunks, so memory stays flat for any file size.

    \b
    Examples:
      gencli score iris.pkl new_rows.csv
      gencli score iris.pkl new_rows.csv -o scores.csv
      gencli score iris.pkl new_rows.csv --flag-below 0.01 -o flagged.csv
      gencli score moons-kde.pkl big.csv --approx -o scores.npy
      gencli sample iris.pkl -n 500 | gencli score iris.pkl - -o - > scores.csv
    """
    from gencli.jobs import score_file
    from gencli.streams import progress_bar

    if exact and approx:
        raise click.UsageError("--exact and --approx contradict each other; choose one")
    mode = "exact" if exact else "approx" if approx else "fast"
    with progress_bar(None, "scoring", quiet) as progress:
        result = score_file(
            model_file,
            data,
            output,
            format=data_format,
            flag_below=flag_below,
            mode=mode,
            progress=progress,
        )
    to_stderr = output == "-"
    if result["ignored_columns"]:
        _say(
            f"note: ignoring columns not in the model: {', '.join(result['ignored_columns'])}",
            quiet,
        )
    if quiet and not as_json:
        return
    lines = [
        f"rows       {result['rows']} from {result['source']} (columns matched by "
        f"{result['matched_by']})",
        f"mean       {result['mean_log_likelihood']:.4f} nats/row log-likelihood",
        f"bits/dim   {result['bits_per_dimension']:.4f}",
        f"total      {result['total_log_likelihood']:.4f} nats",
    ]
    outliers = result["outliers"]
    if outliers is not None:
        lines.append(
            f"outliers   {outliers['count']} rows below {outliers['threshold']:.4f}, the "
            f"{outliers['quantile']:g}-quantile of the held-out rows' log-density"
        )
    if output not in (None, "-"):
        lines.append(f"wrote      {output}")
    if as_json and to_stderr:
        click.echo(json.dumps(result, indent=2, default=_json_default), err=True)
        return
    _emit(lines, result, as_json, to_stderr=to_stderr)


@cli.command()
@click.argument("model_file", metavar="MODEL", type=click.Path(path_type=str))
@click.option(
    "-n",
    "--num-samples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Rows to draw.",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.Path(path_type=str, dir_okay=False, allow_dash=True),
    help="Where to write: '-' is CSV on stdout; else CSV/TSV/NPY/Parquet by extension.",
)
@click.option(
    "--format",
    "data_format",
    type=click.Choice(DATA_FORMATS),
    help="Output format when the extension does not say.",
)
@seed_option(default=None, help="Seed; the same seed gives identical rows. [default: random]")
@quiet_option
@debug_option
def sample(
    model_file: str,
    num_samples: int,
    output: str,
    data_format: str | None,
    seed: int | None,
    quiet: bool,
) -> None:
    """Draw new rows from MODEL, in the data's own units, with the training column names.

    Every kernel can be sampled: a KDE draw is a random training point plus a draw from
    the kernel. Without --seed each run draws fresh rows.

    \b
    Examples:
      gencli sample iris.pkl -n 1000 > synthetic.csv
      gencli sample iris.pkl -n 1000 --seed 7 -o synthetic.parquet
      gencli sample iris.pkl -n 500 | gencli score iris.pkl - -o -
    """
    from gencli.jobs import sample_file
    from gencli.streams import progress_bar

    with progress_bar(num_samples, "sampling", quiet) as progress:
        result = sample_file(
            model_file, num_samples, output, seed=seed, format=data_format, progress=progress
        )
    if output != "-":
        _say(f"wrote {result['rows']} rows to {output}", quiet)


def _on_stop_signal(signum: int, _frame: Any) -> None:
    from gencli import errors

    errors.pending_signal = signum
    raise Stopped(signum)


def main() -> None:
    """Console entry point: SIGTERM unwinds like Ctrl-C so no partial file is left."""
    keep_freed_memory()
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    try:
        cli.main(prog_name="gencli")
    except KeyboardInterrupt:  # outside the error boundary: while parsing or rendering
        click.echo("Error: interrupted", err=True)
        _exit_now(EXIT_SIGINT)
    except SystemExit as exc:
        _exit_now(exc.code)


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
    gencli registers no exit handlers, so nothing is lost. Output still buffered is
    flushed first; if that fails (a closed pipe), the normal exit handles it.
    """
    if code is None:
        code = 0
    if not isinstance(code, int):
        raise SystemExit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        raise SystemExit(code) from None
    os._exit(code)


cli.add_command(curse)
cli.add_command(inspect)
cli.add_command(evaluate)
