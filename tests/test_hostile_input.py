"""Hostile and odd input: the readers, the model loader and numerical edge cases.

The promises tested here (see the README's Guarantees section):

- A reader given any bytes either returns the right numbers, as finite float64 values
  with unique column names, or raises a :class:`~gencli.errors.GencliError`; nothing else
  escapes. "The right numbers" is checked against tables this file builds itself and
  renders in many CSV dialects, NPY dtypes and Parquet types.
- A model file, however it was mutated or crafted, either loads into a model whose
  log-densities at its training rows are finite, or raises
  :class:`~gencli.errors.ModelFileError`; nothing in it is ever run.
- Each numerical edge case is either fitted (finite scores, samples and model file,
  checked against an independent reference where one exists) or refused with a message
  that names the problem and says what to do.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import gencli
from gencli.cli.main import cli
from gencli.density import modelfile
from gencli.errors import DataError, FitError, GencliError, ModelFileError
from gencli.io.data import Table, read_table
from gencli.io.streams import finite_chunks, stream_table

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder for files the properties write (hypothesis runs many examples per test)."""
    return tmp_path_factory.mktemp("hostile")


# ============================================================================ readers

EXTENSIONS = {None: ".csv", "csv": ".csv", "tsv": ".tsv", "npy": ".npy", "parquet": ".parquet"}


def read_payload(
    payload: bytes, route: str, fmt: str | None, folder: Path, header: bool | None = None
) -> Table:
    """Read bytes through stdin ('-') or from a file whose extension names the format,
    with :func:`read_table` (fit) or :func:`stream_table` in small chunks (score)."""
    source: str | Path = "-"
    if route.endswith("file"):
        source = folder / f"input{EXTENSIONS[fmt]}"
        source.write_bytes(payload)
    stdin = io.BytesIO(payload)
    if not route.startswith("stream"):
        return read_table(source, format=fmt, stdin=stdin, header=header)
    stream = stream_table(source, format=fmt, stdin=stdin, chunk_rows=2, header=header)
    chunks = list(finite_chunks(stream))
    if not chunks:
        # What `gencli score` says when a stream has no rows.
        raise DataError(f"{stream.source}: has no data rows; nothing to score")
    return Table(np.vstack(chunks), stream.columns, stream.named, stream.source, notes=stream.notes)


def check_table(table: Table) -> None:
    """What every table a reader returns must be."""
    values = table.values
    assert isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 2
    assert values.shape[0] >= 1 and values.shape[1] >= 1, values.shape
    assert np.all(np.isfinite(values))
    assert len(table.columns) == values.shape[1]
    assert all(isinstance(c, str) and c for c in table.columns)
    assert len(set(table.columns)) == len(table.columns), table.columns


def read_or_refuse(payload: bytes, route: str, fmt: str | None, folder: Path) -> Table | None:
    """The table, or None when refused with a GencliError; any other exception fails."""
    try:
        table = read_payload(payload, route, fmt, folder)
    except GencliError as exc:
        assert str(exc).strip(), "an error without a message"
        return None
    check_table(table)
    return table


routes = st.sampled_from(["stdin", "file", "stream-stdin", "stream-file"])
formats = st.sampled_from([None, "csv", "tsv", "npy", "parquet"])
magic = st.sampled_from([b"", b"", b"\x93NUMPY", b"\x93NUMPY\x01\x00", b"PAR1", b"\xef\xbb\xbf"])


@PROPERTY
@given(prefix=magic, body=st.binary(max_size=600), route=routes, fmt=formats)
def test_random_bytes_are_read_or_refused(scratch, prefix, body, route, fmt):
    read_or_refuse(prefix + body, route, fmt, scratch)


# Pieces of text a CSV is made of, and a few it should not be: shapes that mostly fail.
CSV_PIECES = [
    *["1", "0", "-2.5", "1e300", "1E-300", "5e-324", "nan", "inf", "-inf", "true", "False"],
    *["a", "b", "x0", "", ",", ",", ",", ";", "\t", "\n", "\n", "\r\n", "\r", '"', '""', " "],
    *["\ufeff", "é", "1_0", "+3", ".5", "1.", "0x10", "1e", "--1", "9" * 25, "#", "'"],
    *["\x0b", "\u2028", "NULL", "NA", "2020-01-01", "12:00:00"],
]


@PROPERTY
@given(
    pieces=st.lists(st.sampled_from(CSV_PIECES), max_size=40),
    bom=st.booleans(),
    route=routes,
    fmt=st.sampled_from([None, "csv", "tsv"]),
)
@example(pieces=["a,b\r1,2\r3\r"], bom=False, route="stdin", fmt=None)
def test_random_csv_shapes_are_read_or_refused(scratch, pieces, bom, route, fmt):
    payload = ("\ufeff" if bom else "") + "".join(pieces)
    read_or_refuse(payload.encode("utf-8"), route, fmt, scratch)


# ----------------------------------------------------------------------------- the right numbers

NAME_POOL = ["a", "b", "ab", "bad", "", " a", "c ", "d e"]
TRUE_TEXT = ["true", "True", "TRUE"]
FALSE_TEXT = ["false", "False", "FALSE"]
EXTREMES = [5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1e-300, 1e300]


def expected_names(raw: list[str]) -> list[str]:
    """The documented naming rule: names are stripped, an empty one is x<position>, and a
    repeat gets the first free .1, .2, ... suffix."""
    names: list[str] = []
    for i, name in enumerate(raw):
        base = name.strip() or f"x{i}"
        candidate, k = base, 0
        while candidate in names:
            k += 1
            candidate = f"{base}.{k}"
        names.append(candidate)
    return names


def float_text(value: float, style: str) -> str:
    if style == "repr":
        return repr(value)
    if style == "plus" and math.copysign(1.0, value) > 0:
        return "+" + repr(value)
    if style in ("g", "e", "E"):
        return format(value, f".17{style}")
    return repr(value)


