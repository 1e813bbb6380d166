"""Options and helpers shared by the commands, so every command spells them the same way."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gencli.io.console import say

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DATA_FORMATS = ("csv", "tsv", "npy", "parquet")
COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")
KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")
BANDWIDTH_RULES = ("scott", "silverman", "cv")
SELECTION_CRITERIA = ("bic", "aic", "heldout")
MAX_SEED = 2**32 - 1


#: Whether this run asked for --debug (read by the entry point, outside click's contexts).
DEBUG = {"on": False}


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["gencli.debug"] = True
        DEBUG["on"] = True


def debug_option(func: F) -> F:
    """``--debug``: show the full traceback of an error."""
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_debug,
        help="Show the full traceback when something fails.",
    )(func)


def quiet_option(func: F) -> F:
    """``-q/--quiet``: no summary or notes on stderr."""
    return click.option(
        "-q", "--quiet", is_flag=True, help="Print no summary and no notes, only data and errors."
    )(func)


def json_option(func: F) -> F:
    """``--json``: the summary as JSON on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."
    )(func)


def json_option_for(where: str) -> Callable[[F], F]:
    """``--json`` for a command whose summary is not always on stdout: says where it goes."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {where}, as JSON.")


MAX_ROWS = 2**63 - 1  # a row count must fit numpy's int64


def precision_option(func: F) -> F:
    """``--precision N``: significant digits of the numbers written as text."""
    return click.option(
        "--precision",
        type=click.IntRange(1, 15),
        metavar="N",
        help="Significant digits of each number written as CSV/TSV (1..15). [default: as many "
        "as it takes to read back the very same double, up to 17]",
    )(func)


def format_option(func: F) -> F:
    """``--format``: override the format implied by the extension."""
    return click.option(
        "--format",
        "data_format",
        type=click.Choice(DATA_FORMATS),
        help="Format of DATA when the extension does not say (stdin '-' is CSV by default).",
    )(func)


def header_option(func: F) -> F:
    """``--header/--no-header``: whether a CSV/TSV's first row holds the column names."""
    return click.option(
        "--header/--no-header",
        default=None,
        help="Whether the first row of a CSV/TSV holds column names. [default: decide: a row "
        "with a field that is not a number is a header; a row of numbers is data when it "
        "looks like the rows below it; when gencli has to guess, a note on stderr says what "
        "it guessed]",
    )(func)


class BandwidthType(click.ParamType):
    """A positive number or the name of a rule of thumb."""

    name = "FLOAT|" + "|".join(BANDWIDTH_RULES)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text in BANDWIDTH_RULES:
            return text
        try:
            number = float(text)
        except ValueError:
            self.fail(
                f"'{value}' is neither a positive number nor one of {', '.join(BANDWIDTH_RULES)}",
                param,
                ctx,
            )
        if not (number > 0 and math.isfinite(number)):
            self.fail(f"bandwidth must be a positive number, got {value}", param, ctx)
        return number


def seed_option(default: int | None, help: str) -> Callable[[F], F]:
    """``--seed``: numpy's seeds are 0 .. 2**32 - 1, so other values are a usage error."""
    return click.option(
        "--seed",
        type=click.IntRange(0, MAX_SEED),
        default=default,
        show_default=default is not None,
        help=help,
    )


