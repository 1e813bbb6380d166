"""The table every reader returns, and the pieces the readers share to build one.

A reader turns a file into an arrow table and then into a :class:`Table` of float64 values
(:func:`from_arrow`). Columns that are not numbers are kept as names plus their first
offending cell, so the refusal can say where it is and what it holds, and so a column the
user leaves out with ``--columns`` costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

ROWS_NOTE = "(data rows, counting from 1)"

# What arrow's CSV reader parses as a float64, and its default spellings of a missing value.
NUMBER_PATTERN = (
    r"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[nN][aA][nN]|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)[ \t]*"
)
INTEGER_PATTERN = r"[ \t]*[+-]?[0-9]+[ \t]*"
NUMBER = re.compile(NUMBER_PATTERN)
INTEGER = re.compile(INTEGER_PATTERN)
NULL_SPELLINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",
)  # fmt: skip
TRUE_SPELLINGS = ("true", "True", "TRUE")
FALSE_SPELLINGS = ("false", "False", "FALSE")


@dataclass(frozen=True)
class Table:
    """A numeric table: float64 values, column names, and where it came from.

    ``named`` is False when the names were made up (``x0, x1, ...``) because the source
    had none (NPY, a headerless CSV); such tables are matched to a model by position.
    ``notes`` say what the reader guessed (such as whether the first row is a header),
    for the command to show on stderr.
    """

    values: np.ndarray
    columns: list[str]
    named: bool
    source: str
    dropped_rows: int = 0
    notes: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.values.shape[1])


@dataclass(frozen=True)
class BadCell:
    """The first cell of a column that is not a number: its data row (from 1) and text."""

    row: int
    value: str
    expected: str = "a number"


@dataclass(frozen=True)
class RawTable(Table):
    """A table straight from the reader; ``non_numeric`` maps the columns that are not
    numbers to their first offending cell (None when the column's type says it all)."""

    non_numeric: dict[str, BadCell | None] = field(default_factory=dict)


def shown(text: object, limit: int = 40, *, quoted: bool = True) -> str:
    """``text`` quoted for a one-line message: shortened, control characters escaped.

    Cells and names come from files: a newline or an escape sequence in them must not
    reach a terminal as such.
    """
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text) if quoted else repr(text)[1:-1]


def preview(items: Sequence[Any], limit: int = 5) -> str:
    """``1, 2, 3, 4, 5 (and 7 more)``."""
    listed = ", ".join(str(i) for i in items[:limit])
    more = len(items) - limit
    return f"{listed} (and {more} more)" if more > 0 else listed