@st.composite
def csv_cases(draw) -> tuple[bytes, str, str | None, bool, list[str], np.ndarray]:
    """A table of known numbers rendered in a random CSV dialect.

    Returns the bytes, the route, the format, whether there is a header, the expected names
    and the expected values.
    """
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 4))
    kinds = draw(
        st.lists(st.sampled_from(["float", "int", "bool"]), min_size=n_cols, max_size=n_cols)
    )
    values = np.empty((n_rows, n_cols))
    cells: list[list[str]] = [[""] * n_cols for _ in range(n_rows)]
    for j, kind in enumerate(kinds):
        style = draw(st.sampled_from(["repr", "plus", "g", "e", "E"]))
        for i in range(n_rows):
            if kind == "float":
                value = draw(
                    st.one_of(
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.sampled_from(EXTREMES),
                    )
                )
                text = float_text(value, style)
            elif kind == "int":
                number = draw(st.one_of(st.integers(-1000, 1000), st.integers(-(2**70), 2**70)))
                value = float(number)
                text = ("+" if style == "plus" and number >= 0 else "") + str(number)
            else:
                flag = draw(st.booleans())
                value = float(flag)
                text = draw(st.sampled_from(TRUE_TEXT if flag else FALSE_TEXT))
            values[i, j] = value
            cells[i][j] = text
    # Quote some cells; pad some unquoted numbers with spaces (not booleans: see
    # test_booleans_with_spaces_read_like_numbers_with_spaces).
    for i in range(n_rows):
        for j in range(n_cols):
            if draw(st.integers(0, 3)) == 0:
                cells[i][j] = f'"{cells[i][j]}"'
            elif kinds[j] != "bool" and draw(st.integers(0, 4)) == 0:
                cells[i][j] = f" {cells[i][j]} "
    header = draw(st.booleans())
    if header:
        raw = draw(st.lists(st.sampled_from(NAME_POOL), min_size=n_cols, max_size=n_cols))
        if not any(name.strip() for name in raw):
            raw[0] = "h"
        names = expected_names(raw)
        rendered = [f'"{n}"' if draw(st.booleans()) else n for n in raw]
    else:
        names = [f"x{j}" for j in range(n_cols)]
        # A quoted first row over an unquoted second one is how gencli writes a header of
        # number-like names, so a headerless table must not look like that.
        first_row_quoted = all(c.startswith('"') for c in cells[0])
        if n_rows > 1 and first_row_quoted and not cells[1][0].startswith('"'):
            cells[1][0] = f'"{cells[1][0].strip()}"'
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    lines = ([delimiter.join(rendered)] if header else []) + [delimiter.join(r) for r in cells]
    text = "\ufeff" if draw(st.booleans()) else ""
    # A lone headerless row must end its line (see test_single_row_without_newline_is_read).
    must_end = len(lines) == 1
    for k, line in enumerate(lines):
        text += "\n" * draw(st.integers(0, 2)) if k else ""  # blank lines in between
        ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        last = k == len(lines) - 1
        text += line + (ending if not last or must_end or draw(st.booleans()) else "")
    route = draw(routes)
    fmt = draw(st.sampled_from(["tsv", None])) if delimiter == "\t" else None
    return text.encode("utf-8"), route, fmt, header, names, values


EXAMPLE_CSV = (
    b'\xef\xbb\xbf"a";b;\r\n\r\n1e300;-0.0;TRUE\r\n-9223372036854775809; 5e-324 ;"false"',
    "stdin",
    None,
    True,
    ["a", "b", "x2"],
    np.array([[1e300, -0.0, 1.0], [-9223372036854775809.0, 5e-324, 0.0]]),
)


@PROPERTY
@given(case=csv_cases())
@example(case=EXAMPLE_CSV)
def test_csv_dialects_read_to_the_right_numbers(scratch, case):
    """Read right without a note, or with a note that says what was guessed and the
    flag that reads it right."""
    payload, route, fmt, header, names, values = case
    table = read_payload(payload, route, fmt, scratch)
    check_table(table)
    if table.named is not header:
        (note,) = table.notes
        assert ("as column names" if table.named else "as data") in note
        assert ("--no-header" if table.named else "--header") in note
        table = read_payload(payload, route, fmt, scratch, header=header)
    assert table.columns == names
    assert table.named is header
    np.testing.assert_array_equal(table.values, values)
    told = read_payload(payload, route, fmt, scratch, header=header)
    assert told.notes == () and told.named is header


NPY_DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint64",
    "float16", "float32", "float64", ">f8", "<f4",
]  # fmt: skip


