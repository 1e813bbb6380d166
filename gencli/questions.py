"""Whole jobs that ask a density more than "how likely": conditional samples, imputation
and cluster membership, file to file, streamed, with the same checks as every other job.

``sample --given`` draws from the model conditioned on fixed values
(:meth:`gencli.density.model.DensityModel.condition`), ``--given-file`` on each row of a
file in turn; ``impute`` fills the empty cells of each row from the conditional given its
observed cells (:mod:`gencli.density.imputation`); ``predict`` gives each row's most likely
mixture component and its posterior probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

from gencli.density.model import DensityModel
from gencli.density.modelfile import load
from gencli.density.modelparts import sample_entropy
from gencli.engines.local import sample_chunks
from gencli.errors import DataError
from gencli.io.atomic import check_outputs
from gencli.io.data import read_table
from gencli.io.sources import check_input
from gencli.io.streams import TableStream, stream_table
from gencli.io.table import Table
from gencli.io.writers import TableWriter
from gencli.io.writers import output_format as format_of_output

Progress = Callable[[int], None] | None
#: Rows ``impute --draws`` fills at a time: at most this many output rows (draws included).
OUTPUT_ROWS = 65_536


def parse_given(text: str) -> dict[str, float]:
    """``"a=1.5,b=2"`` as ``{"a": 1.5, "b": 2.0}``, or a one-line DataError."""
    given: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DataError(f"--given '{text}': write NAME=VALUE pairs separated by commas")
        if name in given:
            raise DataError(f"--given '{text}': '{name}' is given twice")
        try:
            given[name] = float(value)
        except ValueError:
            raise DataError(f"--given '{text}': '{value.strip()}' is not a number") from None
    return given


def sample_given(
    model_path: str | os.PathLike[str],
    n: int,
    output: str | os.PathLike[str] = "-",
    *,
    given: dict[str, float] | None = None,
    given_file: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    format: str | None = None,
    precision: int | None = None,
    given_format: str | None = None,
    header: bool | None = None,
    stdout: IO[bytes] | None = None,
    progress: Progress = None,
) -> dict[str, Any]:
    """Draw ``n`` rows from the model given ``given`` (column values), or ``n`` rows for
    each row of ``given_file`` (with a first column ``row``, counting from 1). Rows carry
    every model column, the given ones included, in the model's order."""
    if (given is None) == (given_file is None):
        raise DataError("give either the column values (given) or a file of them (given_file)")
    inputs = [model_path] if given_file is None else [model_path, given_file]
    if given_file is not None:
        check_input(given_file)
    check_outputs([output], inputs)
    format_of_output(output, format)
    model = load(model_path)
    if given is not None:
        conditioned = model.condition(given)
        with TableWriter(
            output, model.columns, format=format, precision=precision, rows=n, stdout=stdout
        ) as writer:
            for chunk in sample_chunks(conditioned, n, seed=seed):
                writer.write(_complete(model, conditioned, chunk, given))
                if progress is not None:
                    progress(chunk.shape[0])
        return {"model_file": str(model_path), "rows": n, "output": str(output), "given": given}
    assert given_file is not None  # checked above: one of the two
    table = read_table(
        given_file,
        format=given_format,
        header=header,
        missing_hint="",  # sample has no --dropna: every given row needs its values
    )
    names = _given_names(model, table)
    entropy = sample_entropy(seed)
    with TableWriter(
        output, [free_name("row", model.columns), *model.columns], format=format,
        precision=precision, whole=1,
        rows=n * table.n_rows, stdout=stdout,
    ) as writer:  # fmt: skip
        for i, values in enumerate(table.values):
            row = dict(zip(names, (float(v) for v in values), strict=True))
            try:
                conditioned = model.condition(row)
            except DataError as exc:
                raise DataError(f"{table.source}: row {i + 1}: {exc}") from None
            child = int(np.random.SeedSequence(entropy, spawn_key=(i,)).generate_state(1)[0])
            for chunk in sample_chunks(conditioned, n, seed=child):
                full = _complete(model, conditioned, chunk, row)
                writer.write(np.column_stack([np.full(chunk.shape[0], i + 1.0), full]))
                if progress is not None:
                    progress(chunk.shape[0])
    return {
        "model_file": str(model_path),
        "rows": n * table.n_rows,
        "given_rows": table.n_rows,
        "output": str(output),
    }


