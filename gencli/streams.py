"""Streaming tables: read and write in chunks so memory stays flat whatever the row count.

``score`` and ``sample`` read a chunk, work on it, write it and forget it. Output goes to
a temporary file that replaces the target only when every chunk is written (see
:mod:`gencli.atomic`), so an interrupted run never leaves a partial file. The bytes
written are the same as the all-at-once path's (tests check it).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import numpy as np

from gencli.atomic import atomic_write
from gencli.data import format_for, require_finite, write_all
from gencli.errors import DataError, OutputError, raise_if_stopped
from gencli.sources import check_input, open_input

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


def stream_table(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    stdin: IO[bytes] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    header: bool | None = None,
) -> TableStream:
    """Open a table for reading in blocks of at most ``chunk_rows`` rows (fewer for wide
    tables, see :func:`gencli.table.block_rows`), from a file or a pipe, with memory that
    does not grow with the number of rows.

    ``header`` is as for :func:`gencli.data.read_table`: CSV/TSV decide it the same way.
    Every format streams: CSV/TSV in blocks of lines, NPY a block of rows at a time, and
    Parquet a batch at a time (from a pipe, after reading its bytes within the budget).
    """
    check_input(source)
    fmt = format_for(source, format)
    handle = open_input(source, stdin)
    try:
        if fmt in ("csv", "tsv"):
            from gencli.csvread import stream_delimited

            delimiter = "\t" if fmt == "tsv" else ","
            columns, named, notes, blocks = stream_delimited(handle, delimiter, header, chunk_rows)
            return TableStream(columns, named, handle.name, blocks, notes)
        if fmt == "npy":
            from gencli.binread import stream_npy

            names, blocks = stream_npy(handle, chunk_rows)
            return TableStream(names, False, handle.name, blocks)
        from gencli.binread import open_parquet, stream_parquet

        parquet = open_parquet(handle)
        names, blocks = stream_parquet(parquet, handle.name, chunk_rows)
        from gencli.table import column_names

        return TableStream(column_names(names, handle.name, named=True), True, handle.name, blocks)
    except BaseException:
        handle.close()
        raise


def finite_chunks(
    stream: TableStream, columns: Sequence[str] | None = None
) -> Iterator[np.ndarray]:
    """The stream's chunks, refusing missing or infinite values with their row number."""
    from gencli.data import Table

    offset = 0
    for chunk in stream.chunks:
        if not np.all(np.isfinite(chunk)):
            names = list(columns) if columns is not None else stream.columns
            try:
                require_finite(Table(chunk, names, stream.named, stream.source), hint="")
            except DataError as exc:
                raise DataError(_shift_rows(str(exc), offset)) from None
        offset += chunk.shape[0]
        yield chunk


def _shift_rows(message: str, offset: int) -> str:
    """Rewrite 'at row 3, 7' in a chunk's message to rows counted from the file's start."""
    import re

    def shift(match: re.Match[str]) -> str:
        numbers = [str(int(n) + offset) for n in re.findall(r"\d+", match.group(2))]
        return match.group(1) + ", ".join(numbers)

    return re.sub(r"(at row )(\d+(?:, \d+)*)", shift, message, count=1)


# ----------------------------------------------------------------------------- writing


def _arrow_table(values: np.ndarray, flags: Mapping[str, np.ndarray], names: list[str]) -> Any:
    """An arrow table over float64 columns and boolean flags, built from raw buffers.

    ``pa.array`` and ``pa.table`` import pandas (0.2 s) to check for pandas objects; a
    column of doubles or a packed bitmap needs no such check.
    """
    import pyarrow as pa

    n = values.shape[0]
    arrays = [
        pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(values[:, j].copy())])
        for j in range(values.shape[1])
    ]
    for flag in flags.values():
        bits = np.packbits(np.asarray(flag, dtype=bool), bitorder="little")
        arrays.append(pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)]))
    return pa.Table.from_arrays(arrays, names=names)


