"""Reading CSV/TSV: the whole table (fit, evaluate) or block by block (score), alike.

Both read the head first (:mod:`gencli.io.csvhead`) and give arrow the same column names
and types, so a column reads to the same values either way. Blocks are cut by this module
at line ends, so every error can name the file's own row or line, however late it comes.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gencli.errors import DataError
from gencli.io.csvhead import (
    HEAD_BYTES,
    CsvLayout,
    _line_ends,
    check_start,
    head_size,
    read_layout,
)
from gencli.io.sources import Input, read_all
from gencli.io.table import (
    FALSE_SPELLINGS,
    TRUE_SPELLINGS,
    BadCell,
    RawTable,
    block_rows,
    column_names,
    count,
    first_bad_text,
    from_arrow,
    non_numeric_error,
)
from gencli.limits import check_memory, format_size

BLOCK_BYTES = 1 << 22  # arrow's per-call cost is paid once per block; 4 MB keeps it small
COLUMN_BYTES = 16 << 10  # arrow's CSV reader holds about 10 KB per column (measured)
_MEMORY_HINT = "read fewer rows or columns, or allow more memory (GENCLI_MEMORY_LIMIT)"
_CONVERSION = re.compile(r"In CSV column #(\d+)")


def read_head(source: Input) -> tuple[bytearray, int, bool]:
    """The first bytes of ``source``: (bytes read, where the head ends, whether that is all).

    The first HEAD_BYTES are checked before anything more is read, so an endless stream
    of binary zeros is refused at once.
    """
    buffer = bytearray(source.read(HEAD_BYTES + 1))
    at_end = len(buffer) <= HEAD_BYTES
    check_start(buffer, source.name)
    while True:
        try:
            end = head_size(buffer, at_end)
        except DataError as exc:
            raise DataError(f"{source.name}: {exc}") from None
        if end is not None:
            break
        more = source.read(len(buffer) + 1)
        at_end = len(more) <= len(buffer)
        buffer += more
    if re.search(rb"\S", buffer) is None:
        raise DataError(f"{source.name}: is empty; it needs a table of numbers")
    return buffer, end, at_end


def _layout(
    source: Input, delimiter: str, header: bool | None
) -> tuple[bytearray, CsvLayout, bool]:
    buffer, end, at_end = read_head(source)
    layout = read_layout(buffer[:end], source.name, delimiter, header)
    check_memory(
        len(layout.names) * COLUMN_BYTES * 2,
        f"reading {source.name} ({count(len(layout.names), 'column')})",
        _MEMORY_HINT,
    )
    return buffer, layout, at_end


class _Parser:
    """Parses lines of one file with arrow, with the head's column names and types.

    A cell that does not fit its column's type is found: missing-value words ('NA') first
    get arrow's full list of them (kept for the blocks that follow: that list costs a
    fifth of the parse, so it is used only once needed); then the column is read again as
    text and its first offending cell returned, by position, with its row in the block.
    """

    def __init__(self, layout: CsvLayout, name: str) -> None:
        self.layout = layout
        self.name = name
        self.full_nulls = False
        self._options: dict[tuple[frozenset[int], bool], Any] = {}

    def options(self, text: frozenset[int]) -> Any:
        """arrow's convert options (internal names c0, c1, ...: real ones may repeat)."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        key = (text, self.full_nulls)
        if key not in self._options:
            kinds = {"number": pa.float64(), "bool": pa.bool_(), "text": pa.string()}
            types = {
                f"c{j}": pa.string() if j in text else kinds[kind]
                for j, kind in enumerate(self.layout.kinds)
            }
            nulls = {} if self.full_nulls else {"null_values": [""]}
            self._options[key] = pacsv.ConvertOptions(
                column_types=types,
                true_values=list(TRUE_SPELLINGS),
                false_values=list(FALSE_SPELLINGS),
                **nulls,
            )
        return self._options[key]

    def _read(self, data: Any, text: frozenset[int], block: int | None) -> Any:
        """A whole table in arrow's own blocks on its threads (``block`` None), or a block
        of lines on this thread."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        read_options = pacsv.ReadOptions(
            column_names=[f"c{j}" for j in range(len(self.layout.names))],
            use_threads=block is None or block < len(data),
            block_size=block or 1 << 20,
        )
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data) if isinstance(data, memoryview) else data),
            read_options=read_options,
            parse_options=pacsv.ParseOptions(delimiter=self.layout.delimiter),
            convert_options=self.options(text),
        )

    def parse(
        self, data: Any, first_line: int, block: int | None
    ) -> tuple[Any, dict[int, BadCell | None]]:
        """The arrow table of ``data`` (lines from ``first_line`` on) and the first bad
        cell of each column that has one."""
        import pyarrow as pa

        text: frozenset[int] = frozenset()
        layout, name = self.layout, self.name
        while True:
            try:
                table = self._read(data, text, block)
                break
            except pa.ArrowInvalid as exc:
                message = str(exc)
                if "straddling" in message or "cannot infer number of columns" in message:
                    block = 4 * (block or 1 << 20)  # a line longer than the block
                    if block > 4 * max(len(data), 1):
                        raise _explain(exc, data, name, layout, first_line) from None
                    continue
                match = _CONVERSION.search(message)
                if match is None:
                    raise _explain(exc, data, name, layout, first_line) from None
                if "UTF8" in message:
                    raise _utf8_error(data, name, first_line) from None
                if not self.full_nulls:
                    self.full_nulls = True
                    continue
                column = int(match.group(1))
                if column in text or len(text) >= 8:
                    raise _explain(exc, data, name, layout, first_line) from None
                text = text | {column}
        bad = {}
        for j in sorted(text):
            expected = "true or false" if layout.kinds[j] == "bool" else "a number"
            bad[j] = first_bad_text(table.column(j), expected)
        return table, bad


def _utf8_error(data: Any, name: str, first_line: int) -> DataError:
    raw = bytes(data)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + _line_ends(raw, 0, exc.start)
        return DataError(
            f"{name}: is not UTF-8 text (bad byte on line {line}); convert it to UTF-8"
        )
    return DataError(f"{name}: is not UTF-8 text; convert it to UTF-8")


def _explain(exc: Exception, data: Any, name: str, layout: CsvLayout, first_line: int) -> DataError:
    """Turn a pyarrow parse error into a message with the file's line number."""
    message = str(exc)
    if "columns, got" in message:
        text = bytes(data).decode("utf-8", errors="replace")
        expected = len(layout.names)
        limit = csv.field_size_limit(sys.maxsize)  # fields of any length, as arrow allows
        try:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter)
            start = 1
            for row in reader:
                line = first_line + start - 1
                start = reader.line_num + 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != expected:
                    return DataError(
                        f"{name}: line {line} has {len(row)} fields but the first row has "
                        f"{expected}; fix or remove that row"
                    )
        except csv.Error:
            pass  # fall through to arrow's own description
        finally:
            csv.field_size_limit(limit)
    if "Empty CSV file" in message and not re.search(rb"\S", bytes(data[:HEAD_BYTES])):
        return DataError(f"{name}: has a header but no data rows; add rows of numbers")
    if "Empty CSV file" in message:
        return DataError(
            f'{name}: no table could be read from it: does its first line open a quote (") '
            "that never closes? Check the file"
        )
    detail = message.replace("CSV parse error: ", "").replace("CSV conversion error", "cannot read")
    return DataError(f"{name}: cannot be read as a table: {detail}; check the file")