def free_name(base: str, columns: list[str]) -> str:
    """``base``, or ``base_`` (``base__``, ...) when a model column already has that name."""
    while base in columns:
        base += "_"
    return base


def _given_names(model: DensityModel, table: Table) -> list[str]:
    if not table.named:
        raise DataError(
            f"{table.source}: --given-file needs a header naming the given columns (some of "
            f"{', '.join(model.columns)})"
        )
    unknown = [c for c in table.columns if c not in model.columns]
    if unknown:
        raise DataError(
            f"{table.source}: the model has no column '{unknown[0]}'; its columns are "
            f"{', '.join(model.columns)}"
        )
    return list(table.columns)


def _complete(
    model: DensityModel, conditioned: DensityModel, chunk: np.ndarray, given: dict[str, float]
) -> np.ndarray:
    """Drawn rows of the free columns with the given values put back, in model order."""
    rows = np.empty((chunk.shape[0], model.n_features))
    for j, name in enumerate(conditioned.columns):
        rows[:, model.columns.index(name)] = chunk[:, j]
    for name, value in given.items():
        rows[:, model.columns.index(name)] = value
    return rows


def _open_rows(
    model_path: Any, data: Any, output: Any, fmt: Any, output_format: Any, header: Any, stdin: Any
) -> tuple[DensityModel, TableStream, list[int], list[str]]:
    """The model and DATA's rows in the model's columns, after the usual checks."""
    check_input(data)
    check_outputs([output], [model_path, data])
    format_of_output(output, output_format)
    model = load(model_path)
    stream = stream_table(
        data, format=fmt, stdin=stdin, header=header, usecols=model.usecols(str(data))
    )
    names = Table(np.empty((0, len(stream.columns))), stream.columns, stream.named, stream.source)
    return model, stream, model.column_picks(names), model.extra_columns(names)


