"""Readers and writers in gencli.io.data, against tables built in the test itself.

Every file here is written by the test with numpy / pandas / pyarrow or as literal bytes,
so the expected values are known independently of gencli.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gencli.errors import DataError, GencliError, OutputError
from gencli.io.data import Table, as_table, read_table, require_finite, select_columns
from gencli.io.writers import TableWriter, write_table

# Values whose shortest decimal text is long or extreme: a lossy writer or reader shows up.
EXACT = np.array(
    [
        [0.1, 1 / 3, 1e-300, -2.5e17],
        [-0.0, 2.0 / 3.0, 1e300, 5e-324],
        [1.7976931348623157e308, -1e-5, 123456789.125, 3.0],
    ]
)


def write_bytes(path, content: bytes):
    path.write_bytes(content)
    return path


def told(info, path) -> str:
    """The error message with the path taken out, so fragments cannot match the path."""
    message = str(info.value)
    assert str(path) in message, message
    return message.replace(str(path), "<path>")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float64 bit patterns (so -0.0 and 0.0 differ, and rounding is caught)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(a.view(np.int64) == b.view(np.int64)))


# ----------------------------------------------------------------------------- delimited text


def test_csv_with_header_keeps_names(tmp_path):
    path = write_bytes(tmp_path / "h.csv", b"height,weight\n1.5,60\n1.75,72.5\n")
    table = read_table(path)
    assert table.columns == ["height", "weight"]
    assert table.named is True
    assert table.values.dtype == np.float64
    np.testing.assert_array_equal(table.values, [[1.5, 60.0], [1.75, 72.5]])
    assert table.source == str(path)
    assert table.dropped_rows == 0


def test_csv_without_header_gets_positional_names(tmp_path):
    path = write_bytes(tmp_path / "n.csv", b"1,2,3\n4,5,6\n")
    table = read_table(path)
    assert table.columns == ["x0", "x1", "x2"]
    assert table.named is False
    np.testing.assert_array_equal(table.values, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.tsv", b"a\tb\n1.5\t-2\n3\t4e2\n"),
        ("t.tab", b"a\tb\n1.5\t-2\n3\t4e2\n"),
        ("semi.csv", b"a;b\n1.5;-2\n3;4e2\n"),
        ("bom.csv", b"\xef\xbb\xbfa,b\n1.5,-2\n3,4e2\n"),
        ("crlf.csv", b"a,b\r\n1.5,-2\r\n3,4e2\r\n"),
        ("blank.csv", b"\n\na,b\n\n1.5,-2\n\n\n3,4e2\n\n"),
        ("quoted.csv", b'"a","b"\n"1.5","-2"\n3,"4e2"\n'),
        ("spaces.csv", b"a, b\n 1.5 , -2\n3,4e2\n"),
        ("bom_crlf.csv", b"\xef\xbb\xbfa,b\r\n1.5,-2\r\n\r\n3,4e2\r\n"),
    ],
)
def test_delimited_variants_read_the_same_table(tmp_path, name, content):
    table = read_table(write_bytes(tmp_path / name, content))
    assert table.columns == ["a", "b"]
    assert table.named is True
    np.testing.assert_array_equal(table.values, [[1.5, -2.0], [3.0, 400.0]])


def test_bom_on_headerless_csv_is_not_part_of_the_first_value(tmp_path):
    table = read_table(write_bytes(tmp_path / "b.csv", b"\xef\xbb\xbf7.5,2\n3,4\n"))
    assert table.named is False
    np.testing.assert_array_equal(table.values, [[7.5, 2.0], [3.0, 4.0]])


def test_semicolon_headerless(tmp_path):
    table = read_table(write_bytes(tmp_path / "s.csv", b"1;2\n3;4\n"))
    assert table.columns == ["x0", "x1"]
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4]])


def test_exponents_are_exact(tmp_path):
    path = write_bytes(tmp_path / "e.csv", b"a,b\n1e-300,1e300\n-1E+5,2.5e-7\n5e-324,-0.0\n")
    table = read_table(path)
    expected = np.array([[1e-300, 1e300], [-1e5, 2.5e-7], [5e-324, -0.0]])
    assert same_bits(table.values, expected)


def test_integers_become_floats(tmp_path):
    table = read_table(write_bytes(tmp_path / "i.csv", b"a,b\n1,-7\n2,1000000\n"))
    assert table.values.dtype == np.float64
    np.testing.assert_array_equal(table.values, [[1, -7], [2, 1_000_000]])


def test_integers_beyond_2_53_are_read_as_nearest_float(tmp_path):
    # e.g. nanosecond timestamps: 1_700_000_000_000_000_001 > 2**53
    path = write_bytes(tmp_path / "ts.csv", b"t,v\n1700000000000000001,1\n9007199254740993,2\n")
    table = read_table(path)
    np.testing.assert_array_equal(table.values[:, 0], [1.7e18, 9007199254740992.0])


def test_booleans_become_one_and_zero(tmp_path):
    path = write_bytes(tmp_path / "b.csv", b"a,flag\n1.5,true\n2.5,false\n3.5,True\n")
    table = read_table(path)
    assert table.columns == ["a", "flag"]
    np.testing.assert_array_equal(table.values, [[1.5, 1.0], [2.5, 0.0], [3.5, 1.0]])


def test_boolean_only_first_row_is_data_not_header(tmp_path):
    table = read_table(write_bytes(tmp_path / "b.csv", b"true,false\nfalse,true\n"))
    assert table.named is False
    np.testing.assert_array_equal(table.values, [[1, 0], [0, 1]])


def test_duplicate_and_empty_header_names_are_made_unique(tmp_path):
    table = read_table(write_bytes(tmp_path / "d.csv", b"a,a,\n1,2,3\n"))
    assert table.columns == ["a", "a.1", "x2"]
    np.testing.assert_array_equal(table.values, [[1, 2, 3]])


# ----------------------------------------------------------------------------- binary formats


def test_npy_2d(tmp_path):
    array = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    np.save(tmp_path / "a.npy", array)
    table = read_table(tmp_path / "a.npy")
    assert table.columns == ["x0", "x1", "x2"]
    assert table.named is False
    assert same_bits(table.values, array)


def test_npy_1d_is_one_column(tmp_path):
    np.save(tmp_path / "v.npy", np.array([3.5, -1.0, 2.25]))
    table = read_table(tmp_path / "v.npy")
    assert table.values.shape == (3, 1)
    assert table.columns == ["x0"]
    np.testing.assert_array_equal(table.values[:, 0], [3.5, -1.0, 2.25])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float32, np.bool_])
def test_npy_numeric_dtypes_become_float64(tmp_path, dtype):
    array = np.array([[1, 0], [0, 1], [1, 1]], dtype=dtype)
    np.save(tmp_path / "a.npy", array)
    table = read_table(tmp_path / "a.npy")
    assert table.values.dtype == np.float64
    np.testing.assert_array_equal(table.values, array.astype(np.float64))


def test_parquet_keeps_names_and_exact_values(tmp_path):
    arrow = pa.table(
        {
            "p": pa.array(EXACT[:, 0]),
            "q": pa.array([1, 2, 3], type=pa.int64()),
            "r": pa.array([True, False, True]),
            "s": pa.array(EXACT[:, 1], type=pa.float64()),
        }
    )
    pq.write_table(arrow, tmp_path / "t.parquet")
    table = read_table(tmp_path / "t.parquet")
    assert table.columns == ["p", "q", "r", "s"]
    assert table.named is True
    expected = np.column_stack([EXACT[:, 0], [1, 2, 3], [1, 0, 1], EXACT[:, 1]])
    assert same_bits(table.values, expected)


def test_parquet_written_by_pandas(tmp_path):
    frame = pd.DataFrame({"x": [0.1, 0.2, 0.3], "y": [10, 20, 30]})
    frame.to_parquet(tmp_path / "f.pq", index=False)
    table = read_table(tmp_path / "f.pq")
    assert table.columns == ["x", "y"]
    np.testing.assert_array_equal(table.values, frame.to_numpy(dtype=np.float64))


# ----------------------------------------------------------------------------- stdin, --format


def test_stdin_is_csv_by_default():
    table = read_table("-", stdin=io.BytesIO(b"a,b\n1,2\n3,4\n"))
    assert table.source == "<stdin>"
    assert table.columns == ["a", "b"]
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4]])


def test_stdin_with_format_npy():
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1.25, 2.5], [3.0, 4.0]]))
    table = read_table("-", format="npy", stdin=io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(table.values, [[1.25, 2.5], [3.0, 4.0]])
    assert table.named is False


def test_stdin_errors_name_stdin():
    with pytest.raises(DataError, match=r"<stdin>.*empty"):
        read_table("-", stdin=io.BytesIO(b""))


@pytest.mark.parametrize(
    ("name", "fmt", "content", "expected"),
    [
        ("data.dat", "csv", b"a,b\n1,2\n", [[1, 2]]),
        ("data.csv", "tsv", b"a\tb\n1\t2\n", [[1, 2]]),
        ("data.txt", "tsv", b"a\tb\n5\t6\n", [[5, 6]]),
        ("noext", "csv", b"7,8\n", [[7, 8]]),
    ],
)
def test_format_overrides_extension(tmp_path, name, fmt, content, expected):
    table = read_table(write_bytes(tmp_path / name, content), format=fmt)
    np.testing.assert_array_equal(table.values, expected)


def test_format_npy_overrides_extension(tmp_path):
    path = tmp_path / "array.bin"
    with open(path, "wb") as handle:
        np.save(handle, np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(read_table(path, format="npy").values, [[1.0, 2.0]])


def test_unknown_format_name_is_refused(tmp_path):
    path = write_bytes(tmp_path / "a.csv", b"1,2\n")
    with pytest.raises(DataError, match=r"xlsx.*csv, tsv, npy, parquet"):
        read_table(path, format="xlsx")


# ----------------------------------------------------------------------------- columns


@pytest.fixture
def abc_csv(tmp_path):
    return write_bytes(tmp_path / "abc.csv", b"a,b,c\n1,2,3\n4,5,6\n")


def test_columns_select_by_name_in_the_given_order(abc_csv):
    table = read_table(abc_csv, columns=["c", "a"])
    assert table.columns == ["c", "a"]
    np.testing.assert_array_equal(table.values, [[3, 1], [6, 4]])


def test_columns_as_comma_string(abc_csv):
    table = read_table(abc_csv, columns="b,c")
    assert table.columns == ["b", "c"]
    np.testing.assert_array_equal(table.values, [[2, 3], [5, 6]])


def test_unknown_column_lists_available(abc_csv):
    with pytest.raises(DataError) as info:
        read_table(abc_csv, columns=["a", "zz"])
    message = told(info, abc_csv)
    assert "'zz'" in message
    assert "a, b, c" in message


def test_select_columns_on_table():
    table = Table(np.array([[1.0, 2.0, 3.0]]), ["a", "b", "c"], True, "t.csv")
    kept = select_columns(table, ["b"])
    assert kept.columns == ["b"]
    np.testing.assert_array_equal(kept.values, [[2.0]])
    assert select_columns(table, None) is table
    with pytest.raises(DataError, match=r"t\.csv.*'q'"):
        select_columns(table, ["q"])


@pytest.mark.parametrize("spec", ["a,,b", "a,a", ["a", ""]])
def test_malformed_columns_spec(abc_csv, spec):
    with pytest.raises(DataError, match=r"^columns '"):
        read_table(abc_csv, columns=spec)


def test_non_numeric_columns_named_with_suggestion(tmp_path):
    path = write_bytes(tmp_path / "mixed.csv", b"a,name,b,city\n1,x,2,Oslo\n3,y,4,Rome\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    message = told(info, path)
    assert "'name'" in message and "'city'" in message
    assert "columns='a,b'" in message  # (--columns a,b at the command line)


def test_non_numeric_column_left_out_by_columns_is_fine(tmp_path):
    path = write_bytes(tmp_path / "mixed.csv", b"a,name,b\n1,x,2\n3,y,4\n")
    table = read_table(path, columns=["b", "a"])
    np.testing.assert_array_equal(table.values, [[2, 1], [4, 3]])


# ----------------------------------------------------------------------------- missing values


@pytest.mark.parametrize(
    ("content", "column", "rows", "n_bad"),
    [
        (b"a,b\n1,2\n3,\n5,6\n7,\n", "b", "row 2, 4", 2),  # empty cells
        (b"a,b\n1,2\n3,4\nnan,6\n", "a", "row 3", 1),  # NaN text
        (b"a,b\n1,inf\n3,4\n5,-inf\n", "b", "row 1, 3", 2),  # infinities
        (b"a,b\n\n1,2\n\n3,NaN\n", "b", "row 2", 1),  # blank lines are not rows
        (b"a,b\n1,2\n1e400,3\n", "a", "row 2", 1),  # overflows to inf
        (b"a,b\n1,NA\n3,4\n5,null\n", "b", "row 1, 3", 2),  # spelled-out missing values
        (b"a,b\n1,2\nN/A,4\n", "a", "row 2", 1),
    ],
)
def test_missing_values_named_with_rows(tmp_path, content, column, rows, n_bad):
    path = write_bytes(tmp_path / "gaps.csv", content)
    with pytest.raises(DataError) as info:
        read_table(path)
    message = told(info, path)
    assert f"'{column}'" in message
    assert rows in message
    assert "pass dropna=True to drop" in message  # (--dropna at the command line)
    assert f"{n_bad} affected rows" in message


def test_many_bad_rows_are_previewed(tmp_path):
    content = b"a\n" + b"".join(b"nan\n" if i % 2 else b"1\n" for i in range(20))
    path = write_bytes(tmp_path / "many.csv", content)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert "row 2, 4, 6, 8, 10 (and 5 more)" in str(info.value)


def test_dropna_drops_and_counts(tmp_path):
    path = write_bytes(tmp_path / "gaps.csv", b"a,b\n1,2\n3,\nnan,6\n7,8\ninf,1\n")
    table = read_table(path, dropna=True)
    np.testing.assert_array_equal(table.values, [[1, 2], [7, 8]])
    assert table.dropped_rows == 3
    assert table.columns == ["a", "b"]


def test_dropna_only_looks_at_selected_columns(tmp_path):
    path = write_bytes(tmp_path / "gaps.csv", b"a,b\n1,\n3,4\n")
    table = read_table(path, columns=["a"], dropna=True)
    np.testing.assert_array_equal(table.values, [[1], [3]])
    assert table.dropped_rows == 0


def test_dropna_with_every_row_bad(tmp_path):
    path = write_bytes(tmp_path / "allbad.csv", b"a,b\n1,\n,4\n")
    with pytest.raises(DataError, match=r"allbad\.csv.*every row"):
        read_table(path, dropna=True)


def test_require_finite_on_table():
    table = Table(np.array([[1.0, np.nan], [2.0, 3.0], [np.inf, 1.0]]), ["p", "q"], True, "s.csv")
    with pytest.raises(DataError) as info:
        require_finite(table)
    message = str(info.value)
    # the first bad row in the file (row 1, column q), not the first bad column
    assert "s.csv" in message and "'q'" in message and "row 1 " in message
    assert "2 affected rows" in message
    kept = require_finite(table, dropna=True)
    np.testing.assert_array_equal(kept.values, [[2.0, 3.0]])
    assert kept.dropped_rows == 2
    finite = Table(np.array([[1.0]]), ["p"], True, "s.csv")
    assert require_finite(finite) is finite


def test_require_finite_custom_hint():
    table = Table(np.array([[np.nan]]), ["p"], True, "s.csv")
    with pytest.raises(DataError) as info:
        require_finite(table, hint="")
    assert "--dropna" not in str(info.value)


# ----------------------------------------------------------------------------- as_table


def test_as_table_from_array():
    table = as_table(np.array([[1, 2], [3, 4]], dtype=np.int16))
    assert table.columns == ["x0", "x1"]
    assert table.named is False
    assert table.values.dtype == np.float64
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4]])
    one = as_table(np.array([1.5, 2.5]))
    assert one.values.shape == (2, 1)


def test_as_table_from_dataframe():
    frame = pd.DataFrame({"a": [0.1, 0.2], "flag": [True, False], "n": [3, 4]})
    table = as_table(frame)
    assert table.columns == ["a", "flag", "n"]
    assert table.named is True
    np.testing.assert_array_equal(table.values, [[0.1, 1, 3], [0.2, 0, 4]])
    picked = as_table(frame, columns=["n", "a"])
    np.testing.assert_array_equal(picked.values, [[3, 0.1], [4, 0.2]])


def test_as_table_dataframe_non_numeric_and_missing():
    frame = pd.DataFrame({"a": [1.0, np.nan], "s": ["x", "y"]})
    with pytest.raises(DataError, match=r"'s'.*with columns a$"):
        as_table(frame)
    with pytest.raises(DataError) as info:
        as_table(frame, columns=["a"])
    assert "'a'" in str(info.value) and "row 2" in str(info.value)


def test_as_table_from_path(abc_csv):
    table = as_table(str(abc_csv), columns=["b"])
    np.testing.assert_array_equal(table.values, [[2], [5]])


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((2, 2, 2)), "(2, 2, 2)"),
        (np.array([["a", "b"]]), "<U1"),
        (np.array([[1.0, np.inf]]), "'x1'"),
    ],
)
def test_as_table_refuses(array, fragment):
    with pytest.raises(DataError) as info:
        as_table(array, source="mine")
    assert "mine" in str(info.value)
    assert fragment in str(info.value)


# ----------------------------------------------------------------------------- bad inputs


def _npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


BAD_INPUTS = [
    # (file name, content or None for missing, kwargs, fragments the message must hold)
    ("missing.csv", None, {}, ["no such file"]),
    ("empty.csv", b"", {}, ["empty"]),
    ("blank.csv", b"\n \n\r\n", {}, ["empty"]),
    ("header.csv", b"a,b,c\n", {}, ["no data rows"]),
    ("ragged.csv", b"a,b\n1,2\n3,4\n5,6,7\n8,9\n", {}, ["line 4", "3 fields"]),
    ("ragged_blank.csv", b"a,b\n1,2\n\n3\n", {}, ["line 4", "1 fields"]),
    ("ragged_crlf.csv", b"1,2,3\r\n4,5\r\n", {}, ["line 2"]),
    ("latin1.csv", "größe,b\n1,2\n".encode("latin-1"), {}, ["UTF-8"]),
    ("late.csv", b"a,b\n1,2\n3,\xff\xfe\n", {}, ["UTF-8"]),
    ("cube.npy", _npy_bytes(np.zeros((2, 3, 4))), {}, ["3-D", "(2, 3, 4)"]),
    ("strings.npy", _npy_bytes(np.array([["a", "b"], ["c", "d"]])), {}, ["<U1"]),
    ("record.npy", _npy_bytes(np.zeros(3, dtype=[("a", "f8"), ("b", "i4")])), {}, ["structured"]),
    ("text.npy", b"1,2\n3,4\n", {}, ["NPY"]),
    ("csv_as_npy.csv", b"a,b\n1,2\n", {"format": "npy"}, ["NPY", "or format"]),
    ("npy_as_csv.csv", _npy_bytes(np.ones((2, 2))), {}, ["NPY", "format='npy'"]),
    ("csv_as.parquet", b"a,b\n1,2\n", {}, ["Parquet"]),
    ("broken.parquet", b"PAR1" + b"\x00garbage" * 10, {}, ["Parquet"]),
    ("data.xlsx", b"a,b\n1,2\n", {}, [".xlsx", "format='csv'|'tsv'"]),
    ("noext", b"a,b\n1,2\n", {}, ["format='csv'|'tsv'"]),
]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "fragments"),
    BAD_INPUTS,
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_a_data_error_naming_the_file(tmp_path, name, content, kwargs, fragments):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_table(path, **kwargs)
    message = told(info, path)
    for fragment in fragments:
        assert fragment in message


def test_folder_is_a_data_error(tmp_path):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(DataError) as info:
        read_table(folder)
    assert "is a folder" in told(info, folder)


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_folder_or_missing_file_without_extension(tmp_path, kind):
    path = tmp_path / "measurements"
    if kind == "folder":
        path.mkdir()
    with pytest.raises(DataError) as info:
        read_table(path)
    assert ("is a folder" if kind == "folder" else "no such file") in told(info, path)


def test_binary_junk_is_a_data_error(tmp_path):
    rng = np.random.default_rng(7)
    junk = bytes(rng.integers(0, 256, 4000, dtype=np.uint8)) + b"\x00\x00"
    path = write_bytes(tmp_path / "junk.csv", junk)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert "binary" in told(info, path)


def test_object_npy_is_a_data_error(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert "object" in told(info, path).lower()


def test_object_npy_says_what_to_do(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="save a numeric array"):
        read_table(path)


def test_object_npy_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(DataError):
        read_table(path)
    assert not marker.exists()
    # The file really would run code if unpickled: the test would notice a leak.
    np.load(path, allow_pickle=True)
    assert marker.exists()


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", ["csv", "tsv", "npy", "parquet"])
def test_write_table_round_trip_is_exact(tmp_path, ext):
    path = tmp_path / f"out.{ext}"
    names = ["alpha", "beta", "gamma", "delta"]
    write_table(EXACT, names, path)
    table = read_table(path)
    assert same_bits(table.values, EXACT)
    if ext == "npy":
        assert table.columns == ["x0", "x1", "x2", "x3"]
        assert table.named is False
    else:
        assert table.columns == names
        assert table.named is True


def test_write_table_files_read_by_other_tools(tmp_path):
    """The written files are ordinary CSV / TSV / NPY / Parquet for pandas and numpy."""
    names = ["a", "b", "c", "d"]
    write_table(EXACT, names, tmp_path / "o.csv")
    write_table(EXACT, names, tmp_path / "o.tsv")
    write_table(EXACT, names, tmp_path / "o.npy")
    write_table(EXACT, names, tmp_path / "o.parquet")
    csv_frame = pd.read_csv(tmp_path / "o.csv")
    tsv_frame = pd.read_csv(tmp_path / "o.tsv", sep="\t")
    for frame in (csv_frame, tsv_frame, pd.read_parquet(tmp_path / "o.parquet")):
        assert list(frame.columns) == names
        assert same_bits(frame.to_numpy(), EXACT)
    assert same_bits(np.load(tmp_path / "o.npy"), EXACT)


def test_write_table_1d_is_one_column(tmp_path):
    write_table(np.array([0.5, 1.5]), ["v"], tmp_path / "v.csv")
    assert (tmp_path / "v.csv").read_text() == "v\n0.5\n1.5\n"


def test_write_table_names_needing_quotes(tmp_path):
    names = ["a,b", 'say "hi"', "é"]
    write_table(np.array([[1.5, 2.5, 3.5]]), names, tmp_path / "q.csv")
    table = read_table(tmp_path / "q.csv")
    assert table.columns == names
    np.testing.assert_array_equal(table.values, [[1.5, 2.5, 3.5]])


def test_write_table_numeric_names_round_trip(tmp_path):
    values = np.array([[1.5, 2.5], [3.5, 4.5]])
    write_table(values, ["0", "1"], tmp_path / "n.csv")
    table = read_table(tmp_path / "n.csv")
    assert table.n_rows == 2
    np.testing.assert_array_equal(table.values, values)


def test_write_table_format_overrides_extension(tmp_path):
    write_table(EXACT, list("abcd"), tmp_path / "out.bin", format="npy")
    assert same_bits(np.load(tmp_path / "out.bin"), EXACT)


def test_write_table_unknown_extension_is_output_error(tmp_path):
    with pytest.raises(OutputError, match=r"out\.xyz.*pass format='csv'"):
        write_table(EXACT, list("abcd"), tmp_path / "out.xyz")
    assert list(tmp_path.iterdir()) == []


def test_write_table_missing_folder_is_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_table(EXACT, list("abcd"), tmp_path / "nope" / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_write_table_to_stdout_stream(tmp_path):
    stream = io.BytesIO()
    write_table(np.array([[0.1, -2.5e17], [1 / 3, 1e-300]]), ["a", "b"], "-", stdout=stream)
    assert stream.getvalue() == b"a,b\n0.1,-2.5e+17\n0.3333333333333333,1e-300\n"
    assert list(tmp_path.iterdir()) == []
    assert not os.path.exists("-")


def _failing_writer(writer, *_):
    writer._handle.write(b"a,b\n1.0,2.0\n")  # half a file...
    writer._handle.flush()
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch, existing):
    target = tmp_path / "out.csv"
    if existing:
        target.write_bytes(b"old,content\n1,2\n")
    monkeypatch.setattr(TableWriter, "write", _failing_writer)
    with pytest.raises(OutputError) as info:
        write_table(EXACT, list("abcd"), target)
    assert "No space left on device" in told(info, target)
    if existing:
        assert target.read_bytes() == b"old,content\n1,2\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.npy"
    target.write_bytes(b"old")

    def interrupted(writer, *_):
        writer._handle.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(TableWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_table(EXACT, list("abcd"), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]


def test_errors_are_gencli_errors():
    assert issubclass(DataError, GencliError)
    assert issubclass(OutputError, GencliError)


# ----------------------------------------------------------------------------- property

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(
    max_examples=50,
    derandomize=True,  # CI must be repeatable; hostile-input tests explore more
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    values=hnp.arrays(
        dtype=np.float64,
        shape=st.tuples(st.integers(1, 20), st.integers(1, 5)),
        elements=finite_floats,
    )
)
def test_csv_round_trip_property(tmp_path_factory, values):
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "round.csv"
    names = [f"c{j}" for j in range(values.shape[1])]
    write_table(values, names, path)
    table = read_table(path)
    assert table.columns == names
    # Exactly the same numbers. The sign of a zero may not survive: arrow writes -0.0 as
    # "-0", which reads back as 0 when the whole column looks like integers.
    assert np.array_equal(table.values, values)
    nonzero = values != 0
    assert same_bits(table.values[nonzero], values[nonzero])


# ----------------------------------------------------------------------------- cells named


def test_a_long_or_odd_value_is_shown_shortened_and_escaped(tmp_path):
    long_value = "y" * 200
    path = write_bytes(tmp_path / "v.csv", f'a,b\n1,2\n3,"{long_value}\n\x1b]0;x"\n'.encode())
    with pytest.raises(DataError) as info:
        read_table(path)
    message = told(info, path)
    assert "column 'b' has a value that is not a number at row 2" in message
    assert "'" + "y" * 39 + "…'" in message
    assert "\x1b" not in message and "\n" not in message


def test_non_numeric_hint_can_be_replaced(tmp_path):
    path = write_bytes(tmp_path / "m.csv", b"a,b\n1,x\n")
    with pytest.raises(DataError, match=r"'x'; fix it, or remove that column from the file$"):
        read_table(path, non_numeric_hint="remove that column from the file")


def test_several_text_columns_name_the_first_cell_and_the_others(tmp_path):
    table = pa.table({"a": [1.0, 2.0], "s": [None, "q"], "t": ["r", "s"], "d": [3, 4]})
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(DataError) as info:
        read_table(tmp_path / "p.parquet")
    assert told(info, tmp_path / "p.parquet") == (
        "<path>: column 's' has a value that is not a number at row 2 (data rows, counting "
        "from 1): 'q' (so do column 't'); fix it, or leave those columns out with columns='a,d'"
    )
    picked = read_table(tmp_path / "p.parquet", columns="d,a")
    np.testing.assert_array_equal(picked.values, [[3, 1], [4, 2]])


def test_dataframe_text_column_names_its_first_value():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "s": [None, "u", "v"]})
    with pytest.raises(DataError, match=r"column 's' has a value that is not a number at row 2"):
        as_table(frame)


def test_npy_text_names_its_first_value(tmp_path):
    np.save(tmp_path / "t.npy", np.array([["a\x1b", "b"], ["c", "d"]]))
    with pytest.raises(DataError) as info:
        read_table(tmp_path / "t.npy")
    assert "holds text of type <U2, not numbers: its first value is 'a\\x1b'" in str(info.value)


def test_npy_in_fortran_order_reads_by_rows(tmp_path):
    array = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.save(tmp_path / "f.npy", array)
    assert same_bits(read_table(tmp_path / "f.npy").values, array)


def test_stdin_redirected_from_a_file_reads_it(tmp_path):
    path = write_bytes(tmp_path / "r.csv", b"a,b\n1.5,2\n3,4e2\n")
    with open(path, "rb") as stdin:
        table = read_table("-", stdin=stdin)
    np.testing.assert_array_equal(table.values, [[1.5, 2.0], [3.0, 400.0]])
