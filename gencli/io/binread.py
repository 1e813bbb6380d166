"""Reading NPY and Parquet by what they declare, checked before anything is allocated.

A small file can declare a huge table: an NPY header can claim any shape, and a Parquet
file of 300 million zeros compresses to 1.4 MB. So the declared size is read first (the
NPY header, the Parquet footer), checked against the file itself and against the memory
budget (:func:`gencli.limits.check_memory`), and only then is anything decoded. ``score``
reads both in blocks of rows, so its memory stays flat however large the table is.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import DataError, GencliError
from gencli.io.sources import Input, read_all
from gencli.io.table import (
    BadCell,
    RawTable,
    block_rows,
    count,
    default_names,
    first_value,
    from_arrow,
    is_number_type,
    non_numeric_error,
    shown,
)
from gencli.limits import check_memory, format_size

_MAX_NPY_HEADER = 1 << 16
_HINT = "use a smaller table, or allow more memory (GENCLI_MEMORY_LIMIT)"


# ----------------------------------------------------------------------------- NPY


@dataclass(frozen=True)
class NpyLayout:
    """What an NPY header declares, checked: a 2-D shape (1-D is one column) of numbers."""

    shape: tuple[int, int]
    dtype: np.dtype[Any]
    fortran: bool
    offset: int  # where the values start

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def describe(self, name: str) -> str:
        return f"reading {name} ({count(self.shape[0], 'row')} x {count(self.shape[1], 'column')})"


def read_npy_header(source: Input) -> NpyLayout:
    """Parse and check the header of an NPY file or stream (without numpy's loader)."""
    name = source.name
    start = source.read(10)
    if not start.startswith(b"\x93NUMPY"):
        raise DataError(f"{name}: is not an NPY file (no NPY header); check the file or --format")
    major = start[6] if len(start) > 6 else 0
    if major not in (1, 2, 3) or len(start) < 10:
        raise DataError(f"{name}: is not a readable NPY file (version {major}); check the file")
    if major == 1:
        length = int.from_bytes(start[8:10], "little")
        prefix = start
    else:
        prefix = start + source.read(2)
        length = int.from_bytes(prefix[8:12], "little")
    if length > _MAX_NPY_HEADER:
        raise DataError(
            f"{name}: its NPY header claims {length:,} bytes, more than any real one; "
            "check the file"
        )
    header = source.read(length)
    if len(header) < length:
        raise DataError(f"{name}: is truncated inside its NPY header; check the file")
    stream = io.BytesIO(prefix + header)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception as exc:  # numpy raises ValueError, SyntaxError, ...
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{name}: is not a readable NPY file ({detail}); check the file") from None
    if dtype.kind in "US" and dtype.itemsize and all(int(n) > 0 for n in shape):
        first = np.frombuffer(source.read(dtype.itemsize), dtype=dtype, count=-1)
        value = f": its first value is {shown(first[0])}" if first.size else ""
        raise DataError(
            f"{name}: holds text of type {dtype}, not numbers{value}; save a numeric array"
        )
    return _check_npy(name, tuple(shape), bool(fortran), dtype, len(prefix) + length)


def _check_npy(
    name: str, shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any], offset: int
) -> NpyLayout:
    if dtype.hasobject:
        raise DataError(f"{name}: holds Python objects, not numbers; save a numeric array")
    if dtype.names is not None or dtype.subdtype is not None:
        raise DataError(f"{name}: holds a structured array; save a plain 2-D numeric array")
    if len(shape) == 1:
        shape = (shape[0], 1)
    if len(shape) != 2:
        raise DataError(
            f"{name}: holds a {len(shape)}-D array of shape {shape}; "
            "gencli needs a 2-D table (rows x columns): reshape it first"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise DataError(f"{name}: holds an empty array of shape {shape}; it needs rows and columns")
    if dtype.kind not in "biuf":
        raise DataError(f"{name}: holds values of type {dtype}, not numbers; save a numeric array")
    return NpyLayout((int(shape[0]), int(shape[1])), dtype, fortran, offset)


def _check_npy_size(source: Input, layout: NpyLayout) -> None:
    """A file must hold exactly the bytes its header declares."""
    if source.size is None:
        return
    held = source.size - layout.offset
    if held != layout.nbytes:
        state = "is truncated" if held < layout.nbytes else "has bytes after its array"
        raise DataError(
            f"{source.name}: {state}: its header declares shape {layout.shape} of "
            f"{layout.dtype} ({format_size(layout.nbytes)}) but {format_size(held)} follow it; "
            "check the file"
        )


def _npy_values(raw: Any, layout: NpyLayout) -> np.ndarray:
    flat = np.frombuffer(raw, dtype=layout.dtype)
    array = flat.reshape(layout.shape, order="F" if layout.fortran else "C")
    return np.ascontiguousarray(array, dtype=np.float64)


def read_npy(source: Input) -> RawTable:
    """The whole NPY table as float64, after checking its header against file and budget."""
    layout = read_npy_header(source)
    _check_npy_size(source, layout)
    copy = 0 if layout.dtype == np.float64 and not layout.fortran else 8
    rows, cols = layout.shape
    check_memory(layout.nbytes + rows * cols * copy, layout.describe(source.name), _HINT)
    raw = source.read(layout.nbytes)
    if len(raw) < layout.nbytes:
        raise DataError(
            f"{source.name}: is truncated: its header declares shape {layout.shape} of "
            f"{layout.dtype} but only {format_size(len(raw))} of values follow; check the file"
        )
    if source.stream.read(1):
        raise DataError(f"{source.name}: has bytes after its array; check the file")
    values = _npy_values(raw, layout)
    return RawTable(values=values, columns=default_names(cols), named=False, source=source.name)


def stream_npy(source: Input, chunk_rows: int) -> tuple[list[str], Iterator[np.ndarray]]:
    """Column names and float64 blocks of rows, read from the file or pipe a block at a time
    (a Fortran-ordered array from a pipe is read whole, within the memory budget)."""
    layout = read_npy_header(source)
    _check_npy_size(source, layout)
    rows, cols = layout.shape
    row_bytes = cols * layout.dtype.itemsize
    chunk_rows = block_rows(chunk_rows, cols)
    if layout.fortran and source.path is None:
        check_memory(layout.nbytes + rows * cols * 8, layout.describe(source.name), _HINT)

    def blocks() -> Iterator[np.ndarray]:
        try:
            if layout.fortran and source.path is None:
                table = read_all_values(source, layout)
                for start in range(0, rows, chunk_rows):
                    yield table[start : start + chunk_rows]
                return
            for start in range(0, rows, chunk_rows):
                n = min(chunk_rows, rows - start)
                if layout.fortran:
                    yield _fortran_rows(source, layout, start, n)
                    continue
                raw = source.read(n * row_bytes)
                if len(raw) < n * row_bytes:
                    raise DataError(
                        f"{source.name}: is truncated after row {start + len(raw) // row_bytes}"
                        f" of the {rows:,} its header declares; check the file"
                    )
                yield np.frombuffer(raw, dtype=layout.dtype).reshape(n, cols).astype(np.float64)
        finally:
            source.close()

    return default_names(cols), blocks()


def read_all_values(source: Input, layout: NpyLayout) -> np.ndarray:
    raw = source.read(layout.nbytes)
    if len(raw) < layout.nbytes:
        raise DataError(f"{source.name}: is truncated; check the file")
    return _npy_values(raw, layout)


def _fortran_rows(source: Input, layout: NpyLayout, start: int, n: int) -> np.ndarray:
    """Rows ``start`` to ``start + n`` of a column-major file: one read per column."""
    import os

    item = layout.dtype.itemsize
    fd = source.stream.fileno()
    columns = []
    for j in range(layout.shape[1]):
        at = layout.offset + (j * layout.shape[0] + start) * item
        columns.append(np.frombuffer(os.pread(fd, n * item, at), dtype=layout.dtype))
    return np.stack(columns, axis=1).astype(np.float64)


# ----------------------------------------------------------------------------- Parquet


def open_parquet(source: Input) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` with its footer read and checked (a pipe is read
    into memory first, within the budget: Parquet's footer is at its end)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = source.name
    if source.path is not None:
        start = source.read(4)
        source.close()
        target: Any = source.path
    elif source.seekable:  # a URL's file: pyarrow reads the footer and row groups it needs
        start = source.read(4)
        source.stream.seek(0)
        target = source.stream
    else:
        start = source.read(4)
        data = read_all(source, start, lambda n: 2 * n, _HINT)
        target = pa.BufferReader(pa.py_buffer(data))
    if not start.strip():
        raise DataError(f"{name}: is empty; it needs a table of numbers")
    if not start.startswith(b"PAR1"):
        raise DataError(
            f"{name}: is not a Parquet file (no PAR1 header); check the file or --format"
        )
    try:
        handle = pq.ParquetFile(target)
        schema = handle.schema_arrow
        schema.names  # noqa: B018 - names that are not UTF-8 fail here
        metadata = handle.metadata
        groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: has a column name that is not UTF-8; rename it") from exc
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise DataError(
            f"{name}: is not a readable Parquet file ({detail}); check the file"
        ) from None
    if sum(g.num_rows for g in groups) != metadata.num_rows:
        raise DataError(f"{name}: its footer's row counts disagree; check the file")
    return handle


@contextlib.contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Errors arrow meets inside a damaged file (a bad codec, a short page) as one line."""
    try:
        yield
    except (GencliError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise DataError(
            f"{name}: is not a readable Parquet file ({detail}); check the file"
        ) from None


def parquet_names(handle: Any) -> list[str]:
    return list(handle.schema_arrow.names)


def _largest_chunk(handle: Any) -> int:
    """The most bytes one column chunk of one row group declares once decompressed."""
    metadata = handle.metadata
    largest = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        for j in range(group.num_columns):
            largest = max(largest, group.column(j).total_uncompressed_size)
    return largest


def _kinds(handle: Any) -> list[bool]:
    return [is_number_type(field.type) for field in handle.schema_arrow]


def _first_values(handle: Any, name: str, positions: Sequence[int]) -> dict[int, BadCell | None]:
    """The first non-null value of each column that is not numbers, read a few rows at a
    time (the column itself could be huge)."""
    names = parquet_names(handle)
    found: dict[int, BadCell | None] = {}
    for j in positions:
        found[j] = None
        if names.count(names[j]) > 1:
            continue
        offset = 0
        with _decoding(name):
            for batch in handle.iter_batches(batch_size=64, columns=[names[j]]):
                cell = first_value(batch.column(0))
                if cell is not None:
                    found[j] = BadCell(cell.row + offset, cell.value)
                    break
                offset += batch.num_rows
    return found


def read_parquet(handle: Any, name: str, wanted: Sequence[int] | None) -> RawTable:
    """The columns at positions ``wanted`` (default all) as float64, after checking the
    declared size: rows x columns, and the largest column chunk to decompress."""
    import pyarrow as pa

    names = parquet_names(handle)
    picks = list(range(len(names))) if wanted is None else list(wanted)
    numeric = _kinds(handle)
    rows = handle.metadata.num_rows
    decoded = sum(8 if numeric[j] else 0 for j in picks)
    check_memory(
        rows * (decoded + 8 * len(picks)) + _largest_chunk(handle),
        f"reading {name} ({count(rows, 'row')} x {count(len(picks), 'column')})",
        _HINT,
    )
    if len(set(names)) != len(names):  # columns cannot be read by name: read them all
        with _decoding(name):
            whole = handle.read()
        arrow = pa.Table.from_arrays(
            [whole.column(j) for j in picks], names=[names[j] for j in picks]
        )
        return from_arrow(arrow, name, named=True)
    bad = _first_values(handle, name, [j for j in picks if not numeric[j]])
    read = [names[j] for j in picks if numeric[j]]
    with _decoding(name):
        arrow = handle.read(columns=read) if read else None
    arrays = []
    for j in picks:
        if numeric[j]:
            arrays.append(arrow.column(names[j]))  # type: ignore[union-attr]
        else:
            arrays.append(pa.nulls(rows, pa.null()))
    table = pa.Table.from_arrays(arrays, names=[names[j] for j in picks])
    positions = {k: bad[j] for k, j in enumerate(picks) if j in bad}
    return from_arrow(table, name, named=True, bad_cells=positions)


DECODE_BYTES = 1 << 20


def stream_parquet(
    handle: Any,
    name: str,
    chunk_rows: int,
    usecols: Callable[[list[str]], Iterable[int]] | None = None,
    row_groups: Sequence[int] | None = None,
) -> tuple[list[str], Iterator[np.ndarray]]:
    """Column names and float64 blocks of rows, decoded a batch at a time (of ``row_groups``
    only, when given: a part of the file). Only the columns ``usecols`` keeps (default all)
    must be numbers; the others read as NaN."""
    import pyarrow as pa

    names = parquet_names(handle)
    kept = set(usecols(names)) if usecols is not None else set(range(len(names)))
    unused = {j: None for j in range(len(names)) if j not in kept}
    numeric = [ok or j not in kept for j, ok in enumerate(_kinds(handle))]
    largest = _largest_chunk(handle)
    check_memory(
        largest + chunk_rows * len(names) * 24,
        f"reading {name} (a column chunk of {format_size(largest)} once decompressed)",
        _HINT,
    )
    if not all(numeric):
        bad = _first_values(handle, name, [j for j, ok in enumerate(numeric) if not ok])
        columns = [names[j] for j in range(len(names))]
        raise non_numeric_error(
            name, columns, {names[j]: cell for j, cell in bad.items()}, "remove that column"
        )

    step = block_rows(chunk_rows, len(names))
    # About a MB of values decoded at a time (whole blocks of ``step`` rows, handed out one
    # by one): the batch stays in cache while it is converted and scored, and the work per
    # batch stays small against it.
    decode = step * max(1, min(chunk_rows, DECODE_BYTES // (8 * max(len(names), 1))) // step)

    # Columns nobody uses are not decoded (their place filled with NaN), unless a name
    # repeats and so cannot pick one column.
    wanted = sorted(kept) if unused and len(set(names)) == len(names) else None

    def blocks() -> Iterator[np.ndarray]:
        batches = handle.iter_batches(
            batch_size=decode,
            row_groups=None if row_groups is None else list(row_groups),
            columns=None if wanted is None else [names[j] for j in wanted],
        )
        while True:
            with _decoding(name):
                batch = next(batches, None)
            if batch is None:
                return
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                if wanted is None:
                    values = from_arrow(table, name, named=True, bad_cells=dict(unused)).values
                else:
                    values = np.full((batch.num_rows, len(names)), np.nan)
                    values[:, wanted] = from_arrow(table, name, named=True).values
                for start in range(0, len(values), step):
                    yield values[start : start + step]

    return names, blocks()