def _blocks(
    stream: TableStream, picks: list[int], keep_nan: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """(rows read before, the block in model columns); infinities (and, unless
    ``keep_nan``, missing cells) refused with their row."""
    offset = 0
    for chunk in stream.chunks:
        X = chunk[:, picks]
        bad = np.isinf(X) if keep_nan else ~np.isfinite(X)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            what = "an infinite value" if np.isinf(X[i, j]) else "a missing value"
            name = stream.columns[picks[j]] if stream.named else f"x{picks[j]}"
            cure = "fix the row" if keep_nan else "fill it first with gencli impute"
            raise DataError(
                f"{stream.source}: row {offset + i + 1} has {what} in column '{name}'; {cure}"
            )
        yield offset, X
        offset += X.shape[0]


def impute_file(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    output: str | os.PathLike[str] = "-",
    *,
    draws: int | None = None,
    seed: int | None = None,
    format: str | None = None,
    output_format: str | None = None,
    precision: int | None = None,
    header: bool | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    progress: Progress = None,
) -> dict[str, Any]:
    """Fill the empty (or NaN) cells of every row of ``data`` with the conditional mean given
    the row's observed cells, or with ``draws`` conditional draws per row (long format: the
    columns ``row`` and ``draw`` first). Rows with nothing missing pass through unchanged."""
    from gencli.density.imputation import check_supported, fill

    check_draws(draws)
    model, stream, picks, extra = _open_rows(
        model_path, data, output, format, output_format, header, stdin
    )
    check_supported(model, "impute")
    entropy = sample_entropy(seed)
    labels = [free_name("row", model.columns), free_name("draw", model.columns)]
    names = model.columns if draws is None else [*labels, *model.columns]
    rows = filled_rows = 0
    cells = dict.fromkeys(model.columns, 0)
    with TableWriter(
        output, names, format=output_format, precision=precision,
        whole=0 if draws is None else 2, stdout=stdout,
    ) as writer:  # fmt: skip
        for index, (offset, X) in enumerate(_blocks(stream, picks, keep_nan=True)):
            missing = np.isnan(X)
            rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
            step = max(1, OUTPUT_ROWS // (draws or 1))  # rows x draws stays bounded
            for start in range(0, X.shape[0], step):
                part = X[start : start + step]
                try:
                    filled = fill(model, part, draws, rng)
                except DataError as exc:
                    where = _row_of(model, part, offset + start)
                    raise DataError(f"{stream.source}: {where}{exc}") from None
                if draws is not None:
                    first = offset + start + 1
                    ids = np.repeat(np.arange(first, first + part.shape[0]), draws)
                    draw = np.tile(np.arange(1, draws + 1), part.shape[0])
                    filled = np.column_stack([ids, draw, filled])
                writer.write(filled)
            rows += X.shape[0]
            filled_rows += int(missing.any(axis=1).sum())
            for j, name in enumerate(model.columns):
                cells[name] += int(missing[:, j].sum())
            if progress is not None:
                progress(X.shape[0])
        if rows == 0:
            raise DataError(f"{stream.source}: has no data rows; nothing to impute")
    return {
        "model_file": str(model_path), "source": stream.source, "output": str(output),
        "draws": draws, "ignored_columns": extra, "notes": list(stream.notes), "rows": rows,
        "rows_filled": filled_rows, "cells": cells,
    }  # fmt: skip


def check_draws(draws: Any) -> None:
    """``draws``: None (conditional means) or a whole number from 1 to 10,000."""
    if draws is not None and (
        isinstance(draws, bool)
        or not isinstance(draws, (int, np.integer))
        or not 1 <= draws <= 10_000
    ):
        raise DataError(f"draws must be a whole number from 1 to 10,000 (or None), not {draws!r}")


def _row_of(model: DensityModel, X: np.ndarray, offset: int) -> str:
    """'row N: ' for the first row of ``X`` that cannot be filled alone (an error path)."""
    from gencli.density.imputation import fill

    for i in range(X.shape[0]):
        try:
            fill(model, X[i : i + 1])
        except DataError:
            return f"row {offset + i + 1}: "
    return ""


def _unplaceable(model: DensityModel, row: np.ndarray) -> bool:
    from gencli.density.imputation import component_log_probabilities

    try:
        component_log_probabilities(model, row)
    except DataError:
        return True
    return False


def predict_file(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    output: str | os.PathLike[str] = "-",
    *,
    proba: bool = False,
    format: str | None = None,
    output_format: str | None = None,
    precision: int | None = None,
    header: bool | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    progress: Progress = None,
) -> dict[str, Any]:
    """Each row's most likely mixture component (``component``, counting from 0 as
    scikit-learn does) and, with ``proba``, every component's posterior probability."""
    from gencli.density.imputation import component_log_probabilities

    model, stream, picks, extra = _open_rows(
        model_path, data, output, format, output_format, header, stdin
    )
    if model.family != "gmm":
        raise DataError(
            f"{model_path}: predict needs a Gaussian mixture (this is a {model.family} model, "
            "whose 'components' are its training points); fit with --model gmm"
        )
    from gencli.density.imputation import check_supported

    check_supported(model, "predict")
    k = len(model.params["weights"])
    names = ["component", *([f"p_{c}" for c in range(k)] if proba else [])]
    counts = np.zeros(k, dtype=np.int64)
    rows = 0
    with TableWriter(
        output, names, format=output_format, precision=precision, whole=1, stdout=stdout
    ) as writer:
        for offset, X in _blocks(stream, picks, keep_nan=False):
            try:
                log_p = component_log_probabilities(model, X)
            except DataError as exc:
                bad = next(i for i in range(X.shape[0]) if _unplaceable(model, X[i : i + 1]))
                raise DataError(f"{stream.source}: row {offset + bad + 1}: {exc}") from None
            best = np.argmax(log_p, axis=1)
            counts += np.bincount(best, minlength=k)
            columns = [best.astype(np.float64)] + ([np.exp(log_p)] if proba else [])
            writer.write(np.column_stack(columns))
            rows += X.shape[0]
            if progress is not None:
                progress(X.shape[0])
        if rows == 0:
            raise DataError(f"{stream.source}: has no data rows; nothing to predict")
    return {
        "model_file": str(model_path), "source": stream.source, "output": str(output),
        "rows": rows, "components": counts.tolist(), "ignored_columns": extra,
        "notes": list(stream.notes),
    }  # fmt: skip