@PROPERTY
@given(
    array=st.sampled_from(NPY_DTYPES).flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    ),
    route=routes,
)
def test_npy_arrays_read_to_the_right_numbers_or_are_refused(scratch, array, route):
    buffer = io.BytesIO()
    np.save(buffer, array)
    table = read_or_refuse(buffer.getvalue(), route, "npy", scratch)
    expected = array.astype(np.float64)
    if array.ndim > 2 or not np.all(np.isfinite(expected)):
        assert table is None, "a 3-D array or one with NaN/inf was accepted"
        return
    assert table is not None
    np.testing.assert_array_equal(table.values, expected.reshape(array.shape[0], -1))
    assert table.columns == [f"x{j}" for j in range(table.values.shape[1])]


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, dtype=np.complex128),
        np.array(["1.5", "2"]),
        np.array(["2020-01-01"], dtype="M8[D]"),
        np.array([1], dtype="m8[s]"),
        np.zeros(2, dtype=[("a", "f8"), ("b", "f8")]),
        np.array([{"a": 1}, None], dtype=object),
        np.float64(3.0),
    ],
    ids=["complex", "strings", "datetime", "timedelta", "structured", "objects", "0-d"],
)
def test_npy_arrays_of_non_numbers_are_refused(scratch, array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    with pytest.raises(DataError, match=r"<stdin>"):
        read_payload(buffer.getvalue(), "stdin", "npy", scratch)


PARQUET_TYPES = {
    "float64": pa.float64(),
    "float32": pa.float32(),
    "int8": pa.int8(),
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "bool": pa.bool_(),
    "decimal": pa.decimal128(12, 3),
    "string": pa.string(),
    "timestamp": pa.timestamp("s"),
}


@st.composite
def parquet_columns(draw, n_rows: int) -> tuple[str, pa.Array, np.ndarray | None]:
    """A column of a random type; the float64 values it should read as, or None."""
    kind = draw(st.sampled_from(sorted(PARQUET_TYPES)))
    if kind in ("float64", "float32"):
        width = 64 if kind == "float64" else 32
        floats = st.floats(allow_nan=False, allow_infinity=False, width=width)
        data: list[Any] = draw(st.lists(floats, min_size=n_rows, max_size=n_rows))
        expected = np.array(data, dtype=np.float64 if width == 64 else np.float32)
    elif kind in ("int8", "int64", "uint64"):
        info = np.iinfo(kind)
        ints = st.integers(int(info.min), int(info.max))
        data = draw(st.lists(ints, min_size=n_rows, max_size=n_rows))
        expected = np.array([float(v) for v in data])
    elif kind == "bool":
        data = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
        expected = np.array(data, dtype=np.float64)
    elif kind == "decimal":
        ints = st.integers(-(10**11), 10**11)
        data = [
            Decimal(v).scaleb(-3) for v in draw(st.lists(ints, min_size=n_rows, max_size=n_rows))
        ]
        expected = np.array([float(v) for v in data])
    elif kind == "string":
        data = draw(st.lists(st.sampled_from(["1.5", "x", ""]), min_size=n_rows, max_size=n_rows))
        expected = None
    else:
        data = draw(st.lists(st.integers(0, 10**9), min_size=n_rows, max_size=n_rows))
        expected = None
    if draw(st.integers(0, 5)) == 0:
        data[draw(st.integers(0, n_rows - 1))] = None  # a missing value: must be refused
        expected = None
    return kind, pa.array(data, type=PARQUET_TYPES[kind]), expected


@st.composite
def parquet_cases(draw) -> tuple[bytes, list[str], list[str], list[np.ndarray | None]]:
    n_rows = draw(st.integers(1, 5))
    n_cols = draw(st.integers(1, 4))
    columns = [draw(parquet_columns(n_rows)) for _ in range(n_cols)]
    names = draw(st.lists(st.sampled_from(["a", "b", "c", " d"]), min_size=n_cols, max_size=n_cols))
    buffer = io.BytesIO()
    pq.write_table(pa.table([c[1] for c in columns], names=names), buffer)
    return buffer.getvalue(), names, [c[0] for c in columns], [c[2] for c in columns]


@PROPERTY
@given(case=parquet_cases(), route=routes)
def test_parquet_tables_read_to_the_right_numbers_or_are_refused(scratch, case, route):
    payload, names, kinds, expected = case
    table = read_or_refuse(payload, route, "parquet", scratch)
    if any(e is None for e in expected):
        assert table is None, "a non-numeric column or a missing value was accepted"
        return
    if table is None:
        # Refusing repeated names is allowed (and nothing else is).
        assert len(set(names)) < len(names)
        return
    assert table.columns == expected_names(names)
    for j, (kind, values) in enumerate(zip(kinds, expected, strict=True)):
        if kind == "decimal":  # within an ulp: see test_parquet_decimals_are_correctly_rounded
            np.testing.assert_allclose(table.values[:, j], values, rtol=2.3e-16, atol=0)
        else:
            np.testing.assert_array_equal(table.values[:, j], values)


@pytest.mark.xfail(
    reason="KNOWN: pyarrow's decimal-to-float cast is not correctly rounded "
    "(0.009 -> 0.009000000000000001); left to pyarrow",
    strict=True,
)
def test_parquet_decimals_are_correctly_rounded():
    values = [Decimal("0.009"), Decimal("123.456"), Decimal("-0.001")]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"d": pa.array(values, type=pa.decimal128(12, 3))}), buffer)
    table = read_table("-", format="parquet", stdin=io.BytesIO(buffer.getvalue()))
    assert table.values[:, 0].tolist() == [float(v) for v in values]


def _real_files() -> dict[str, bytes]:
    values = np.random.default_rng(7).normal(size=(12, 3)) * [1.0, 1e5, 1e-5]
    npy, parquet = io.BytesIO(), io.BytesIO()
    np.save(npy, values)
    pq.write_table(pa.table({"a": values[:, 0], "b": values[:, 1], "c": values[:, 2]}), parquet)
    text = "a,b,c\n" + "".join(",".join(map(repr, row)) + "\n" for row in values.tolist())
    return {"csv": text.encode(), "npy": npy.getvalue(), "parquet": parquet.getvalue()}


REAL_FILES = _real_files()
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "delete"]),
        st.floats(0, 1),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=3,
)


def mutate(payload: bytes, steps: list[tuple[str, float, bytes]]) -> bytes:
    data = bytearray(payload)
    for op, where, junk in steps:
        pos = min(int(where * len(data)), max(len(data) - 1, 0))
        if op == "flip" and data:
            data[pos] ^= junk[0] or 1
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = junk
        else:
            del data[pos : pos + len(junk) * 2]
    return bytes(data)


@PROPERTY
@given(fmt=st.sampled_from(sorted(REAL_FILES)), steps=mutations, route=routes)
def test_mutated_data_files_are_read_or_refused(scratch, fmt, steps, route):
    read_or_refuse(mutate(REAL_FILES[fmt], steps), route, fmt, scratch)


