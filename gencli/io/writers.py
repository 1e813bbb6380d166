"""Writing tables: CSV, TSV, NPY or Parquet, to a file (atomically) or to stdout, in chunks.

``score`` and ``sample`` write a chunk, forget it and go on, so memory stays flat whatever the
row count. The format comes from ``--format`` or the extension, and the two must agree. Binary
formats go to stdout only when it is not a terminal. NPY needs its row count in the header:
a file is rewritten in place at the end; a pipe gets the count up front when the caller knows
it, or the rows are spooled to a temporary file first.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from gencli.errors import OutputError, raise_if_stopped
from gencli.io.atomic import atomic_write, resolve_target, seekable

FORMATS = ("csv", "tsv", "npy", "parquet")
BINARY_FORMATS = ("npy", "parquet")
MAX_PRECISION = 15  # every decimal of up to 15 significant digits survives a round trip


def output_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format to write ``path`` in: ``format`` if given, else from the extension.

    A known extension that says another format than ``format`` is refused (``.txt`` goes with
    CSV and TSV alike). '-' (stdout) and devices or pipes without an extension default to CSV.
    """
    from gencli.io.data import _EXTENSIONS

    if format is not None and format not in FORMATS:
        raise OutputError(f"unknown format '{format}'; use one of {', '.join(FORMATS)}")
    if str(path) == "-":
        return format or "csv"
    suffix = Path(path).suffix.lower()
    implied = _EXTENSIONS.get(suffix)
    if format is not None:
        text_either = suffix == ".txt" and format in ("csv", "tsv")
        if implied is not None and implied != format and not text_either:
            raise OutputError(
                f"{path}: its extension says {implied.upper()} but --format says "
                f"{format.upper()}; drop --format or name the file *.{format}"
            )
        return format
    if implied is not None:
        return implied
    with contextlib.suppress(OutputError):
        if resolve_target(path)[1]:  # /dev/null, a named pipe: no extension to go by
            return "csv"
    raise OutputError(
        f"{path}: cannot tell the format from the extension '{suffix or '(none)'}'; "
        f"pass --format {'|'.join(FORMATS)}"
    )


def round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Each value as the double nearest to it rounded to ``digits`` significant digits, so
    that the shortest text that reads back as that double (what the CSV writer prints) has
    at most ``digits`` digits: what '%.{digits}g' would print, without its trailing zeros.

    Vectorised for the common case; values whose scaled form is within rounding error of
    a tie, or whose exponent is beyond exact powers of ten, are formatted by Python.
    """
    if not 1 <= digits <= MAX_PRECISION:
        raise ValueError(f"digits must be in 1..{MAX_PRECISION}, got {digits}")
    x = np.asarray(values, dtype=np.float64)
    result = x.copy()
    picks = np.flatnonzero(np.isfinite(x) & (x != 0))
    if picks.size == 0:
        return result
    v = x.flat[picks]
    with np.errstate(all="ignore"):
        exponent = np.floor(np.log10(np.abs(v))).astype(np.int64)
        places = digits - 1 - exponent  # decimal places to keep
        exact = np.abs(places) <= 22  # 10**22 is the largest exact power of ten
        power = 10.0 ** np.abs(np.where(exact, places, 0))
        scaled = np.where(places >= 0, v * power, v / power)
        whole = np.round(scaled)
        rounded = np.where(places >= 0, whole / power, whole * power)
        near_tie = np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) < 1e-6
        slow = ~exact | near_tie | ~np.isfinite(rounded)
    rounded[slow] = [_round_one(value, digits) for value in v[slow].tolist()]
    result.flat[picks] = rounded
    return result


def _round_one(value: float, digits: int) -> float:
    """``value`` to ``digits`` significant digits; near the largest double, rounding up would
    overflow to infinity, so there the digits are cut toward zero instead."""
    rounded = float(f"{value:.{digits - 1}e}")
    if math.isinf(rounded):
        import decimal

        context = decimal.Context(prec=digits, rounding=decimal.ROUND_DOWN)
        rounded = float(context.create_decimal(value))
    return rounded


def _utf8(name: str) -> str:
    """A column name that UTF-8 can hold: lone surrogates (undecodable bytes) escaped."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _arrow_table(
    values: np.ndarray, flags: Mapping[str, np.ndarray], names: list[str], whole: int = 0
) -> Any:
    """An arrow table over float64 columns (the first ``whole`` of them as int64) and boolean
    flags, built from raw buffers.

    ``pa.array`` and ``pa.table`` import pandas (0.2 s) to check for pandas objects; a
    column of doubles or a packed bitmap needs no such check.
    """
    import pyarrow as pa

    n = values.shape[0]
    arrays = [
        pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values[:, j].astype(np.int64))])
        if j < whole
        else pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(values[:, j].copy())])
        for j in range(values.shape[1])
    ]
    for flag in flags.values():
        bits = np.packbits(np.asarray(flag, dtype=bool), bitorder="little")
        arrays.append(pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)]))
    return pa.Table.from_arrays(arrays, names=[_utf8(name) for name in names])