class TableWriter:
    """Writes chunks of a table to a file (atomically) or as CSV to stdout."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str],
        flags: Sequence[str] = (),
        *,
        format: str | None = None,
        stdout: IO[bytes] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.flags = list(flags)
        self.to_stdout = str(path) == "-"
        self.fmt = "csv" if self.to_stdout else self._format(path, format)
        self.path = path
        self.stdout = stdout
        self.rows = 0
        self._stack = contextlib.ExitStack()
        self._handle: IO[bytes] | None = None
        self._parquet: Any = None

    @staticmethod
    def _format(path: str | os.PathLike[str], format: str | None) -> str:
        try:
            return format_for(path, format)
        except DataError as exc:
            raise OutputError(str(exc)) from None

    def __enter__(self) -> TableWriter:
        if self.to_stdout:
            self._handle = self.stdout if self.stdout is not None else sys.stdout.buffer
        else:
            self._handle = self._stack.enter_context(atomic_write(self.path))
            if self.fmt == "npy":
                self._handle.write(self._npy_header(0))
        return self

    def _npy_header(self, rows: int) -> bytes:
        """An NPY header whose row count field is padded to a fixed width, so it can be
        rewritten in place once the number of rows is known."""
        width = len(self.columns) + len(self.flags)
        shape = f"({rows:>20d}, {width})"
        text = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
        total = 10 + len(text) + 1
        text += " " * ((64 - total % 64) % 64) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")

    def write(self, values: np.ndarray, flags: Mapping[str, np.ndarray] | None = None) -> None:
        """Append rows (and their boolean flag columns)."""
        raise_if_stopped()
        assert self._handle is not None
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values.reshape(-1, 1)
        flags = flags or {}
        if self.fmt in ("csv", "tsv"):
            write_all(self._handle, self._csv(values, flags, header=self.rows == 0))
        elif self.fmt == "npy":
            extra = [np.asarray(f, dtype=np.float64).reshape(-1, 1) for f in flags.values()]
            write_all(
                self._handle, np.ascontiguousarray(np.hstack([values, *extra]), "<f8").tobytes()
            )
        else:
            self._write_parquet(values, flags)
        self.rows += values.shape[0]

    def _csv(self, values: np.ndarray, flags: Mapping[str, np.ndarray], header: bool) -> bytes:
        import pyarrow.csv as pacsv

        table = _arrow_table(values, flags, [*self.columns, *flags])
        delimiter = "\t" if self.fmt == "tsv" else ","
        out = io.BytesIO()
        if header:  # written here: arrow would quote every name
            out.write(_csv_header([*self.columns, *flags], delimiter))
        if table.num_rows:
            options = pacsv.WriteOptions(include_header=False, delimiter=delimiter)
            pacsv.write_csv(table, out, options)
        return out.getvalue()

    def _write_parquet(self, values: np.ndarray, flags: Mapping[str, np.ndarray]) -> None:
        import pyarrow.parquet as pq

        table = _arrow_table(values, flags, [*self.columns, *flags])
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._handle, table.schema)
        self._parquet.write_table(table)

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            if kind is None:
                self._finish()
        finally:
            self._stack.__exit__(kind, error, trace)

    def _finish(self) -> None:
        raise_if_stopped()
        handle = self._handle
        assert handle is not None
        if self.rows == 0:  # still a valid, empty table with its header
            self.write(np.empty((0, len(self.columns))), {f: np.empty(0) for f in self.flags})
        if self._parquet is not None:
            self._parquet.close()
        if self.fmt == "npy":
            handle.seek(0)
            handle.write(self._npy_header(self.rows))
        if self.to_stdout:
            handle.flush()


def _csv_header(names: Sequence[str], delimiter: str) -> bytes:
    """The header line, names quoted only when needed (and number-like names always, so
    that the header still reads as a header)."""
    import csv

    from gencli.data import _looks_numeric

    out = io.StringIO()
    quote_all = any(map(_looks_numeric, names))
    quoting: Literal[0, 1] = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=quoting).writerow(names)
    return out.getvalue().encode("utf-8")


def progress_bar(total: int | None, label: str, quiet: bool) -> Any:
    """A rich progress bar on stderr when it is a terminal (and not quiet); else a no-op."""
    from gencli.cli_options import stderr_console

    console = None if quiet else stderr_console()
    if console is None or not console.is_terminal:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    )
    return _Progress(progress, total)


class _NoProgress:
    def __enter__(self) -> Callable[[int], None]:
        return lambda rows: None

    def __exit__(self, *exc: object) -> None:
        return None


class _Progress:
    def __init__(self, progress: Any, total: int | None) -> None:
        self.progress = progress
        self.total = total

    def __enter__(self) -> Callable[[int], None]:
        self.progress.start()
        task = self.progress.add_task("rows", total=self.total)
        return lambda rows: self.progress.advance(task, rows)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