def block_rows(chunk_rows: int, n_columns: int) -> int:
    """Rows per block handed to a scorer: at most ``chunk_rows``, and few enough that a
    block's values stay in cache (scoring 65,536 rows at a time runs twice as slow as
    16,384, measured on a 3-column mixture), down to 1,024 for wide tables."""
    return max(1, min(chunk_rows, 1 << 14, max(1 << 10, (1 << 16) // max(n_columns, 1))))


def count(n: int, noun: str) -> str:
    """``1 column``, ``3 columns``, ``1,000 rows``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def default_names(n_columns: int) -> list[str]:
    """Names for columns that came without any: ``x0, x1, ...``."""
    return [f"x{i}" for i in range(n_columns)]


def unique_names(names: Sequence[str]) -> list[str]:
    """Give empty names a positional name and repeated names a suffix, as pandas does."""
    seen: dict[str, int] = {}
    result = []
    for i, raw in enumerate(names):
        base = raw.strip() or f"x{i}"
        name = base
        while name in seen:
            seen[base] += 1
            name = f"{base}.{seen[base]}"
        seen.setdefault(name, 0)
        result.append(name)
    return result


def column_names(names: Sequence[str], name: str, *, named: bool) -> list[str]:
    """The table's column names, made unique, or an error for a table without columns."""
    columns = unique_names(list(names)) if named else list(names)
    if not columns:
        raise DataError(f"{name}: has no columns; it needs a table of numbers")
    return columns


def is_number_type(kind: Any) -> bool:
    """Whether an arrow type holds numbers (booleans and all-null columns count)."""
    import pyarrow as pa

    types = pa.types
    return bool(
        types.is_boolean(kind)
        or types.is_null(kind)
        or types.is_integer(kind)
        or types.is_floating(kind)
        or types.is_decimal(kind)
    )


def first_bad_text(column: Any, expected: str = "a number") -> BadCell | None:
    """The first cell of a text column (arrow strings) that is not a number, nor a
    missing value, nor (for ``expected='true or false'``) a boolean spelling."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if expected == "true or false":
        allowed = "|".join(re.escape(s) for s in (*TRUE_SPELLINGS, *FALSE_SPELLINGS))
    else:
        allowed = NUMBER_PATTERN
    nulls = "|".join(re.escape(s) for s in NULL_SPELLINGS if s)
    pattern = f"^(?:{allowed}|{nulls}|)$"
    offset = 0
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = chunk.cast(pa.string())
        # Null for a null cell. (Python values in pyarrow.compute calls, and to_numpy,
        # make pyarrow import pandas: 0.5 s.)
        bad = pc.indices_nonzero(pc.invert(pc.match_substring_regex(chunk, pattern)))
        if len(bad):
            i = bad[0].as_py()
            return BadCell(offset + i + 1, str(chunk[i].as_py()), expected)
        offset += len(chunk)
    return None


def first_value(column: Any) -> BadCell | None:
    """The first non-null cell of a column of a type that is not numbers (dates, lists)."""
    import pyarrow.compute as pc

    offset = 0
    chunks = getattr(column, "chunks", [column])
    for chunk in chunks:
        if chunk.null_count < len(chunk):
            i = pc.indices_nonzero(chunk.is_valid())[0].as_py()
            return BadCell(offset + i + 1, str(chunk[i].as_py()))
        offset += len(chunk)
    return None


def _float_chunk(chunk: Any) -> np.ndarray:
    """A float64 arrow array as numpy (nulls as NaN), without going through pandas.

    pyarrow's ``to_numpy`` imports pandas (0.2-0.5 s) on first use; a float array is a
    buffer of doubles and a bitmap of which are present, so it is read as those.
    """
    n = len(chunk)
    validity, data = chunk.buffers()[:2]
    if chunk.null_count == 0:
        return np.frombuffer(data, dtype=np.float64, count=n, offset=chunk.offset * 8)
    if data is None or chunk.null_count == n:
        return np.full(n, np.nan)
    values = np.frombuffer(data, dtype=np.float64, count=n, offset=chunk.offset * 8).copy()
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    values[bits[chunk.offset : chunk.offset + n] == 0] = np.nan
    return values


def from_arrow(
    arrow: pa.Table,
    name: str,
    *,
    named: bool,
    bad_cells: dict[int, BadCell | None] | None = None,
) -> RawTable:
    """An arrow table as float64 values; columns that are not numbers become NaN and are
    listed with their first offending cell (``bad_cells`` by position, when the caller
    found it already)."""
    import pyarrow as pa

    columns = column_names(arrow.column_names, name, named=named)
    if arrow.num_rows == 0:
        raise DataError(f"{name}: has a header but no data rows; add rows of numbers")
    non_numeric: dict[str, BadCell | None] = {}
    numeric = []
    for j, column in enumerate(arrow.columns):
        kind = column.type
        if bad_cells is not None and j in bad_cells:
            non_numeric[columns[j]] = bad_cells[j]
            column = pa.nulls(len(column), pa.float64())
        elif not is_number_type(kind):
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                non_numeric[columns[j]] = first_bad_text(column)
            else:
                non_numeric[columns[j]] = first_value(column)
            column = pa.nulls(len(column), pa.float64())
        elif kind != pa.float64():  # a cast loads pyarrow.compute: 30 ms, so only if needed
            column = column.cast(pa.float64(), safe=False)  # ints above 2**53: nearest float
        numeric.append(column)
    values = np.empty((arrow.num_rows, arrow.num_columns), dtype=np.float64)
    start = 0
    # Batch by batch, so each block of rows is written whole while it is in cache (a
    # column at a time strides over the whole array once per column: 4x slower).
    for batch in pa.Table.from_arrays(numeric, names=columns).to_batches():
        size = batch.num_rows
        parts = [_float_chunk(column) for column in batch.columns]
        np.stack(parts, axis=1, out=values[start : start + size])
        start += size
    return RawTable(
        values=values, columns=columns, named=named, source=name, non_numeric=non_numeric
    )


def non_numeric_error(
    source: str, columns: Sequence[str], bad: dict[str, BadCell | None], hint: str | None
) -> DataError:
    """The refusal of columns that are not numbers, naming the first offending cell.

    ``hint`` is what to do besides fixing the cell; None suggests ``--columns`` with the
    columns that are numbers.
    """
    names = list(bad)
    first = names[0]
    cell = bad[first]
    if hint is None:
        good = [c for c in columns if c not in bad]
        noun = "the column" if len(names) == 1 else "those columns"
        hint = f"leave {noun} out with --columns {','.join(good)}" if good else ""
    fix = f"fix it, or {hint}" if hint else "fix it"
    others = ""
    if len(names) > 1:
        listed = ", ".join(shown(n) for n in names[1:6]) + (" ..." if len(names) > 6 else "")
        others = f" (so do column{'s' if len(names) > 2 else ''} {listed})"
    if cell is None:
        return DataError(f"{source}: column {shown(first)} holds no numbers{others}; {fix}")
    return DataError(
        f"{source}: column {shown(first)} has a value that is not {cell.expected} at row "
        f"{cell.row} {ROWS_NOTE}: {shown(cell.value)}{others}; {fix}"
    )