# ----------------------------------------------------------------------------- reader bugs


def refusal(payload: bytes, fmt: str | None = None) -> str:
    """The message of the DataError that reading these bytes from stdin must raise."""
    with pytest.raises(DataError) as info:
        read_table("-", format=fmt, stdin=io.BytesIO(payload))
    return str(info.value)


def test_ragged_csv_with_old_mac_line_endings_is_refused():
    message = refusal(b"a,b\r1,2\r3\r")
    assert "line 3" in message and "fix or remove" in message


def test_ragged_csv_with_a_huge_field_is_refused():
    message = refusal(b'a,b\n"' + b"x" * 200_000 + b'",2\n3\n')
    assert "line 3" in message


def test_bad_utf8_beyond_the_sniffed_start_is_refused():
    message = refusal(b"a" * 70_000 + b"\xff\n1\n")
    assert "UTF-8" in message


@pytest.mark.parametrize(
    ("shape", "fragment"), [((0, 3), "rows"), ((0,), "rows"), ((3, 0), "columns")]
)
def test_npy_without_rows_or_columns_is_refused(shape, fragment):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape))
    assert fragment in refusal(buffer.getvalue(), "npy")


@pytest.mark.parametrize("payload", [b"1.5,2", b"1.5;2", b'"1.5","2"', b"\n1.5,2"])
def test_single_row_without_newline_is_read(payload):
    table = read_table("-", stdin=io.BytesIO(payload))
    np.testing.assert_array_equal(table.values, [[1.5, 2.0]])


@pytest.mark.parametrize(
    "route",
    [
        pytest.param("stdin"),
        pytest.param("file"),
        "stream-file",
    ],
)
def test_parquet_column_name_that_is_not_utf8_is_refused(tmp_path, route):
    buffer = io.BytesIO()
    pq.write_table(pa.table({"zq": np.arange(3.0)}), buffer, store_schema=False)
    payload = buffer.getvalue().replace(b"zq", b"\xe1q")
    with pytest.raises(DataError, match=r"(?i)utf-8"):
        read_payload(payload, route, "parquet", tmp_path)


@pytest.mark.xfail(
    reason="KNOWN: arrow matches true/false exactly, so ' true' is text; left as is", strict=True
)
def test_booleans_with_spaces_read_like_numbers_with_spaces():
    table = read_table("-", stdin=io.BytesIO(b"a, b\n1, true\n 2 , false\n"))
    np.testing.assert_array_equal(table.values, [[1.0, 1.0], [2.0, 0.0]])


def test_unclosed_quote_is_not_called_empty():
    message = refusal(b'"a,b\n1,2\n3,4\n')
    assert "empty" not in message and "quote" in message


def _truncated_parquet() -> bytes:
    return REAL_FILES["parquet"][: len(REAL_FILES["parquet"]) // 2]


def _parquet_with_a_corrupt_page_header() -> bytes:
    payload = REAL_FILES["parquet"]
    return payload[:4] + bytes(8) + payload[12:]


def _parquet_with_repeated_names() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table([pa.array([1.0, 2.0])] * 2, names=["a", "a"]), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [
        (b"a,b\n1,2\n3\n", None),
        (b"\x93NUMPY\x01\x00junk", "npy"),
        pytest.param(_truncated_parquet(), "parquet", id="truncated-parquet"),
        pytest.param(_parquet_with_a_corrupt_page_header(), "parquet", id="bad-page"),
        pytest.param(b'"a\nb",c\nx,1\n', None, id="name-with-newline"),
    ],
)
def test_refusals_are_one_line(payload, fmt):
    message = refusal(payload, fmt)
    assert "\n" not in message and "\r" not in message, message


@pytest.mark.parametrize("route", ["stdin", "file", "stream-stdin", "stream-file"])
def test_parquet_with_repeated_names_reads_as_csv_does(scratch, route):
    """Repeated names get a suffix, as in a CSV header (see expected_names)."""
    table = read_payload(_parquet_with_repeated_names(), route, "parquet", scratch)
    assert table.columns == expected_names(["a", "a"]) == ["a", "a.1"]
    np.testing.assert_array_equal(table.values, [[1.0, 1.0], [2.0, 2.0]])


# ============================================================================ model files


def training_data() -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.vstack([rng.normal([0, 0], 1, (40, 2)), rng.normal([4, 5], [0.5, 2], (40, 2))])


@pytest.fixture(scope="module")
def models() -> dict[str, gencli.DensityModel]:
    X = training_data()
    return {
        "gmm": gencli.fit(X, "gmm", components=2, validation=0.0),
        "gmm-diag": gencli.fit(X, "gmm", components=2, covariance="diag", validation=0.0),
        "gmm-tied": gencli.fit(X, "gmm", components=2, covariance="tied", validation=0.0),
        "kde": gencli.fit(X, "kde", validation=0.0),
    }


