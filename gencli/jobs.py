"""Whole jobs, file to file: what each command does, callable from Python too.

Each function checks its output path before the work starts (so a long fit does not end
in "cannot write"), does the work with the library, writes atomically and returns a
plain summary dictionary that the CLI renders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from gencli.data import format_for, read_table, require_finite, write_table
from gencli.errors import DataError, OutputError
from gencli.model import DensityModel, fit, log_likelihood_summary
from gencli.modelfile import load


def check_output(
    output: str | os.PathLike[str] | None, *inputs: str | os.PathLike[str] | None
) -> None:
    """Refuse an output path that cannot be written or that is one of the inputs."""
    if output is None or str(output) == "-":
        return
    target = Path(output)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name for the output")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{target}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: folder {folder} is not writable; choose another -o path")
    for source in inputs:
        if source is None or str(source) == "-":
            continue
        same = (
            target.exists() and Path(source).exists() and os.path.samefile(target, source)
        ) or target.resolve() == Path(source).resolve()
        if same:
            raise OutputError(
                f"{target}: is also an input; writing it would destroy it. Choose another -o path"
            )


def fit_file(
    data: str | os.PathLike[str],
    output: str | os.PathLike[str] = "model.pkl",
    *,
    model: str = "gmm",
    format: str | None = None,
    columns: Sequence[str] | None = None,
    dropna: bool = False,
    stdin: IO[bytes] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Read ``data``, fit a density, save it to ``output``; return the fit summary."""
    check_output(output, data)
    started = time.perf_counter()
    table = read_table(data, format=format, columns=columns, dropna=dropna, stdin=stdin)
    fitted = fit(table, model, **options)
    fitted.save(output)
    meta = fitted.metadata
    return {
        "model_file": str(output),
        "family": fitted.family,
        "parameters": fitted.describe(),
        "source": table.source,
        "rows": table.n_rows,
        "dropped_rows": table.dropped_rows,
        "columns": fitted.columns,
        "standardized": meta["standardized"],
        "mean_log_likelihood": meta["train_mean_log_likelihood"],
        "bits_per_dimension": meta["train_bits_per_dimension"],
        "seconds": time.perf_counter() - started,
        "data_sha256": meta["data_sha256"],
    }


def score_file(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    format: str | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> dict[str, Any]:
    """Score every row of ``data`` under the model; write ``log_density`` per row to ``output``.

    Columns are matched by name when both sides have names, else by position.
    """
    check_output(output, model_path, data)
    model = load(model_path)
    if output is not None and str(output) != "-":
        format_for(output)
    table = read_table(data, format=format, stdin=stdin, missing_hint="")
    extra = model.extra_columns(table)
    aligned = model.align(table)
    aligned = require_finite(aligned, hint="")
    log_density = model.score_samples(aligned.values)
    if output is not None:
        write_table(log_density.reshape(-1, 1), ["log_density"], output, stdout=stdout)
    summary = log_likelihood_summary(log_density, model.n_features)
    return {
        "model_file": str(model_path),
        "source": table.source,
        "ignored_columns": extra,
        "matched_by": "name" if model.named_columns and table.named else "position",
        **summary,
        "output": None if output is None else str(output),
    }


def sample_file(
    model_path: str | os.PathLike[str],
    n: int,
    output: str | os.PathLike[str] = "-",
    *,
    seed: int | None = None,
    format: str | None = None,
    stdout: IO[bytes] | None = None,
) -> dict[str, Any]:
    """Draw ``n`` rows from the model and write them with the training column names."""
    check_output(output, model_path)
    model: DensityModel = load(model_path)
    if str(output) != "-":
        try:
            format_for(output, format)
        except DataError as exc:
            raise OutputError(str(exc)) from None
    rows = model.sample(n, seed=seed)
    if not np.all(np.isfinite(rows)):
        raise OutputError("the model produced non-finite samples; refit it")
    write_table(rows, model.columns, output, format=format, stdout=stdout)
    return {"model_file": str(model_path), "rows": int(n), "output": str(output), "seed": seed}