class TableWriter:
    """Writes chunks of a table to a file (atomically), a device or pipe, or stdout ('-').

    Args:
        path: the output path, or '-' for stdout.
        columns: names of the number columns; ``flags`` names boolean columns after them.
        format: csv, tsv, npy or parquet (default from the extension; stdout: csv).
        precision: significant digits of the numbers in CSV/TSV (default: every digit
            needed to read back the same double).
        rows: the number of rows that will be written, if known (lets NPY go to a pipe
            without spooling).
        whole: how many of the first columns hold whole numbers (row numbers): written as
            integers and never rounded by ``precision``.
        stdout: the binary stream for '-' (default ``sys.stdout.buffer``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str],
        flags: Sequence[str] = (),
        *,
        format: str | None = None,
        precision: int | None = None,
        rows: int | None = None,
        whole: int = 0,
        stdout: IO[bytes] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.whole = whole
        self.flags = list(flags)
        self.to_stdout = str(path) == "-"
        self.fmt = output_format(path, format)
        if precision is not None and self.fmt in BINARY_FORMATS:
            raise OutputError(
                f"--precision applies to CSV and TSV; {self.fmt.upper()} keeps every bit of "
                "each number, so drop --precision"
            )
        if precision is not None and not 1 <= precision <= MAX_PRECISION:
            raise OutputError(f"--precision must be 1..{MAX_PRECISION}, got {precision}")
        self.precision = precision
        self.expected_rows = rows
        self.path = path
        self.stdout = stdout
        self.rows = 0
        self._stack = contextlib.ExitStack()
        self._handle: IO[bytes] | None = None
        self._target: IO[bytes] | None = None  # where a spooled NPY goes at the end
        self._npy_counted = False
        self._parquet: Any = None
        self._header_done = False
        self.terminal = False  # whether the rows go to a terminal

    # ------------------------------------------------------------------ opening

    def _open_stdout(self) -> IO[bytes]:
        if self.stdout is not None:
            return self.stdout
        from gencli.io import atomic

        atomic.touched.append("stdout")  # until the table is complete: said on a failure
        return sys.stdout.buffer

    def __enter__(self) -> TableWriter:
        if self.to_stdout:
            handle = self._open_stdout()
        else:
            handle = self._stack.enter_context(atomic_write(self.path))
        self._handle = handle
        self.terminal = _is_terminal(handle)
        if self.terminal and self.fmt in BINARY_FORMATS:
            where = "stdout" if self.to_stdout else str(self.path)
            error = OutputError(
                f"{where} is a terminal: refusing to print {self.fmt.upper()} (binary) on it; "
                f"redirect to a file or a pipe, or write a file with -o out.{self.fmt}"
            )
            self._stack.__exit__(OutputError, error, None)  # nothing was written
            raise error
        if self.fmt == "npy":
            if seekable(handle):
                self._raw_write(self._npy_header(0))
            elif self.expected_rows is not None:
                self._raw_write(self._npy_header(self.expected_rows))
                self._npy_counted = True
            else:  # a pipe, and the row count is unknown until the end: spool the rows
                self._target = handle
                try:
                    self._handle = self._stack.enter_context(tempfile.TemporaryFile())
                except OSError as exc:
                    raise self._spool_error(exc) from exc
        return self

    # ------------------------------------------------------------------ writing

    def _raw_write(self, payload: bytes | memoryview, handle: IO[bytes] | None = None) -> None:
        stream = handle if handle is not None else self._handle
        assert stream is not None
        try:
            write_all(stream, payload)
        except BrokenPipeError:
            raise
        except OSError as exc:
            if stream is not None and stream is not self._target and self._target is not None:
                raise self._spool_error(exc) from exc
            raise self._write_error(exc) from exc

    def _write_error(self, exc: OSError) -> OutputError:

        from gencli.io.atomic import reason

        where = "stdout" if self.to_stdout else str(self.path)
        return OutputError(f"cannot write to {where}: {reason(exc)}")

    def _spool_error(self, exc: OSError) -> OutputError:
        from gencli.io.atomic import reason

        return OutputError(
            f"cannot keep the NPY rows in a temporary file in {tempfile.gettempdir()} until "
            f"their count is known: {reason(exc)}; set TMPDIR to a folder with room, or write "
            "a file with -o"
        )

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
        if values.shape[0] == 0 and (self._header_done or self._parquet is not None):
            return  # nothing to add (a chunk whose rows were all skipped)
        if self.fmt in ("csv", "tsv"):
            self._raw_write(self._csv(values, flags, header=not self._header_done))
            self._header_done = True
        elif self.fmt == "npy":
            extra = [np.asarray(f, dtype=np.float64).reshape(-1, 1) for f in flags.values()]
            block = np.ascontiguousarray(np.hstack([values, *extra]) if extra else values, "<f8")
            self._raw_write(block.reshape(-1).data.cast("B"))  # its own bytes, no copy
        else:
            self._write_parquet(values, flags)
        self.rows += values.shape[0]

    def _csv(self, values: np.ndarray, flags: Mapping[str, np.ndarray], header: bool) -> bytes:
        import pyarrow.csv as pacsv

        if self.precision is not None:
            values = values.copy()
            values[:, self.whole :] = round_significant(values[:, self.whole :], self.precision)
        table = _arrow_table(values, flags, [*self.columns, *flags], self.whole)
        delimiter = "\t" if self.fmt == "tsv" else ","
        out = io.BytesIO()
        if header:  # written here: arrow would quote every name
            names = [*self.columns, *flags]
            if self.terminal:  # names from a file must not drive the terminal
                from gencli.io.console import printable

                names = [printable(name) for name in names]
            out.write(_csv_header(names, delimiter))
        if table.num_rows:
            options = pacsv.WriteOptions(include_header=False, delimiter=delimiter)
            pacsv.write_csv(table, out, options)
        return out.getvalue()

    def _write_parquet(self, values: np.ndarray, flags: Mapping[str, np.ndarray]) -> None:
        import pyarrow.parquet as pq

        table = _arrow_table(values, flags, [*self.columns, *flags], self.whole)
        try:
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._handle, table.schema)
            self._parquet.write_table(table)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._write_error(exc) from exc

    # ------------------------------------------------------------------ closing

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
            try:
                self._parquet.close()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise self._write_error(exc) from exc
        if self.fmt == "npy":
            self._finish_npy(handle)
        if self.to_stdout:
            try:
                (self._target or handle).flush()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise self._write_error(exc) from exc
            from gencli.io import atomic

            if "stdout" in atomic.touched:
                atomic.touched.remove("stdout")

    def _finish_npy(self, handle: IO[bytes]) -> None:
        if self._npy_counted:
            if self.rows != self.expected_rows:
                raise OutputError(
                    f"wrote {self.rows} rows after announcing {self.expected_rows} in the NPY "
                    "header; this is a bug in gencli, please report it"
                )
        elif self._target is not None:  # copy the spooled rows behind the real header
            self._raw_write(self._npy_header(self.rows), self._target)
            handle.seek(0)
            try:
                shutil.copyfileobj(handle, self._target, 1 << 20)
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise self._write_error(exc) from exc
        else:
            handle.seek(0)
            self._raw_write(self._npy_header(self.rows))


def _is_terminal(handle: IO[bytes]) -> bool:
    try:
        return os.isatty(handle.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def write_all(stream: IO[bytes], payload: bytes | memoryview) -> None:
    """Write every byte: a buffered write to a pipe may stop short when the reader closes,
    and the next write then raises BrokenPipeError instead of losing data silently."""
    view = memoryview(payload)
    while view:
        written = stream.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]


def _csv_header(names: Sequence[str], delimiter: str) -> bytes:
    """The header line, names quoted only when needed (and number-like names always, so
    that the header still reads as a header)."""
    import csv

    from gencli.io.data import _looks_numeric

    out = io.StringIO()
    quote_all = any(map(_looks_numeric, names))
    quoting: Literal[0, 1] = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=quoting).writerow(names)
    return out.getvalue().encode("utf-8", "backslashreplace")


def write_table(
    values: np.ndarray,
    columns: Sequence[str],
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    precision: int | None = None,
    stdout: IO[bytes] | None = None,
    flags: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write a whole table atomically to ``path`` (format by extension), or to stdout for
    '-'; ``flags`` are boolean columns after the numbers. See :class:`TableWriter`."""
    values = np.asarray(values)
    flags = flags or {}
    with TableWriter(
        path,
        columns,
        list(flags),
        format=format,
        precision=precision,
        rows=int(values.shape[0]) if values.ndim else None,
        stdout=stdout,
    ) as writer:
        writer.write(values, flags)


__all__ = [
    "BINARY_FORMATS",
    "FORMATS",
    "TableWriter",
    "output_format",
    "round_significant",
    "write_table",
]
