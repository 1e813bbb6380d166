"""Reading tables of numbers: CSV, TSV, NPY and Parquet, from files or stdin.

Every problem with the input becomes a :class:`~gencli.errors.DataError` whose message
names the file, the column or row, and what to do about it. The readers themselves are
in :mod:`gencli.io.sources` (opening), :mod:`gencli.io.csvhead` and :mod:`gencli.io.csvread`
(delimited text) and :mod:`gencli.io.binread` (NPY, Parquet); writing is in
:mod:`gencli.io.writers`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from gencli.errors import DataError
from gencli.io.sources import Input, check_input, open_input
from gencli.io.table import (
    BadCell,
    RawTable,
    Table,
    default_names,
    non_numeric_error,
    preview,
    shown,
    unique_names,
)

FORMATS = ("csv", "tsv", "npy", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".npy": "npy",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_MAX_ROWS_NAMED = 5


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format to use for ``path``: ``fmt`` if given, else from the extension; '-' is CSV."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DataError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
        return fmt
    if str(path) == "-":
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    raise DataError(
        f"{path}: cannot tell the format from the extension '{suffix or '(none)'}'; "
        f"pass --format {'|'.join(FORMATS)}"
    )


# ----------------------------------------------------------------------------- reading


def read_table(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
    dropna: bool = False,
    stdin: IO[bytes] | None = None,
    missing_hint: str = "pass --dropna",
    header: bool | None = None,
    non_numeric_hint: str | None = None,
    usecols: Callable[[list[str], bool], Sequence[int]] | None = None,
    keep_missing: bool = False,
) -> Table:
    """Read a numeric table from a file, or from stdin when ``source`` is '-'.

    Args:
        source: a path, or '-' for standard input.
        format: 'csv', 'tsv', 'npy' or 'parquet'; default from the extension (stdin: csv).
        columns: names of the columns to keep, in that order; default all.
        dropna: drop rows with missing or infinite values instead of refusing them.
        stdin: the binary stream to read for '-' (default ``sys.stdin.buffer``).
        missing_hint: what the refusal of missing values suggests besides removing them.
        header: for CSV/TSV, whether the first row holds column names; None decides from
            the rows (see :mod:`gencli.io.csvhead`) and, when that is a guess, says so in
            the table's ``notes``. NPY has no names and Parquet always has them.
        non_numeric_hint: what the refusal of a cell that is not a number suggests besides
            fixing it; default: leaving the column out with ``--columns``.
        usecols: given the file's column names and whether they are real names, the
            positions to keep, in that order (a model's columns); the others may hold
            anything and do not count for missing values.

    Returns:
        A :class:`Table` of finite float64 values (and ``notes`` on what was guessed).
    """
    check_input(source)
    fmt = format_for(source, format)
    names = parse_columns(columns) if columns is not None else None
    handle = open_input(source, stdin)
    try:
        raw, notes = _read_raw(handle, fmt, header, names)
    finally:
        handle.close()
    release_arrow_memory()
    table = select_columns(raw, names)
    if usecols is not None:
        picks = list(usecols(list(table.columns), table.named))
        kept = [table.columns[j] for j in picks]
        table = replace(table, values=np.ascontiguousarray(table.values[:, picks]), columns=kept)
        if isinstance(table, RawTable):
            bad = {c: cell for c, cell in table.non_numeric.items() if c in kept}
            table = replace(table, non_numeric=bad)
    table = require_numeric(table, hint=non_numeric_hint)
    if not keep_missing:  # (``keep_missing``: empty cells stay NaN, for --missing em)
        table = require_finite(table, dropna=dropna, hint=missing_hint)
    return replace(table, notes=notes) if notes else table


def release_arrow_memory() -> None:
    """Give the memory Arrow freed after a whole-file read back to the system.

    Arrow's allocator (mimalloc) keeps freed pages for later use: after reading a 1M x 10
    CSV the process still held 104 MB of the text and the Arrow table it no longer
    needed, through the whole fit (measured with /proc/self/statm). Nothing else of
    Arrow's runs after the read, so those pages are returned at once.
    """
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


def _read_raw(
    source: Input, fmt: str, header: bool | None, names: list[str] | None
) -> tuple[RawTable, tuple[str, ...]]:
    if fmt == "npy":
        from gencli.io.binread import read_npy

        return read_npy(source), ()
    if fmt == "parquet":
        from gencli.io.binread import open_parquet, parquet_names, read_parquet

        handle = open_parquet(source)
        all_names = parquet_names(handle)
        wanted = None
        if names is not None:
            unique = unique_names(all_names)
            empty = Table(np.empty((0, len(unique))), unique, True, source.name)
            select_columns(empty, names)  # refuses unknown names before reading
            wanted = [unique.index(n) for n in names]
        return read_parquet(handle, source.name, wanted), ()
    from gencli.io.csvread import read_delimited

    return read_delimited(source, "\t" if fmt == "tsv" else ",", header)


# ----------------------------------------------------------------------------- checks


def parse_columns(spec: str | Sequence[str] | None) -> list[str] | None:
    """Split a ``--columns a,b,c`` string into names (None means all columns)."""
    if spec is None:
        return None
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not names or any(not n for n in names):
        raise DataError(f"--columns '{spec}' has an empty name; give names separated by commas")
    if len(set(names)) != len(names):
        raise DataError(f"--columns '{spec}' names a column twice; give each name once")
    return names


def _looks_numeric(field: str) -> bool:
    """Whether a header field would read as a number (the writer quotes such names)."""
    text = field.strip()
    if text == "" or text.lower() in ("true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def select_columns(table: Table, columns: Sequence[str] | None) -> Table:
    """Keep the named columns, in the order given."""
    names = parse_columns(columns) if columns is not None else None
    if names is None:
        return table
    index = {c: i for i, c in enumerate(table.columns)}
    missing = [n for n in names if n not in index]
    if missing:
        quoted = ", ".join(shown(m) for m in missing)
        raise DataError(
            f"{table.source}: no column named {quoted}; its columns are: "
            f"{preview([shown(c, quoted=False) for c in table.columns], 20)}"
        )
    picks = [index[n] for n in names]
    values = table.values[:, picks]
    if isinstance(table, RawTable):
        bad = {n: cell for n, cell in table.non_numeric.items() if n in names}
        bad = {n: bad[n] for n in names if n in bad}  # in the order asked for
        return replace(table, values=values, columns=list(names), non_numeric=bad)
    return replace(table, values=values, columns=list(names))


def require_numeric(table: Table, hint: str | None = None) -> Table:
    """Refuse columns that are not numbers, naming the first offending cell and (unless
    ``hint`` says otherwise) the ``--columns`` that would leave them out."""
    bad = getattr(table, "non_numeric", None)
    if bad:
        raise non_numeric_error(table.source, table.columns, bad, hint)
    return Table(
        table.values, table.columns, table.named, table.source, table.dropped_rows, table.notes
    )


def require_finite(table: Table, *, dropna: bool = False, hint: str = "pass --dropna") -> Table:
    """Refuse (or, with ``dropna``, drop) rows holding NaN, empty cells or infinities."""
    finite = np.isfinite(table.values)
    if finite.all():
        return table
    bad_rows = ~finite.all(axis=1)
    if dropna:
        kept = table.values[~bad_rows]
        if kept.shape[0] == 0:
            raise DataError(f"{table.source}: every row has a missing or infinite value")
        return replace(
            table,
            values=np.ascontiguousarray(kept),
            dropped_rows=table.dropped_rows + int(bad_rows.sum()),
        )
    first_row = int(np.flatnonzero(bad_rows)[0])  # the first one in the file, and its column
    j = int(np.flatnonzero(~finite[first_row])[0])
    rows = (np.flatnonzero(~finite[:, j]) + 1).tolist()
    n_bad = int(bad_rows.sum())
    fix = f"remove them or {hint} to drop the {n_bad} affected rows" if hint else "remove them"
    raise DataError(
        f"{table.source}: column {shown(table.columns[j])} has missing or infinite values at "
        f"row {preview(rows, _MAX_ROWS_NAMED)} (data rows, counting from 1); {fix}"
    )


def as_table(
    data: Any,
    *,
    columns: Sequence[str] | None = None,
    source: str = "<array>",
    allow_missing: bool = False,
) -> Table:
    """Make a :class:`Table` from a NumPy array, a pandas DataFrame or a path (for the API);
    ``allow_missing`` keeps NaN cells (for imputation) instead of refusing them."""
    if isinstance(data, Table):
        table = data
    elif isinstance(data, (str, os.PathLike)):
        return read_table(data, columns=columns)
    elif hasattr(data, "columns") and hasattr(data, "to_numpy"):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        # Integer labels (a DataFrame made from an array) are positions, not names.
        unnamed = all(isinstance(c, (int, np.integer)) for c in data.columns)
        labels = default_names(data.shape[1]) if unnamed else [str(c) for c in data.columns]
        names = unique_names(labels)
        non_numeric: dict[str, BadCell | None] = {}
        values = np.full(data.shape, np.nan)
        for j, (name, kind) in enumerate(zip(names, data.dtypes, strict=True)):
            column = data.iloc[:, j]
            if is_numeric_dtype(kind) or is_bool_dtype(kind):
                values[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
                continue
            present = np.flatnonzero(column.notna().to_numpy())
            first = int(present[0]) if present.size else None
            cell = None if first is None else BadCell(first + 1, str(column.iloc[first]))
            non_numeric[name] = cell
        table = RawTable(
            values=values,
            columns=names,
            named=not unnamed,
            source="<dataframe>",
            non_numeric=non_numeric,
        )
    else:
        array = np.asarray(data)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        if array.ndim != 2:
            raise DataError(f"{source}: expected a 2-D array but got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise DataError(f"{source}: expected numbers but got values of type {array.dtype}")
        table = Table(
            values=np.ascontiguousarray(array, dtype=np.float64),
            columns=default_names(array.shape[1]),
            named=False,
            source=source,
        )
    table = select_columns(table, columns)
    table = require_numeric(table)
    return table if allow_missing else require_finite(table, hint="")


__all__ = [
    "FORMATS",
    "Table",
    "as_table",
    "format_for",
    "read_table",
    "require_finite",
    "select_columns",
]
