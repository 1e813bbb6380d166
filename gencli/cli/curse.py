"""``gencli curse``: the curse of dimensionality, as a table, sentences and a figure.

Parsing and rendering only: the experiments live in :mod:`gencli.curse.figures`. numpy, scipy
and matplotlib are imported inside the command so that ``gencli --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gencli.cli.options import CONTEXT_SETTINGS, debug_option, seed_option
from gencli.errors import GencliError
from gencli.io.console import out, say, stderr_console, stdout_console

__all__ = ["curse"]


def _parse_dims(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    from gencli.curse.figures import parse_dims

    try:
        return parse_dims(value)
    except GencliError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_plot(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    from gencli.curse.plot import plot_format

    if value is not None:
        try:
            plot_format(value)
        except GencliError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.command("curse", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--dims",
    default="1..1000",
    show_default=True,
    callback=_parse_dims,
    metavar="SPEC",
    help="Dimensions: A..B (log grid, ~4 per decade, ends included), A..B:S (linear "
    "steps), A,B,C (a list), or a comma-separated mix such as 1..10:1,100,1000.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=2),
    default=10_000,
    show_default=True,
    help="Monte Carlo draws per dimension; also the fresh draws the models are scored on.",
)
@click.option(
    "--train",
    type=click.IntRange(min=2),
    default=1_000,
    show_default=True,
    help="Draws the KDE and the GMM learn from.",
)
@click.option(
    "--learn-max-dim",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Fit models only up to this dimension (0: never); the gaps are empty above it.",
)
@seed_option(default=0, help="Seed for every random step.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON on stdout.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the records as CSV on stdout.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_check_plot,
    help="Also write a figure, PNG or SVG by extension (atomically).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no notes on stderr.")
@debug_option
def curse(
    dims: list[int],
    samples: int,
    train: int,
    learn_max_dim: int,
    seed: int,
    as_json: bool,
    as_csv: bool,
    plot: Path | None,
    quiet: bool,
) -> None:
    """Show why learning a density gets hard as the dimension grows.

    For x ~ N(0, I_d) at each dimension d, prints exact figures (closed forms, computed
    in log space so they stay right at d = 1000) beside Monte Carlo ones: where the mass
    lies (a thin shell near radius √d), how little of it is near the mode, how volumes
    and distances concentrate, how many samples a kernel density estimate needs, and how
    much gencli's KDE and a one-Gaussian GMM lose on held-out data. Under the table, a
    few sentences read the numbers aloud. Figures are the same for a given --seed
    whichever other dimensions are in the run.

    \b
    Examples:
      gencli curse
      gencli curse --dims 1,2,10,100,1000
      gencli curse --dims 5..50:5 --samples 2000 --learn-max-dim 0
      gencli curse --dims 1..1000 --plot curse.png
      gencli curse --dims 1..100 --json > curse.json
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv both print to stdout; choose one")

    from gencli.curse.run import run_curse

    if plot is not None:
        from gencli.io.atomic import check_outputs

        check_outputs([plot])  # before minutes of work, not after
    err_console = stderr_console()
    show_progress = not quiet and err_console is not None and err_console.is_terminal
    records = _run_with_progress(
        run_curse,
        err_console if show_progress else None,
        dims=dims,
        samples=samples,
        train=train,
        learn_max_dim=learn_max_dim,
        seed=seed,
    )

    if plot is not None:
        from gencli.curse.plot import write_plot

        write_plot(records, plot, samples=samples, train=train, seed=seed)
        if not quiet:
            say(f"wrote {plot}")

    from gencli.curse import render as curse_render

    if as_json:
        out(curse_render.to_json(records).rstrip("\n"), escape=False)
    elif as_csv:
        out(curse_render.to_csv(records).rstrip("\n"), escape=False)
    else:
        table = stdout_console()
        table.print(curse_render.to_table(records, table.width))
        table.print()
        for sentence in curse_render.explain(records, samples=samples, train=train):
            table.print(sentence, markup=False, highlight=False)


def _run_with_progress(run: Any, console: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Run the experiments, with a transient rich progress bar on ``console`` if given."""
    if console is None:
        return run(**kwargs)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("curse d = {task.fields[dim]}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        dims = kwargs["dims"]
        task = progress.add_task("curse", total=len(dims), dim=dims[0])
        done = iter(dims[1:])

        def advance(d: int) -> None:
            progress.update(task, advance=1, dim=next(done, d))

        return run(on_dim=advance, **kwargs)