def _to_raw(table: Any, layout: CsvLayout, name: str, bad: dict[int, BadCell | None]) -> RawTable:
    names = layout.names if layout.header else [f"x{j}" for j in range(len(layout.names))]
    try:
        return from_arrow(table.rename_columns(names), name, named=layout.header, bad_cells=bad)
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: is not UTF-8 text ({exc.reason}); convert it to UTF-8") from exc


def read_delimited(
    source: Input, delimiter: str, header: bool | None
) -> tuple[RawTable, tuple[str, ...]]:
    """The whole table (for fit and evaluate), and the notes on what was guessed."""
    import pyarrow as pa

    buffer, layout, _ = _layout(source, delimiter, header)
    per_value = 16 / layout.bytes_per_value  # arrow's doubles and gencli's
    data = read_all(
        source,
        buffer,
        lambda n: n * (1 + per_value) + len(layout.names) * COLUMN_BYTES,
        _MEMORY_HINT,
    )
    body = pa.py_buffer(data)[layout.data_start :]
    table, bad = _Parser(layout, source.name).parse(body, layout.data_line, None)
    del body, data, buffer
    if table.num_rows == 0:
        raise DataError(f"{source.name}: has a header but no data rows; add rows of numbers")
    return _to_raw(table, layout, source.name, bad), layout.notes


