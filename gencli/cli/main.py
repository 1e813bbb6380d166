"""The command line: the ``gencli`` group of commands and the entry point.

A command parses options, makes one library call and renders the result; errors become one
line in :mod:`gencli.cli.boundary`. Heavy libraries are imported inside the commands so that
``gencli --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from gencli._version import __version__
from gencli.cli.boundary import (
    GencliGroup,
    Interrupted,
    QuietExit,
    exit_now,
    print_error,
    quiet_library_warnings,
    translate,
)
from gencli.cli.curse import curse
from gencli.cli.fit import fit
from gencli.cli.inspect_evaluate import evaluate, inspect
from gencli.cli.options import CONTEXT_SETTINGS, debug_option
from gencli.cli.questions import impute, predict
from gencli.cli.score_sample import sample, score
from gencli.native import keep_freed_memory


@click.group(cls=GencliGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="gencli")
@debug_option
def cli() -> None:
    """Learn the distribution behind a table of numbers, score new rows, draw new ones.

    gencli fits a density (a Gaussian mixture or a kernel density) to the rows of a CSV,
    TSV, NPY or Parquet file by maximum likelihood, saves it as a model file, and uses
    that file to score rows by log-density or to draw new rows; marginal and conditional
    densities, filled-in gaps and mixture components come from the same file. Densities
    are always in the data's own units. Data goes to stdout, messages to stderr, so pipes
    work.

    \b
    Examples:
      gencli fit sample_data/iris.csv -k 3 -o iris.pkl
      gencli score iris.pkl sample_data/iris.csv -o scores.csv
      gencli sample iris.pkl -n 1000 > synthetic.csv
      gencli sample iris.pkl -n 500 | gencli score iris.pkl - -o -
      gencli sample iris.pkl -n 5 --given "petal_length=5.1"
      gencli impute iris.pkl sample_data/iris_gaps.csv -o filled.csv
    """


def main() -> None:
    """Run the command line: every outcome is data, one line, or usage, with its exit status.

    The stop-signal handlers are installed by :mod:`gencli.__main__` before this module is
    imported; they are installed again here for callers that start at this function.
    """
    from gencli.audience import process_is_command_line
    from gencli.errors import install_stop_handlers
    from gencli.io.console import guard_standard_streams

    install_stop_handlers()
    process_is_command_line()  # messages name flags, repairs are printed, not warned
    try:
        guard_standard_streams()
        keep_freed_memory()
        quiet_library_warnings()
        cli.main(prog_name="gencli")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:  # outside the error boundary: while starting or rendering
        from gencli.cli.options import DEBUG

        translated = translate(exc)
        if DEBUG["on"] and not isinstance(translated, (QuietExit, Interrupted)):
            raise
        if isinstance(translated, QuietExit):
            exit_now(translated.code)
        if isinstance(translated, click.ClickException):
            print_error(translated.format_message())
            exit_now(translated.exit_code)
        raise
    exit_now(code)


cli.add_command(fit)
cli.add_command(score)
cli.add_command(sample)
cli.add_command(curse)
cli.add_command(inspect)
cli.add_command(evaluate)
cli.add_command(impute)
cli.add_command(predict)