def sound(model: gencli.DensityModel, rows: np.ndarray) -> bool:
    """Finite log-densities at (training) rows and finite samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(
            np.all(np.isfinite(model.score_samples(rows)))
            and np.all(np.isfinite(model.sample(5, seed=0)))
        )


# A child process mutates model-file bytes (a bad dtype state is not safe to build in
# the test process itself) under a 4 GiB address-space limit, and reports every outcome.
FUZZ_CHILD = textwrap.dedent(
    """
    import json, random, resource, sys, warnings
    import numpy as np
    from gencli.density import modelfile
    from gencli.errors import ModelFileError

    warnings.simplefilter("ignore")
    folder, cases = sys.argv[1], int(sys.argv[2])
    X = np.load(folder + "/X.npy")[:5]
    bases = {name: open(f"{folder}/{name}.pkl", "rb").read() for name in ("gmm", "kde")}
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))
    outcomes = {"refused": 0, "loaded": 0}
    problems = []
    for case in range(cases):
        rng = random.Random(case)
        name = rng.choice(sorted(bases))
        data = bytearray(bases[name])
        steps = []
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(["flip", "set", "cut", "insert", "delete"])
            pos = rng.randrange(len(data))
            if op == "flip":
                data[pos] ^= 1 << rng.randrange(8)
            elif op == "set":
                data[pos] = rng.randrange(256)
            elif op == "cut":
                del data[pos:]
            elif op == "insert":
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                del data[pos : pos + rng.randint(1, 16)]
            steps.append(f"{op}@{pos}")
            if not data:
                break
        where = f"case {case}: {name} {' '.join(steps)}"
        try:
            model = modelfile.loads(bytes(data), "m.pkl")
        except ModelFileError:
            outcomes["refused"] += 1
            continue
        except BaseException as exc:
            problems.append(f"{where}: loading raised {type(exc).__name__}: {exc}"[:300])
            continue
        outcomes["loaded"] += 1
        try:
            scores = model.score_samples(X)
            draws = model.sample(5, seed=0)
        except BaseException as exc:
            problems.append(f"{where}: loaded; scoring raised {type(exc).__name__}: {exc}"[:300])
            continue
        if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(draws))):
            problems.append(f"{where}: loaded, but scores {scores.tolist()} are not all finite")
    print(json.dumps({"outcomes": outcomes, "problems": problems}))
    """
)
FUZZ_CASES = 1500


LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs Linux's RLIMIT_AS and ru_maxrss in KiB"
)


@pytest.fixture(scope="module")
def byte_fuzz(tmp_path_factory, models) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("fuzz")
    np.save(folder / "X.npy", training_data())
    models["gmm"].save(folder / "gmm.pkl")
    models["kde"].save(folder / "kde.pkl")
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ_CHILD, str(folder), str(FUZZ_CASES)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, f"the loader crashed the process: {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout.splitlines()[-1])
    # The fuzz is not vacuous: mutations both get refused and get through.
    assert report["outcomes"]["refused"] > FUZZ_CASES / 2
    assert report["outcomes"]["loaded"] > 20
    return report


@LINUX_ONLY
def test_mutated_model_bytes_are_refused_or_load_soundly(byte_fuzz):
    assert byte_fuzz["problems"] == []


@LINUX_ONLY
def test_mutated_model_bytes_never_crash_or_escape_the_loader(byte_fuzz):
    escaped = [p for p in byte_fuzz["problems"] if "loading raised" in p]
    assert escaped == []


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


_DELETE = object()
REPLACEMENTS = [
    _DELETE, None, "abc", True, -1, -1.0, 0.0, float("nan"), float("inf"), 1e308, 1e-308,
    10**30, [], {}, {"a": 1}, [1.0, 2.0], [[1.0], [2.0, 3.0]], np.zeros(0), np.zeros((2, 2)),
    np.array([1.0, np.nan]), np.full(3, 1e300), np.arange(3), np.array([True]), -np.ones((2, 2)),
]  # fmt: skip


@pytest.fixture(scope="module")
def field_fuzz(models) -> dict[str, list[str]]:
    """Every field of real model files replaced in turn by each odd value, then loaded."""
    X = training_data()
    escaped, unsound = [], []
    for kind, model in models.items():
        plain = modelfile.to_plain(model)
        for path in list(_paths(plain))[1:]:
            if path[0] == "metadata" and len(path) > 1:
                continue  # free-form; covered by test_nested_objects_in_metadata_are_refused
            for replacement in REPLACEMENTS:
                mutated = copy.deepcopy(plain)
                parent = mutated
                for key in path[:-1]:
                    parent = parent[key]
                if replacement is _DELETE:
                    if not isinstance(parent, dict):
                        continue
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = copy.deepcopy(replacement)
                where = f"{kind} {'.'.join(map(str, path))} = {replacement!r}"
                try:
                    loaded = modelfile.loads(pickle.dumps(mutated, protocol=4), "m.pkl")
                except ModelFileError:
                    continue
                except Exception as exc:
                    escaped.append(f"{where}: {type(exc).__name__}: {exc}"[:200])
                    continue
                try:
                    if not sound(loaded, X):
                        unsound.append(f"{where}: non-finite scores or samples")
                except Exception as exc:
                    unsound.append(f"{where}: scoring raised {type(exc).__name__}: {exc}"[:200])
    return {"escaped": escaped, "unsound": unsound}


def test_model_with_any_field_replaced_raises_only_model_file_errors(field_fuzz):
    assert field_fuzz["escaped"] == []


def test_model_with_any_field_replaced_is_refused_or_sound(field_fuzz):
    assert field_fuzz["unsound"] == []


# ----------------------------------------------------------------------------- crafted pickles


def reduce_pickle(func: Any, args: tuple, protocol: int = 2) -> bytes:
    """A pickle that calls ``func(*args)`` when loaded by a trusting unpickler."""

    class Call:
        def __reduce__(self):
            return (func, args)

    return pickle.dumps(Call(), protocol=protocol)


def inside_a_model(models, payload_object: Any) -> bytes:
    """A real model file with the payload nested deep in its metadata."""
    plain = modelfile.to_plain(models["gmm"])
    plain["metadata"]["notes"] = [{"deep": ("x", [payload_object])}]
    return pickle.dumps(plain, protocol=4)


def crafted_pickles(marker: Path, models) -> dict[str, bytes]:
    import builtins
    import shutil
    import subprocess as sp

    command = f"touch '{marker}'"
    text = str(marker).encode()

    class Shell:
        def __reduce__(self):
            return (os.system, (command,))

    return {
        "os.system": reduce_pickle(os.system, (command,)),
        # Text opcodes behind a PROTO header, so that they reach the unpickler.
        "os.system-protocol-0": b"\x80\x02" + reduce_pickle(os.system, (command,), protocol=0),
        "os.system-protocol-5": reduce_pickle(os.system, (command,), protocol=5),
        "eval": reduce_pickle(eval, (f"open({str(marker)!r}, 'w').close()",)),
        "exec": reduce_pickle(exec, (f"open({str(marker)!r}, 'w').close()",)),
        "open": reduce_pickle(builtins.open, (str(marker), "w")),
        "subprocess": reduce_pickle(sp.call, (["touch", str(marker)],)),
        "shutil": reduce_pickle(shutil.copyfile, (__file__, str(marker))),
        "numpy-runstring": reduce_pickle(
            np.testing._private.utils.runstring,
            (f"open({str(marker)!r}, 'w').close()", {}),
        ),
        # builtins.getattr(builtins.__import__('os'), 'system')(command), by hand:
        "getattr-chain": b"\x80\x02c__builtin__\ngetattr\n(c__builtin__\n__import__\n"
        b"(S'os'\ntRS'system'\ntR(S'" + command.encode() + b"'\ntR.",
        "inst-opcode": b"\x80\x02(S'" + command.encode() + b"'\nios\nsystem\n.",
        "obj-opcode": b"\x80\x02(cos\nsystem\nS'" + command.encode() + b"'\no.",
        # Allowed module, forbidden attribute: protocol 4 resolves dotted names.
        "numpy-dotted-name": b"\x80\x04\x8c\x05numpy\x8c\x0endarray.tofile\x93.",
        "numpy-load": b"\x80\x04\x8c\x05numpy\x8c\x04load\x93\x8c"
        + bytes([len(text)])
        + text
        + b"\x85R.",
        "persistent-id": b"\x80\x02X\x03\x00\x00\x00abcQ.",
        "extension-code": b"\x80\x02\x82\xf0.",
        "nested-in-model": inside_a_model(models, Shell()),
        "huge-array": b"\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93\x8a\x06\x00\x10\xa5\xd4\xe8\x00"
        b"\x85\x85R.",  # numpy.ndarray((10**12,)): a memory bomb, not code
    }


CRAFTED = [
    "os.system", "os.system-protocol-0", "os.system-protocol-5", "eval", "exec", "open",
    "subprocess", "shutil", "numpy-runstring", "getattr-chain", "inst-opcode", "obj-opcode",
    "numpy-dotted-name", "numpy-load", "persistent-id", "extension-code", "nested-in-model",
    "huge-array",
]  # fmt: skip


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_pickles_are_refused_and_run_nothing(tmp_path, models, name):
    import copyreg

    marker = tmp_path / "pwned"
    payload = crafted_pickles(marker, models)[name]
    copyreg.add_extension("posix", "system", 240)  # so that EXT1 240 would mean os.system
    try:
        with pytest.raises(ModelFileError) as info:
            modelfile.loads(payload, "evil.pkl")
    finally:
        copyreg.remove_extension("posix", "system", 240)
    message = str(info.value)
    assert message.startswith("evil.pkl: ") and "\n" not in message
    if name not in ("persistent-id", "huge-array"):
        assert "refused: it asks to load" in message and "nothing in it was run" in message
    assert not marker.exists()


def test_crafted_pickle_via_the_command_line_runs_nothing(tmp_path, models):
    marker = tmp_path / "pwned"
    Path("evil.pkl").write_bytes(crafted_pickles(marker, models)["nested-in-model"])
    result = CliRunner().invoke(cli, ["sample", "evil.pkl", "-n", "3", "-o", "out.csv"])
    assert result.exit_code == 1
    assert "evil.pkl" in result.stderr and "refused" in result.stderr
    assert not marker.exists() and not Path("out.csv").exists()


def _nested_lists(depth: int) -> bytes:
    """Pickle opcodes for a list nested ``depth`` deep (no recursion needed to build)."""
    return b"]" * depth + b"a" * (depth - 1)


def test_deeply_nested_model_file_is_refused(models):
    plain = modelfile.to_plain(models["gmm"])
    plain["metadata"]["notes"] = "PLACEHOLDER-1234"
    payload = pickle.dumps(plain, protocol=3)  # protocol 3: no frames to keep consistent
    needle = b"X\x10\x00\x00\x00PLACEHOLDER-1234"
    assert payload.count(needle) == 1
    deep = payload.replace(needle, _nested_lists(50_000))
    try:
        loaded = modelfile.loads(deep, "deep.pkl")
    except ModelFileError as exc:
        assert str(exc).startswith("deep.pkl")
    else:
        assert sound(loaded, training_data())


def test_nested_objects_in_metadata_are_refused(models):
    plain = modelfile.to_plain(models["kde"])
    plain["metadata"]["notes"] = {"a": [{"b": (1, 2, {"c": complex(1, 2)})}]}
    with pytest.raises(ModelFileError, match=r"m\.pkl: .*complex"):
        modelfile.loads(pickle.dumps(plain, protocol=4), "m.pkl")


MEMO_BOMB_CHILD = textwrap.dedent(
    """
    import resource
    from gencli.density import modelfile
    from gencli.errors import ModelFileError
    # 200 MB more address space than this process already has: plenty to refuse 10 bytes.
    status = open("/proc/self/status").read()
    size = int(status.split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (200 << 20), resource.RLIM_INFINITY))
    # PROTO 4, BININT1 1, LONG_BINPUT 0x04000000, STOP: 10 bytes that ask for a 64M-slot memo
    try:
        modelfile.loads(b"\\x80\\x04K\\x01r\\x00\\x00\\x00\\x04.", "bomb.pkl")
        print("loaded")
    except ModelFileError as exc:
        print("refused", exc)
    """
)


@LINUX_ONLY
def test_tiny_model_file_cannot_make_the_loader_allocate_gigabytes():
    proc = subprocess.run(
        [sys.executable, "-c", MEMO_BOMB_CHILD], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    outcome = proc.stdout.strip()
    assert outcome.startswith("refused bomb.pkl: "), outcome
    assert "MemoryError" not in outcome, outcome


def test_every_model_file_save_writes_loads_back(tmp_path, models):
    model = copy.copy(models["gmm"])
    model.metadata = {**model.metadata, "loss": np.float64(1.5)}
    try:
        model.save(tmp_path / "m.pkl")
    except GencliError:
        return  # refusing to write it is fine too
    assert gencli.load(tmp_path / "m.pkl").metadata["loss"] == 1.5


# ============================================================================ numbers


def non_finite_fields(value: Any, where: str = "model") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite_fields(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from non_finite_fields(item, f"{where}[{i}]")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            yield where
    elif isinstance(value, float) and not math.isfinite(value):
        yield where


def assert_sound(model: gencli.DensityModel, X: np.ndarray) -> np.ndarray:
    """Finite scores, samples and model file; the file reloads to the same scores."""
    scores = model.score_samples(X)
    assert np.all(np.isfinite(scores)), scores
    draws = model.sample(500, seed=3)
    assert draws.shape == (500, X.shape[1]) and np.all(np.isfinite(draws))
    payload = modelfile.dumps(model)
    assert list(non_finite_fields(pickle.loads(payload))) == []
    again = modelfile.loads(payload, "m.pkl").score_samples(X)
    np.testing.assert_allclose(again, scores, rtol=1e-12)
    return scores


def told(model: gencli.DensityModel) -> str:
    """Everything the fit told the user: its repairs and warnings."""
    return " ".join([*model.metadata["fixes"], *model.metadata["warnings"]])


def powers_of_two(X: np.ndarray) -> np.ndarray:
    """Per-column powers of two bringing each column near 1: exact rescaling."""
    return np.exp2(-np.floor(np.log2(np.max(np.abs(X), axis=0))))


def gaussian_reference(X: np.ndarray, Q: np.ndarray, reg_covar: float = 1e-6) -> np.ndarray:
    """log-density at Q of the one-component maximum-likelihood Gaussian of X, with gencli's
    regularizer (reg_covar on the diagonal in standardized units), computed after an exact
    power-of-two rescaling so that 1e300-sized data neither overflows nor underflows."""
    c = powers_of_two(X)
    S = X * c
    mean = S.mean(axis=0)
    cov = np.atleast_2d(np.cov(S, rowvar=False, ddof=0)) + reg_covar * np.diag(S.var(axis=0))
    return multivariate_normal(mean, cov).logpdf(Q * c) + np.sum(np.log(c))


def gaussian_kde_reference(X: np.ndarray, Q: np.ndarray, bandwidth: float) -> np.ndarray:
    """A direct sum of Gaussian kernels with per-column width bandwidth x column std."""
    c = powers_of_two(X)
    S, T = X * c, Q * c
    width = bandwidth * S.std(axis=0)
    u = (T[:, None, :] - S[None, :, :]) / width
    log_kernels = np.sum(-0.5 * u**2 - np.log(width) - 0.5 * math.log(2 * math.pi), axis=2)
    return logsumexp(log_kernels, axis=1) - math.log(len(X)) + np.sum(np.log(c))


RNG = np.random.default_rng(20240612)
BASE = RNG.normal(size=(60, 3)) @ np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("model", ["gmm", "kde"])
def test_constant_column_is_refused_naming_it(model):
    X = BASE.copy()
    X[:, 1] = 7.25
    with pytest.raises(FitError) as info:
        gencli.fit(X, model, columns=None, validation=0.0)
    message = str(info.value)
    assert "'x1'" in message and "constant" in message and message.endswith("with columns")
    assert "'x0'" not in message and "'x2'" not in message


@pytest.mark.parametrize("model", ["gmm", "kde"])
def test_constant_column_without_standardizing_is_refused_too(model):
    # Without standardizing, the "density" over a constant column is the regularizer's
    # (or the kernel's) spike: its height says nothing about the data.
    X = BASE.copy()
    X[:, 1] = 7.25
    with pytest.raises(FitError, match=r"'x1' is constant.*with columns"):
        gencli.fit(X, model, standardize=False, validation=0.0)


def test_duplicated_rows_give_the_same_density():
    twice = np.vstack([BASE, BASE])
    once = gencli.fit(BASE, "gmm", components=1, validation=0.0)
    doubled = gencli.fit(twice, "gmm", components=1, validation=0.0)
    scores = assert_sound(doubled, twice)
    np.testing.assert_allclose(scores[:60], once.score_samples(BASE), rtol=1e-9)
    np.testing.assert_allclose(scores, gaussian_reference(twice, twice), rtol=1e-8)
    kde_once = gencli.fit(BASE, "kde", bandwidth=0.4, validation=0.0)
    kde_twice = gencli.fit(twice, "kde", bandwidth=0.4, validation=0.0)
    np.testing.assert_allclose(
        assert_sound(kde_twice, BASE), kde_once.score_samples(BASE), rtol=1e-6
    )


def test_more_columns_than_rows():
    X = RNG.normal(size=(6, 12))
    try:
        gmm = gencli.fit(X, "gmm", components=1, validation=0.0)
    except FitError as exc:
        assert "rows" in str(exc) and "columns" in str(exc)
    else:
        scores = assert_sound(gmm, X)
        assert told(gmm), "a fit with more columns than rows says nothing about it"
        reg = gmm.params["reg_covar"]
        np.testing.assert_allclose(scores, gaussian_reference(X, X, reg), rtol=1e-8)
    kde = gencli.fit(X, "kde", validation=0.0)
    h = kde.params["bandwidth"]
    np.testing.assert_allclose(
        assert_sound(kde, X), gaussian_kde_reference(X, X, h), rtol=1e-5, atol=1e-5
    )


def test_columns_differing_in_scale_by_1e12():
    X = BASE * [1e-6, 1.0, 1e6]
    gmm = gencli.fit(X, "gmm", components=1, validation=0.0)
    np.testing.assert_allclose(assert_sound(gmm, X), gaussian_reference(X, X), rtol=1e-8)
    kde = gencli.fit(X, "kde", validation=0.0)
    h = kde.params["bandwidth"]
    np.testing.assert_allclose(
        assert_sound(kde, X), gaussian_kde_reference(X, X, h), rtol=1e-5, atol=1e-5
    )


def _fit_or_refusal(X: np.ndarray, model: str) -> gencli.DensityModel | str:
    options = {"components": 1} if model == "gmm" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # overflow must not leak as a warning
        try:
            return gencli.fit(X, model, validation=0.0, **options)
        except GencliError as exc:
            return str(exc)


def _check_fitted_against_reference(fitted: gencli.DensityModel, X: np.ndarray) -> None:
    scores = assert_sound(fitted, X)
    if fitted.family == "gmm":
        expected = gaussian_reference(X, X)
    else:
        expected = gaussian_kde_reference(X, X, fitted.params["bandwidth"])
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


@pytest.mark.parametrize("model", ["gmm", "kde"])
@pytest.mark.parametrize("magnitude", [1e150, 1e-150])
def test_large_and_small_magnitudes_are_fitted(model, magnitude):
    X = magnitude * (1.0 + 0.1 * BASE)
    fitted = _fit_or_refusal(X, model)
    assert not isinstance(fitted, str), fitted
    _check_fitted_against_reference(fitted, X)


@pytest.mark.parametrize("model", ["gmm", "kde"])
@pytest.mark.parametrize("magnitude", [1e300, 1e-300])
def test_values_near_the_float_limits_are_fitted_or_refused_clearly(model, magnitude):
    X = magnitude * (1.0 + 0.1 * BASE)
    fitted = _fit_or_refusal(X, model)
    if isinstance(fitted, str):
        assert "x0" in fitted, f"the message does not name the column: {fitted}"
        assert "constant" not in fitted and "bandwidth" not in fitted, fitted
        assert "scale" in fitted or "large" in fitted or "small" in fitted, fitted
    else:
        _check_fitted_against_reference(fitted, X)


@pytest.mark.parametrize("model", ["gmm", "kde"])
def test_integer_valued_data_is_a_density_that_integrates_to_one(model):
    counts = RNG.poisson(3.0, size=(400, 1)).astype(float)
    fitted = gencli.fit(counts, model, validation=0.0)
    assert_sound(fitted, counts)
    if model == "gmm":
        assert "collapsed" in told(fitted)  # the repair is reported
    grid = np.linspace(-10.0, 25.0, 35_001)
    density = np.exp(fitted.score_samples(grid.reshape(-1, 1)))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=2e-3)


def test_two_identical_columns():
    X = BASE.copy()
    X[:, 2] = X[:, 0]
    try:
        gmm = gencli.fit(X, "gmm", components=1, validation=0.0)
    except FitError as exc:
        assert "x0" in str(exc) and "x2" in str(exc)
    else:
        scores = assert_sound(gmm, X)
        assert told(gmm), "a singular covariance was repaired without a word"
        reg = gmm.params["reg_covar"]
        np.testing.assert_allclose(scores, gaussian_reference(X, X, reg), rtol=1e-8)
    kde = gencli.fit(X, "kde", validation=0.0)
    h = kde.params["bandwidth"]
    np.testing.assert_allclose(
        assert_sound(kde, X), gaussian_kde_reference(X, X, h), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("components", ["auto", "1..10", "2,4,8"])
def test_more_components_than_distinct_rows_are_not_chosen(components):
    X = np.repeat(RNG.normal(size=(3, 2)) * 4, 15, axis=0)
    fitted = gencli.fit(X, "gmm", components=components)
    assert assert_sound(fitted, X).shape == (45,)
    assert len(fitted.params["weights"]) <= 3


def test_more_components_than_distinct_rows_asked_for_is_refused():
    X = np.repeat(RNG.normal(size=(3, 2)), 15, axis=0)
    with pytest.raises(FitError, match=r"at least 5 distinct rows.*3.*components=3 or fewer"):
        gencli.fit(X, "gmm", components=5, validation=0.0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("model", ["gmm", "kde"])
def test_far_away_rows_score_finite_or_are_refused(tmp_path, model):
    X = BASE[:, :2]
    options = ["-k", "1"] if model == "gmm" else ["--model", "kde"]
    Path("train.csv").write_text(
        "a,b\n" + "".join(f"{x!r},{y!r}\n" for x, y in X.tolist()), encoding="utf-8"
    )
    runner = CliRunner()
    fitted = runner.invoke(cli, ["fit", "train.csv", "-o", "m.pkl", "-q", *options])
    assert fitted.exit_code == 0, fitted.output
    Path("far.csv").write_text("a,b\n0.5,0.5\n1e300,1e300\n1e300,-1e300\n-1.7e308,1.7e308\n")
    result = runner.invoke(cli, ["score", "m.pkl", "far.csv", "-o", "scores.csv"])
    if result.exit_code == 0:
        scores = np.loadtxt("scores.csv", delimiter=",", skiprows=1)
        assert scores.shape == (4,) and np.all(np.isfinite(scores)), scores
        assert "nan" not in result.stderr and "inf" not in result.stderr
    else:
        assert result.exit_code == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "far.csv" in errors[0] and "row 2" in errors[0], errors
        assert not Path("scores.csv").exists()
