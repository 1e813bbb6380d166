"""Streaming tables: read in chunks so memory stays flat whatever the row count.

``score`` reads a chunk, works on it, writes it (see :mod:`gencli.writers`) and forgets it.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

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
)
from gencli.errors import DataError

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
