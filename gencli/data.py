"""Reading and writing tables of numbers: CSV, TSV, NPY and Parquet, files or stdin/stdout.

Every problem with the input becomes a :class:`~gencli.errors.DataError` whose message
names the file, the column or row, and what to do about it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from gencli.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

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
_SNIFF_BYTES = 1 << 16
_MAX_ROWS_NAMED = 5


@dataclass(frozen=True)
class Table:
    """A numeric table: float64 values, column names, and where it came from.

    ``named`` is False when the names were made up (``x0, x1, ...``) because the source
    had none (NPY, a headerless CSV); such tables are matched to a model by position.
    """

    values: np.ndarray
    columns: list[str]
    named: bool
    source: str
    dropped_rows: int = 0

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.values.shape[1])


def default_names(n_columns: int) -> list[str]:
    """Names for columns that came without any: ``x0, x1, ...``."""
    return [f"x{i}" for i in range(n_columns)]


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
) -> Table:
    """Read a numeric table from a file, or from stdin when ``source`` is '-'.

    Args:
        source: a path, or '-' for standard input.
        format: 'csv', 'tsv', 'npy' or 'parquet'; default from the extension (stdin: csv).
        columns: names of the columns to keep, in that order; default all.
        dropna: drop rows with missing or infinite values instead of refusing them.
        missing_hint: what the refusal of missing values suggests besides removing them.
        stdin: the binary stream to read for '-' (default ``sys.stdin.buffer``).

    Returns:
        A :class:`Table` of finite float64 values.
    """
    if str(source) != "-":
        _check_readable(Path(source))
    fmt = format_for(source, format)
    name = "<stdin>" if str(source) == "-" else str(source)
    raw = _read_raw(source, fmt, name, stdin)
    table = select_columns(raw, columns)
    table = require_numeric(table)
    return require_finite(table, dropna=dropna, hint=missing_hint)


@dataclass(frozen=True)
class _RawTable(Table):
    """A table straight from the reader; ``non_numeric`` names the columns that are not numbers."""

    non_numeric: tuple[str, ...] = ()


def _open_bytes(source: str | os.PathLike[str], name: str, stdin: IO[bytes] | None) -> bytes:
    if str(source) == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return stream.read()
    path = Path(source)
    _check_readable(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror}") from exc


def _check_readable(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file; pass a file")
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")


def _read_raw(
    source: str | os.PathLike[str], fmt: str, name: str, stdin: IO[bytes] | None
) -> _RawTable:
    data = _open_bytes(source, name, stdin)
    if re.search(rb"\S", data) is None:  # (data.strip() would copy a large file)
        raise DataError(f"{name}: is empty; it needs a table of numbers")
    if fmt == "npy":
        return _read_npy(data, name)
    if fmt == "parquet":
        return _read_parquet(data, name)
    return _read_delimited(data, name, "\t" if fmt == "tsv" else ",")


def _read_npy(data: bytes, name: str) -> _RawTable:
    if not data.startswith(b"\x93NUMPY"):
        raise DataError(f"{name}: is not an NPY file (no NPY header); check the file or --format")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"{name}: holds Python objects, not numbers; save a numeric array"
            ) from exc
        raise DataError(f"{name}: is not a readable NPY file ({exc}); check the file") from exc
    except Exception as exc:
        raise DataError(f"{name}: is not a readable NPY file ({exc}); check the file") from exc
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise DataError(
            f"{name}: holds a {array.ndim}-D array of shape {array.shape}; "
            "gencli needs a 2-D table (rows x columns): reshape it first"
        )
    if array.dtype.names is not None:
        raise DataError(f"{name}: holds a structured array; save a plain 2-D numeric array")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(
            f"{name}: holds an empty array of shape {array.shape}; it needs rows and columns"
        )
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"{name}: holds values of type {array.dtype}, not numbers; save a numeric array"
        )
    return _RawTable(
        values=np.ascontiguousarray(array, dtype=np.float64),
        columns=default_names(array.shape[1]),
        named=False,
        source=name,
    )


def _read_parquet(data: bytes, name: str) -> _RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data.startswith(b"PAR1"):
        raise DataError(
            f"{name}: is not a Parquet file (no PAR1 header); check the file or --format"
        )
    try:
        arrow = pq.read_table(pa.BufferReader(data))
        arrow.column_names  # noqa: B018 - names that are not UTF-8 fail here
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: has a column name that is not UTF-8; rename it") from exc
    except Exception as exc:
        raise DataError(f"{name}: is not a readable Parquet file ({exc}); check the file") from exc
    return _from_arrow(arrow, name, named=True)


def _looks_numeric(field: str) -> bool:
    text = field.strip()
    if text == "" or text.lower() in ("true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _sniff(data: bytes, name: str, delimiter: str) -> tuple[str, bool]:
    """Check the start of a delimited file; return the delimiter and whether it has a header."""
    head = data[:_SNIFF_BYTES]
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{name}: is an NPY file, not text; pass --format npy")
    if head.startswith(b"PAR1"):
        raise DataError(f"{name}: is a Parquet file, not text; pass --format parquet")
    if b"\x00" in head:
        raise DataError(f"{name}: is binary, not a text table; check the file")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) == _SNIFF_BYTES and exc.start >= len(head) - 3:
            text = head[: exc.start].decode("utf-8")
        else:
            raise DataError(
                f"{name}: is not UTF-8 text (bad byte at offset {exc.start}); "
                "convert it to UTF-8 CSV"
            ) from exc
    text = text.lstrip("\ufeff")
    line = _first_line(text)
    if delimiter == "," and "," not in line:
        if ";" in line:
            delimiter = ";"
        elif "\t" in line:
            delimiter = "\t"
    fields = next(csv.reader([line], delimiter=delimiter), [])
    has_header = not all(_looks_numeric(f) for f in fields) or _quoted_header(text, delimiter)
    return delimiter, has_header


def _is_quoted(piece: str) -> bool:
    piece = piece.strip()
    return len(piece) >= 2 and piece[0] == piece[-1] == '"'


def _quoted_header(text: str, delimiter: str) -> bool:
    """A first row of quoted fields over unquoted rows is a header of number-like names,
    as gencli writes for columns named "0", "1", ..."""
    lines = [line for line in text.splitlines()[:3] if line.strip()]
    if len(lines) < 2:
        return False
    return all(_is_quoted(p) for p in lines[0].split(delimiter)) and '"' not in lines[1]


def _read_delimited(data: bytes, name: str, delimiter: str) -> _RawTable:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter, has_header = _sniff(data, name, delimiter)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.endswith(b"\n"):  # arrow cannot read a one-line file without a final newline
        data += b"\n"
    read_options = pacsv.ReadOptions(autogenerate_column_names=not has_header)
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    booleans = {
        "true_values": ["true", "True", "TRUE"],
        "false_values": ["false", "False", "FALSE"],
    }
    # Only empty fields as missing at first: matching arrow's list of null spellings
    # ("NA", "null", ...) in every field costs a fifth of the parse. A column they would
    # have turned into text is read again with the full list.
    attempts = [
        pacsv.ConvertOptions(null_values=[""], **booleans),
        pacsv.ConvertOptions(**booleans),
    ]
    try:
        for convert_options in attempts:
            arrow = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            if all(_is_number_type(pa, column.type) for column in arrow.columns):
                break
    except pa.ArrowInvalid as exc:
        raise _explain_csv_error(exc, data, name, delimiter) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: is not UTF-8 text ({exc.reason}); convert it to UTF-8") from exc
    if not has_header:
        arrow = arrow.rename_columns(default_names(arrow.num_columns))
    try:
        return _from_arrow(arrow, name, named=has_header)
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: is not UTF-8 text ({exc.reason}); convert it to UTF-8") from exc


def _explain_csv_error(exc: Exception, data: bytes, name: str, delimiter: str) -> DataError:
    """Turn a pyarrow parse error into a message with the file's line number."""
    message = str(exc)
    if "Expected" in message and "columns, got" in message:
        text = data.decode("utf-8", errors="replace")
        expected = None
        limit = csv.field_size_limit(sys.maxsize)  # fields of any length, as arrow allows
        try:
            rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            for number, row in enumerate(rows, 1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if expected is None:
                    expected = len(row)
                elif len(row) != expected:
                    return DataError(
                        f"{name}: line {number} has {len(row)} fields but the first row has "
                        f"{expected}; fix or remove that row"
                    )
        except csv.Error:
            pass  # fall through to arrow's own description
        finally:
            csv.field_size_limit(limit)
    if "Empty CSV file" in message:
        return DataError(
            f'{name}: no table could be read from it: does its first line open a quote (") '
            "that never closes? Check the file"
        )
    detail = message.replace("CSV parse error: ", "").replace("CSV conversion error", "cannot read")
    return DataError(f"{name}: cannot be read as a table: {detail}; check the file")


def _unique_names(names: Sequence[str]) -> list[str]:
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


def _is_number_type(pa: Any, kind: Any) -> bool:
    types = pa.types
    return bool(
        types.is_boolean(kind)
        or types.is_null(kind)
        or types.is_integer(kind)
        or types.is_floating(kind)
        or types.is_decimal(kind)
    )


def column_names(names: Sequence[str], name: str, *, named: bool) -> list[str]:
    """The table's column names, made unique, or an error for a table without columns."""
    columns = _unique_names(list(names)) if named else list(names)
    if not columns:
        raise DataError(f"{name}: has no columns; it needs a table of numbers")
    return columns


def _float_chunk(chunk: Any) -> np.ndarray:
    """A float64 arrow array as numpy, without going through pandas.

    pyarrow's ``to_numpy`` imports pandas (0.2 s) on first use; a float array without
    missing values is just a buffer of doubles, so it is viewed as one.
    """
    if chunk.null_count == 0:
        return np.frombuffer(
            chunk.buffers()[1], dtype=np.float64, count=len(chunk), offset=chunk.offset * 8
        )
    return np.asarray(chunk.to_numpy(zero_copy_only=False), dtype=np.float64)


def _from_arrow(arrow: pa.Table, name: str, *, named: bool) -> _RawTable:
    import pyarrow as pa

    columns = column_names(arrow.column_names, name, named=named)
    if arrow.num_rows == 0:
        raise DataError(f"{name}: has a header but no data rows; add rows of numbers")
    non_numeric = []
    numeric = []
    for j, column in enumerate(arrow.columns):
        kind = column.type
        if not _is_number_type(pa, kind):
            non_numeric.append(columns[j])
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
    return _RawTable(
        values=values, columns=columns, named=named, source=name, non_numeric=tuple(non_numeric)
    )


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


def _preview(items: Sequence[Any], limit: int = _MAX_ROWS_NAMED) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    more = len(items) - limit
    return f"{shown} (and {more} more)" if more > 0 else shown


def select_columns(table: Table, columns: Sequence[str] | None) -> Table:
    """Keep the named columns, in the order given."""
    names = parse_columns(columns) if columns is not None else None
    if names is None:
        return table
    index = {c: i for i, c in enumerate(table.columns)}
    missing = [n for n in names if n not in index]
    if missing:
        quoted = ", ".join(f"'{m}'" for m in missing)
        raise DataError(
            f"{table.source}: no column named {quoted}; its columns are: "
            f"{_preview(table.columns, 20)}"
        )
    picks = [index[n] for n in names]
    values = table.values[:, picks]
    if isinstance(table, _RawTable):
        bad = tuple(n for n in table.non_numeric if n in names)
        return replace(table, values=values, columns=list(names), non_numeric=bad)
    return replace(table, values=values, columns=list(names))


def require_numeric(table: Table) -> Table:
    """Refuse columns that are not numbers, suggesting the ``--columns`` that would work."""
    bad = list(getattr(table, "non_numeric", ()))
    if bad:
        good = [c for c in table.columns if c not in bad]
        quoted = ", ".join(f"'{b}'" for b in bad[:10])
        hint = f"pick numeric ones with --columns {','.join(good)}" if good else "convert them"
        noun = "column" if len(bad) == 1 else "columns"
        verb = "is" if len(bad) == 1 else "are"
        raise DataError(f"{table.source}: {noun} {quoted} {verb} not numeric; {hint}")
    return Table(table.values, table.columns, table.named, table.source, table.dropped_rows)


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
    j = int(np.flatnonzero(~finite.all(axis=0))[0])
    rows = (np.flatnonzero(~finite[:, j]) + 1).tolist()
    n_bad = int(bad_rows.sum())
    fix = f"remove them or {hint} to drop the {n_bad} affected rows" if hint else "remove them"
    raise DataError(
        f"{table.source}: column '{table.columns[j]}' has missing or infinite values at "
        f"row {_preview(rows)} (data rows, counting from 1); {fix}"
    )


def as_table(data: Any, *, columns: Sequence[str] | None = None, source: str = "<array>") -> Table:
    """Make a :class:`Table` from a NumPy array, a pandas DataFrame or a path (for the API)."""
    if isinstance(data, Table):
        table = data
    elif isinstance(data, (str, os.PathLike)):
        return read_table(data, columns=columns)
    elif hasattr(data, "columns") and hasattr(data, "to_numpy"):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        # Integer labels (a DataFrame made from an array) are positions, not names.
        unnamed = all(isinstance(c, (int, np.integer)) for c in data.columns)
        labels = default_names(data.shape[1]) if unnamed else [str(c) for c in data.columns]
        names = _unique_names(labels)
        non_numeric = [
            n
            for n, kind in zip(names, data.dtypes, strict=True)
            if not (is_numeric_dtype(kind) or is_bool_dtype(kind))
        ]
        values = np.full(data.shape, np.nan)
        for j, name in enumerate(names):
            if name not in non_numeric:
                values[:, j] = data.iloc[:, j].to_numpy(dtype=np.float64, na_value=np.nan)
        table = _RawTable(
            values=values,
            columns=names,
            named=not unnamed,
            source="<dataframe>",
            non_numeric=tuple(non_numeric),
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
    return require_finite(table, hint="")


__all__ = [
    "FORMATS",
    "Table",
    "as_table",
    "format_for",
    "read_table",
    "require_finite",
    "select_columns",
]