def stream_delimited(
    source: Input,
    delimiter: str,
    header: bool | None,
    chunk_rows: int,
    usecols: Callable[[list[str], bool], Sequence[int]] | None = None,
) -> tuple[list[str], bool, tuple[str, ...], Iterator[np.ndarray]]:
    """Column names, whether they are named, notes, and float64 blocks of at most
    ``chunk_rows`` rows (for score). A cell that is not a number, in a column ``usecols``
    keeps (default all), is refused with its row counted from the start of the file; the
    other columns read as NaN."""
    buffer, layout, at_end = _layout(source, delimiter, header)
    names = layout.names if layout.header else [f"x{j}" for j in range(len(layout.names))]
    columns = column_names(names, source.name, named=layout.header)
    rows = block_rows(chunk_rows, len(columns))
    kept = set(usecols(columns, layout.header)) if usecols is not None else None
    unused: dict[int, BadCell | None] = (
        {} if kept is None else {j: None for j in range(len(columns)) if j not in kept}
    )

    def blocks() -> Iterator[np.ndarray]:
        rows_before = 0
        parser = _Parser(layout, source.name)
        try:
            for data, line in _cut_blocks(source, buffer, layout, at_end):
                table, bad = parser.parse(data, line, len(data) + 1)
                if table.num_rows == 0:
                    continue
                raw = _to_raw(table, layout, source.name, {**bad, **unused})
                non_numeric = raw.non_numeric
                if kept is not None:
                    needed = {columns[j] for j in kept}
                    non_numeric = {c: cell for c, cell in non_numeric.items() if c in needed}
                if non_numeric:
                    shifted = {
                        column: None
                        if cell is None
                        else BadCell(cell.row + rows_before, cell.value, cell.expected)
                        for column, cell in non_numeric.items()
                    }
                    raise non_numeric_error(
                        source.name, raw.columns, shifted, "remove that column from the file"
                    )
                rows_before += raw.n_rows
                for start in range(0, raw.n_rows, rows):
                    yield raw.values[start : start + rows]
        finally:
            source.close()

    return columns, layout.header, layout.notes, blocks()


def _cut_blocks(
    source: Input, buffer: bytearray, layout: CsvLayout, at_end: bool
) -> Iterator[tuple[memoryview, int]]:
    r"""Blocks of whole lines after the header, with the line number each starts on.

    Lines are cut at the file's own line end only (a \n also ends a \r\n line; a stray
    \r at a cut leaves an empty line, which arrow skips), so one scan finds the cut and
    one count keeps the line numbers.
    """
    eol = layout.line_end
    carry = bytes(buffer[layout.data_start :])
    del buffer[:]
    line = layout.data_line
    # Rows enough per block that arrow's per-call cost (it grows with the columns) is small.
    size = min(max(BLOCK_BYTES, int(layout.bytes_per_value * len(layout.names) * 1024)), 1 << 26)
    check_memory(4 * size, f"reading {source.name} in blocks of {format_size(size)}", _MEMORY_HINT)
    while carry or not at_end:
        more = b"" if at_end else source.read(max(size - len(carry), 1))
        at_end = at_end or len(more) < max(size - len(carry), 1)
        data = carry + more if carry else more
        cut = len(data) if at_end else data.rfind(eol) + 1
        if cut == 0:  # one line longer than the block: read on, within the memory budget
            size *= 2
            check_memory(
                size * 4,
                f"reading a line of {source.name} longer than {format_size(size // 2)}",
                "check that the file has line ends",
            )
            carry = data
            continue
        carry = data[cut:]
        yield memoryview(data)[:cut], line
        line += data.count(eol, 0, cut)


__all__ = ["read_delimited", "read_head", "stream_delimited"]
