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
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from gencli.atomic import atomic_write
from gencli.data import (
    _check_readable,
    _explain_csv_error,
    _from_arrow,
    _sniff,
    column_names,
    default_names,
    format_for,
    read_table,
    require_finite,
    require_numeric,
    write_all,
)
from gencli.errors import DataError, OutputError, raise_if_stopped

CHUNK_ROWS = 1 << 16
_CSV_BLOCK_BYTES = 1 << 20  # larger blocks make arrow's reader hold ~200 MB (measured)


@dataclass
class TableStream:
    """Column names and an iterator of float64 blocks of rows, in file order."""

    columns: list[str]
    named: bool
    source: str
    chunks: Iterator[np.ndarray]


class _Prefixed(io.RawIOBase):
    """A stream that yields ``head`` and then the rest of ``tail`` (stdin after a peek)."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._tail.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def stream_table(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    stdin: IO[bytes] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> TableStream:
    """Open a table for reading in chunks; CSV/TSV and Parquet stream, NPY is memory-mapped."""
    is_stdin = str(source) == "-"
    if not is_stdin:
        _check_readable(Path(source))
    fmt = format_for(source, format)
    name = "<stdin>" if is_stdin else str(source)
    if fmt in ("csv", "tsv"):
        return _stream_delimited(source, name, "\t" if fmt == "tsv" else ",", stdin)
    if fmt == "parquet" and not is_stdin:
        return _stream_parquet(Path(source), name, chunk_rows)
    if fmt == "npy" and not is_stdin:
        return _stream_npy(Path(source), name, chunk_rows)
    table = read_table(source, format=fmt, stdin=stdin, missing_hint="")
    blocks = (table.values[i : i + chunk_rows] for i in range(0, table.n_rows, chunk_rows))
    return TableStream(table.columns, table.named, table.source, blocks)


def _stream_delimited(
    source: str | os.PathLike[str], name: str, delimiter: str, stdin: IO[bytes] | None
) -> TableStream:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if str(source) == "-":
        raw: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
    else:
        raw = open(source, "rb")  # noqa: SIM115 - closed when the stream ends
    head = raw.read(1 << 16)
    if not head.strip():
        raise DataError(f"{name}: is empty; it needs a table of numbers")
    delimiter, has_header = _sniff(head, name, delimiter)
    stream: Any
    is_stdin = raw is stdin or raw is sys.stdin.buffer
    at_end = False
    if len(head) < (1 << 16):
        more = raw.read(1)
        at_end = not more
        head += more
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if at_end:
        # All of it is in hand. (Arrow cannot read a one-line file without a final newline.)
        if not is_stdin:
            raw.close()
        stream = pa.BufferReader(head if head.endswith(b"\n") else head + b"\n")
    elif is_stdin:
        stream = io.BufferedReader(_Prefixed(head, raw), buffer_size=1 << 20)
    else:
        raw.close()
        stream = str(source)  # arrow reads a path itself, with less memory (it skips a BOM)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                autogenerate_column_names=not has_header,
                block_size=_CSV_BLOCK_BYTES,
                use_threads=False,
            ),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                true_values=["true", "True", "TRUE"], false_values=["false", "False", "FALSE"]
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _explain_csv_error(exc, head, name, delimiter) from exc
    names = list(reader.schema.names) if has_header else default_names(len(reader.schema))
    columns = column_names(names, name, named=has_header)

    def blocks() -> Iterator[np.ndarray]:
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    raise _explain_csv_error(exc, head, name, delimiter) from exc
                table = pa.Table.from_batches([batch]).rename_columns(names)
                raw_table = _from_arrow(table, name, named=has_header)
                yield require_numeric(raw_table).values
        finally:
            reader.close()

    return TableStream(columns, has_header, name, blocks())


def _stream_parquet(path: Path, name: str, chunk_rows: int) -> TableStream:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"{name}: is not a readable Parquet file ({exc}); check the file") from exc
    names = list(handle.schema_arrow.names)

    def blocks() -> Iterator[np.ndarray]:
        import pyarrow as pa

        for batch in handle.iter_batches(batch_size=chunk_rows):
            table = _from_arrow(pa.Table.from_batches([batch]), name, named=True)
            yield require_numeric(table).values

    columns = column_names(names, name, named=True) if names else []
    return TableStream(columns, True, name, blocks())


def _stream_npy(path: Path, name: str, chunk_rows: int) -> TableStream:
    table = (
        read_table(path, format="npy", missing_hint="") if path.stat().st_size < (1 << 26) else None
    )
    if table is not None:
        blocks = (table.values[i : i + chunk_rows] for i in range(0, table.n_rows, chunk_rows))
        return TableStream(table.columns, False, name, blocks)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{name}: is not a readable NPY file ({exc}); check the file") from exc
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise DataError(
            f"{name}: holds a {array.ndim}-D array of {array.dtype}; save a 2-D numeric array"
        )
    chunks = (
        np.ascontiguousarray(array[i : i + chunk_rows], dtype=np.float64)
        for i in range(0, array.shape[0], chunk_rows)
    )
    return TableStream(default_names(array.shape[1]), False, name, chunks)


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