def _split_columns(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> list[str] | None:
    from gencli.errors import DataError
    from gencli.io.data import parse_columns

    try:
        return parse_columns(value)
    except DataError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def columns_option(func: F) -> F:
    """``--columns a,b,c``: pick columns by name, in that order."""
    return click.option(
        "--columns",
        callback=_split_columns,
        metavar="A,B,...",
        help="Comma-separated column names to use, in that order (default: all).",
    )(func)


class ComponentsType(click.ParamType):
    """A number of components, a range A..B, a list A,B,C, or auto."""

    name = "N|A..B|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, list)):
            return value
        from gencli.fitting.selection import parse_components

        try:
            parse_components(str(value))
        except ValueError as exc:
            self.fail(f"{exc} (give a number, a range such as 1..12, or auto)", param, ctx)
        text = str(value).strip().lower()
        return int(text) if text.isdigit() else text


def _format_candidate(record: dict[str, Any]) -> str:
    if "family" in record:  # --model auto
        from gencli.fitting.names import candidate_name

        if record["status"] != "ok":
            return f"  {candidate_name(record):<34s} {record['status']}"
        return (
            f"  {candidate_name(record):<34s} cross-validated "
            f"{record['cv_mean_log_likelihood']:.4f} ± {record['cv_standard_error']:.4f} nats/row"
        )
    if "bandwidth" in record:
        return (
            f"  bandwidth {record['bandwidth']:<10.4g} cross-validated "
            f"{record['cv_mean_log_likelihood']:.4f} nats/row"
        )
    heldout = record["heldout_mean_log_likelihood"]
    held = f"  held-out {heldout:.4f}" if heldout is not None else ""
    state = "" if record["converged"] else "  (not converged)"
    return (
        f"  K={record['components']:<3d}{record['covariance']:<10s} BIC {record['bic']:<12.2f}"
        f"AIC {record['aic']:<12.2f}{held}{state}"
    )


class CandidatePrinter:
    """Shows each candidate of a model search on stderr as it finishes: above a live
    progress line on a terminal, as plain lines otherwise; nothing when ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Any = None
        self.task: Any = None
        self.count = 0

    def __enter__(self) -> CandidatePrinter:
        from gencli.io.console import stderr_console

        console = None if self.quiet or sys.stderr is None else stderr_console()
        if console is not None and console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("searching: {task.completed} candidates tried"),
                console=console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("search", total=None)
        return self

    def __call__(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.count == 0:
            self._line("candidates:")
        self.count += 1
        self._line(_format_candidate(record))
        if self.progress is not None:
            self.progress.advance(self.task)

    def _line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            say(text)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def check_jobs(_ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
    if value == 0:
        raise click.BadParameter("0 candidates at a time cannot run; use -1 (one per core) or 1+")
    return value


def engine_options(func: F) -> F:
    """``--engine``, ``--scheduler``, ``--workers``, ``--memory-limit``: where the work runs."""
    options = [
        click.option(
            "--engine",
            type=click.Choice(["local", "dask"]),
            default="local",
            show_default=True,
            help="local: in this process. dask: on a Dask cluster (pip install 'gencli[dask]'): "
            "an embedded one of worker processes, or --scheduler's.",
        ),
        click.option(
            "--scheduler",
            metavar="ADDRESS",
            help="[dask] A running Dask scheduler, e.g. tcp://10.0.0.5:8786. [default: "
            "DASK_SCHEDULER_ADDRESS or Dask's config, else an embedded cluster]",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="[dask] Worker processes of the embedded cluster. [default: one per core]",
        ),
        click.option(
            "--memory-limit",
            metavar="SIZE",
            help="[dask] Memory of each embedded worker, e.g. 2GB. [default: the machine's "
            "memory shared among the workers]",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def cluster_settings(
    engine: str, scheduler: str | None, workers: int | None, memory_limit: str | None
) -> Any:
    """The cluster to run on (None for the local engine); dask-only flags without
    ``--engine dask`` are a usage error, as are embedded-cluster flags with --scheduler."""
    given = {"--scheduler": scheduler, "--workers": workers, "--memory-limit": memory_limit}
    if engine == "local":
        flag = next((f for f, v in given.items() if v is not None), None)
        if flag is not None:
            raise click.UsageError(f"{flag} applies to --engine dask; add --engine dask")
        return None
    if scheduler is not None and (workers is not None or memory_limit is not None):
        flag = "--workers" if workers is not None else "--memory-limit"
        raise click.UsageError(
            f"{flag} sizes the embedded cluster; a --scheduler's cluster has its own workers"
        )
    from gencli.engines.dask_jobs import Cluster

    return Cluster(scheduler, workers, memory_limit)
