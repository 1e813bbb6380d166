"""The start of a CSV/TSV file: what it is, its delimiter, its header and its column types.

Both ways of reading delimited text (the whole table for ``fit`` and ``evaluate``, blocks
for ``score``) look at the same head, decided by its content alone (:func:`head_size`),
so they make the same decisions:

- **delimiter**: the one asked for, or ';' / tab when the first line has no ',' but those;
- **header**: a first row with a field that is not a number is a header. A first row of
  numbers is data when it looks like the rows under it, column by column: the same kind
  of literal (whole numbers above whole numbers within their range, decimals above
  decimals, booleans above booleans). Otherwise gencli guesses the likelier reading and
  says so in a note: whole numbers above decimals (``2019,2020``) or far outside their
  column's range are names; anything else is data. A single column always gets a note
  (one value is little to judge by); a file of one row is data;
- **column types**: float64 for columns of numbers, booleans for columns of true/false,
  text for the rest, fixed here once, so a column that changes from whole numbers to
  decimals after a million rows reads the same in blocks as all at once.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from gencli.errors import DataError
from gencli.io.table import (
    FALSE_SPELLINGS,
    INTEGER,
    NULL_SPELLINGS,
    NUMBER,
    TRUE_SPELLINGS,
    default_names,
    preview,
    shown,
)

HEAD_BYTES = 1 << 16  # judged before anything more is read: binary, not UTF-8, ...
HEAD_ROWS = 20  # the head grows past HEAD_BYTES until it holds this many lines
HEAD_MAX_BYTES = 1 << 24
_COMPARED_ROWS = 1000

_NULLS = frozenset(NULL_SPELLINGS)
_BOOLEANS = frozenset(TRUE_SPELLINGS + FALSE_SPELLINGS)


@dataclass(frozen=True)
class CsvLayout:
    """What the head says about a delimited file."""

    delimiter: str
    header: bool
    names: list[str]
    kinds: list[str]  # per column: 'number', 'bool' or 'text'
    notes: tuple[str, ...]
    bytes_per_value: float
    data_start: int  # byte offset of the first data row's line (after the header)
    data_line: int  # its line number, counting from 1
    line_end: bytes  # b"\n" (also ends \r\n lines), or b"\r" in a file without \n


def check_start(head: bytes | bytearray, name: str) -> None:
    """Refuse, from its first bytes, a file that is not text at all."""
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{name}: is an NPY file, not text; pass --format npy")
    if head.startswith(b"PAR1"):
        raise DataError(f"{name}: is a Parquet file, not text; pass --format parquet")
    if b"\x00" in head[:HEAD_BYTES]:
        raise DataError(f"{name}: is binary, not a text table; check the file")


def _line_ends(data: bytes | bytearray, start: int, stop: int) -> int:
    r"""How many lines end in ``data[start:stop]`` (\n, \r\n or a lone \r)."""
    return (
        data.count(b"\n", start, stop)
        + data.count(b"\r", start, stop)
        - data.count(b"\r\n", start, stop)
    )


def head_size(data: bytes | bytearray, at_end: bool) -> int | None:
    """Where the head ends in ``data`` (the file's first bytes), or None if more must be
    read to know. It depends on the content only: the first HEAD_BYTES, grown to hold
    HEAD_ROWS lines (at most HEAD_MAX_BYTES), cut back to the last whole line."""
    size = HEAD_BYTES
    while True:
        if len(data) < size and not at_end:
            return None
        end = min(size, len(data))
        if at_end and end == len(data):
            return end
        lines = _line_ends(data, 0, end)
        if lines >= HEAD_ROWS + 1 or size >= HEAD_MAX_BYTES:
            break
        size *= 2
    cut = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
    if cut < 0:
        raise DataError(
            f"its first line is longer than {HEAD_MAX_BYTES >> 20} MB; is it a table? "
            "Check the file"
        )
    return cut + 1


def decode_head(head: bytes | bytearray, name: str) -> str:
    """The head as text (a BOM dropped), or a refusal naming the first bad byte."""
    try:
        text = bytes(head).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name}: is not UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8 CSV"
        ) from exc
    return text.removeprefix("\ufeff")


def _kind(field: str) -> str:
    """'missing', 'int', 'decimal', 'bool' or 'text': what a cell's literal is."""
    if field in _NULLS or not field.strip():
        return "missing"
    if field in _BOOLEANS:
        return "bool"
    if INTEGER.fullmatch(field):
        return "int"
    if NUMBER.fullmatch(field):
        return "decimal"
    return "text"


def _rows(text: str, delimiter: str) -> tuple[list[list[str]], int]:
    """The head's non-blank rows (up to a thousand), and how many lines the first spans
    with the blank lines before it."""
    limit = csv.field_size_limit(1 << 30)
    rows: list[list[str]] = []
    first_lines = 0
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for row in reader:
            if row and not (len(row) == 1 and not row[0].strip()):
                rows.append(row)
                first_lines = first_lines or reader.line_num
            if len(rows) > _COMPARED_ROWS:
                break
    except csv.Error:
        pass  # an odd quote: judge by the rows read so far; the reader explains it later
    finally:
        csv.field_size_limit(limit)
    return rows, first_lines


def _offset_after_lines(data: bytes | bytearray, lines: int) -> int:
    r"""The byte offset just after the first ``lines`` lines (ended by \n, \r\n or \r)."""
    pos = 0
    for _ in range(lines):
        newline, carriage = data.find(b"\n", pos), data.find(b"\r", pos)
        if carriage != -1 and (newline == -1 or carriage < newline):
            pos = carriage + (2 if data[carriage + 1 : carriage + 2] == b"\n" else 1)
        elif newline != -1:
            pos = newline + 1
        else:
            return len(data)
    return pos


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _pick_delimiter(text: str, delimiter: str) -> str:
    line = _first_line(text)
    if delimiter == "," and "," not in line:
        if ";" in line:
            return ";"
        if "\t" in line:
            return "\t"
    return delimiter


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


def _verdict(first: str, below: list[str]) -> str | None:
    """How a first-row cell compares with its column below: None (nothing to compare),
    'same', 'near' (a whole number just outside the whole numbers below, as in sorted
    data), 'far' (far outside them), 'names' (a whole number above decimals), 'booleans'
    (a number above true/false or the reverse) or 'odd' (a decimal above whole numbers)."""
    kind = _kind(first)
    cells = [c for c in below if _kind(c) != "missing"]
    if kind == "missing" or not cells:
        return None
    kinds = {_kind(c) for c in cells}
    if kind == "int" and kinds == {"int"}:
        value, numbers = int(first), [int(c) for c in cells]
        low, high = min(numbers), max(numbers)
        if low <= value <= high:
            return "same"
        if len(numbers) < 2:
            return "near"  # one value below says nothing about its column's spread
        step = (high - low) / (len(numbers) - 1)
        return "near" if low - step <= value <= high + step else "far"
    if kind in kinds:
        return "same"
    if kind == "int" and kinds == {"decimal"}:
        return "names"
    if "bool" in kinds | {kind}:
        return "booleans"  # read as data, the column would mix numbers and true/false
    return "odd"


_REASONS = {
    "names": "whole numbers above decimals",
    "far": "whole numbers far outside the range of the values below them",
    "near": "whole numbers just outside the range of the values below them",
    "odd": "a different kind of number than the rows below",
    "booleans": "numbers above true/false values, or the reverse",
    "single": "with a single column there is little to compare it with",
    "mixed": "some columns look like the rows below and some do not",
}


def decide_header(rows: list[list[str]], quoted: bool, name: str) -> tuple[bool, str | None]:
    """Whether the first row is a header, and the note to show when it is a guess."""
    first = rows[0]
    kinds = [_kind(f) for f in first]
    if "text" in kinds:
        return True, None
    if not any(k in ("int", "decimal", "bool") for k in kinds) and any(f.strip() for f in first):
        return True, None  # only missing-value words such as NA: names, as ever
    if quoted:
        return True, None
    below = rows[1:]
    if not below:
        return False, None  # a file of one row is data
    verdicts = [_verdict(f, [r[j] for r in below if len(r) > j]) for j, f in enumerate(first)]
    seen = [v for v in verdicts if v is not None]
    if not seen:
        return False, None
    single = len(first) == 1
    if all(v == "same" for v in seen) and not single:
        return False, None
    header = all(v in ("names", "far") for v in seen) or "booleans" in seen
    distinct = set(seen)
    if single and distinct == {"same"}:
        reason = _REASONS["single"]
    elif "booleans" in distinct:
        reason = _REASONS["booleans"]
    elif len(distinct) == 1 or header:
        reason = " or ".join(_REASONS[v] for v in sorted(distinct))
    else:
        reason = _REASONS["mixed"]
    fields = preview([shown(f.strip(), 20, quoted=False) for f in first])
    if header:
        return True, (
            f"read the first row ({fields}) of {name} as column names: {reason}; "
            "pass --no-header if it is data"
        )
    return False, (
        f"read the first row ({fields}) of {name} as data: {reason}; "
        "pass --header if it holds column names"
    )


def _column_kinds(rows: list[list[str]], n_columns: int) -> list[str]:
    """'text' for a column with a cell that is neither a number nor true/false; else
    'bool' or 'number', whichever most cells are (the others are then refused by row)."""
    kinds = []
    for j in range(n_columns):
        cells = [_kind(r[j]) for r in rows if len(r) > j]
        if "text" in cells:
            kinds.append("text")
        elif cells.count("bool") > cells.count("int") + cells.count("decimal"):
            kinds.append("bool")
        else:
            kinds.append("number")
    return kinds


def read_layout(
    head: bytes | bytearray, name: str, delimiter: str, header: bool | None
) -> CsvLayout:
    """The layout of a delimited file from its head (see :func:`head_size`)."""
    text = decode_head(head, name)
    delimiter = _pick_delimiter(text, delimiter)
    rows, first_lines = _rows(text, delimiter)
    if not rows:
        raise DataError(f"{name}: is empty; it needs a table of numbers")
    if len(rows) == 1 and any("\n" in f or "\r" in f for f in rows[0]):
        raise DataError(
            f'{name}: no table could be read from it: does its first line open a quote (") '
            "that never closes? Check the file"
        )
    note = None
    if header is None:
        header, note = decide_header(rows, _quoted_header(text, delimiter), name)
    first = rows[0]
    names = list(first) if header else default_names(len(first))
    data_rows = rows[1:] if header else rows
    per_line = sum(len(r) for r in rows) / len(rows)
    data_start = _offset_after_lines(head, first_lines) if header else 0
    return CsvLayout(
        delimiter=delimiter,
        header=header,
        names=names,
        kinds=_column_kinds(data_rows, len(first)),
        notes=(note,) if note else (),
        bytes_per_value=max(1.0, len(head) / max(1.0, _line_ends(head, 0, len(head)) * per_line)),
        data_start=data_start,
        data_line=1 + (_line_ends(head, 0, data_start) if header else 0),
        line_end=b"\n" if b"\n" in head or b"\r" not in head else b"\r",
    )
