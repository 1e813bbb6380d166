"""Streaming tables: read in chunks so memory stays flat whatever the row count.

``score`` reads a chunk, works on it, writes it (see :mod:`gencli.io.writers`) and forgets it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from gencli.errors import DataError
from gencli.io.data import format_for, require_finite
from gencli.io.sources import check_input, open_input

CHUNK_ROWS = 1 << 16


@dataclass
class TableStream:
    """Column names and an iterator of float64 blocks of rows, in file order; ``notes``
    say what the reader guessed (such as whether the first row is a header)."""

    columns: list[str]
    named: bool
    source: str
    chunks: Iterator[np.ndarray]
    notes: tuple[str, ...] = ()


#: Given a table's column names and whether they are real names, the positions it needs.
UseCols = Callable[[list[str], bool], Sequence[int]]


def stream_table(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    stdin: IO[bytes] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    header: bool | None = None,
    usecols: UseCols | None = None,
    row_groups: Sequence[int] | None = None,
) -> TableStream:
    """Open a table for reading in blocks of at most ``chunk_rows`` rows (fewer for wide
    tables, see :func:`gencli.io.table.block_rows`), from a file or a pipe, with memory that
    does not grow with the number of rows.

    ``header`` is as for :func:`gencli.io.data.read_table`: CSV/TSV decide it the same way.
    ``usecols(columns, named)`` returns the positions of the columns the caller needs (it
    may raise for a missing one); only those must be numbers, the others read as NaN, so a
    text column the model does not use (an id, a label) is simply ignored.
    Every format streams: CSV/TSV in blocks of lines, NPY a block of rows at a time, and
    Parquet a batch at a time (from a pipe, after reading its bytes within the budget;
    only ``row_groups`` when given, a part of the file).
    """
    check_input(source)
    fmt = format_for(source, format)
    handle = open_input(source, stdin)
    try:
        if fmt in ("csv", "tsv"):
            from gencli.io.csvread import stream_delimited

            delimiter = "\t" if fmt == "tsv" else ","
            columns, named, notes, blocks = stream_delimited(
                handle, delimiter, header, chunk_rows, usecols
            )
            return TableStream(columns, named, handle.name, blocks, notes)
        if fmt == "npy":
            from gencli.io.binread import stream_npy

            names, blocks = stream_npy(handle, chunk_rows)
            return TableStream(names, False, handle.name, blocks)
        from gencli.io.binread import open_parquet, stream_parquet
        from gencli.io.table import column_names

        parquet = open_parquet(handle)
        names, blocks = stream_parquet(
            parquet,
            handle.name,
            chunk_rows,
            lambda raw: (
                usecols(column_names(raw, handle.name, named=True), True)
                if usecols is not None
                else range(len(raw))
            ),
            row_groups,
        )
        return TableStream(column_names(names, handle.name, named=True), True, handle.name, blocks)
    except BaseException:
        handle.close()
        raise


def finite_chunks(
    stream: TableStream, columns: Sequence[str] | None = None
) -> Iterator[np.ndarray]:
    """The stream's chunks, refusing missing or infinite values with their row number."""
    from gencli.io.data import Table

    offset = 0
    for chunk in stream.chunks:
        if not np.all(np.isfinite(chunk)):
            names = list(columns) if columns is not None else stream.columns
            try:
                require_finite(Table(chunk, names, stream.named, stream.source), hint="")
            except DataError as exc:
                raise DataError(shift_rows(str(exc), offset)) from None
        offset += chunk.shape[0]
        yield chunk


def shift_rows(message: str, offset: int) -> str:
    """Rewrite 'at row 3, 7' in a chunk's message to rows counted from the file's start."""
    import re

    def shift(match: re.Match[str]) -> str:
        numbers = [str(int(n) + offset) for n in re.findall(r"\d+", match.group(2))]
        return match.group(1) + ", ".join(numbers)

    return re.sub(r"(at row )(\d+(?:, \d+)*)", shift, message, count=1)
