"""Whether a CSV's first row is a header: decided one way for fit and score, said when guessed.

The rules (gencli/io/csvhead.py): a first row with a field that is not a number is a header; a
first row of numbers is data without a word when it looks like the rows under it, column by
column; otherwise gencli guesses and says what it guessed and which flag reads it the other
way. ``header=True/False`` is obeyed silently. Files and expected readings are written here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gencli.errors import DataError
from gencli.io.data import Table, read_table
from gencli.io.streams import finite_chunks, stream_table
from gencli.jobs import evaluate_file, fit_file, score_file

ROUTES = ["read-file", "read-stdin", "stream-file", "stream-stdin"]


def read(payload: bytes, route: str, folder: Path, suffix: str = ".csv", **kwargs) -> Table:
    """Read through read_table (fit, evaluate) or stream_table (score), file or stdin."""
    path = folder / f"data{suffix}"
    path.write_bytes(payload)
    source = str(path) if route.endswith("file") else "-"
    fmt = "tsv" if suffix == ".tsv" else None
    stdin = io.BytesIO(payload)
    if route.startswith("read"):
        return read_table(source, format=fmt, stdin=stdin, **kwargs)
    stream = stream_table(source, format=fmt, stdin=stdin, chunk_rows=3, **kwargs)
    values = np.vstack(list(finite_chunks(stream)))
    return Table(values, stream.columns, stream.named, stream.source, notes=stream.notes)


# (content, first row is a header?, fragments of the note, or None for no note)
CASES = {
    "text-names": (b"height,weight\n1.5,60\n1.75,72.5\n", True, None),
    "decimals-over-decimals": (b"1.5,2.5\n3.5,4.5\n0.5,1.25\n", False, None),
    "ints-within-their-range": (b"3,40\n1,20\n5,60\n", False, None),
    "booleans-over-booleans": (b"true,false\nfalse,true\n", False, None),
    "one-row": (b"7,8\n", False, None),
    "quoted-number-names": (b'"0","1"\n0.5,1.5\n2.5,3.5\n', True, None),
    "years-over-decimals": (
        b"2019,2020\n1.5,2.5\n3.5,4.5\n",
        True,
        ["first row (2019, 2020)", "as column names", "whole numbers above decimals"],
    ),
    "1,2,3-over-decimals": (
        b"1,2,3\n0.5,0.25,0.125\n1.5,2.25,0.75\n",
        True,
        ["(1, 2, 3)", "as column names", "--no-header"],
    ),
    "years-over-small-ints": (
        b"2019,2020\n1,5\n3,7\n2,6\n",
        True,
        ["as column names", "far outside the range"],
    ),
    "sorted-ints": (b"1,10\n2,20\n3,30\n", False, ["as data", "just outside", "--header"]),
    "ints-over-one-row": (b"1,2,3\n4,5,6\n", False, ["as data", "--header"]),
    "single-column": (b"5\n3\n4\n6\n", False, ["as data", "single column", "--header"]),
    "single-year-over-decimals": (b"2019\n0.5\n1.5\n", True, ["as column names"]),
    "decimal-over-ints": (b"1.5,2.5\n1,2\n3,4\n", False, ["as data", "different kind"]),
    "mixed-columns": (b"2019,2.5\n1.5,2.5\n3.5,0.5\n", False, ["as data", "some columns"]),
    "number-over-booleans": (
        b"1,2\ntrue,0.5\nfalse,1.5\n",
        True,
        ["as column names", "true/false"],
    ),
    "semicolons": (b"2019;2020\n1.5;2.5\n3.5;4.5\n", True, ["as column names"]),
    "bom": (b"\xef\xbb\xbf2019,2020\n1.5,2.5\n3.5,4.5\n", True, ["(2019, 2020)"]),
    "quoted-fields": (b'2019,"2020"\n"1.5",2.5\n3.5,4.5\n', True, ["(2019, 2020)"]),
    "crlf": (b"2019,2020\r\n1.5,2.5\r\n3.5,4.5\r\n", True, ["as column names"]),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_header_rules(tmp_path, case, route):
    payload, header, fragments = CASES[case]
    table = read(payload, route, tmp_path)
    assert table.named is header
    if fragments is None:
        assert table.notes == ()
    else:
        (note,) = table.notes
        for fragment in fragments:
            assert fragment in note, note
        name = "<stdin>" if route.endswith("stdin") else str(tmp_path / "data.csv")
        assert f"of {name} as" in note
    if fragments is None:
        return
    # Told, it obeys and says nothing; the two readings differ by exactly the first row.
    as_names = read(payload, route, tmp_path, header=True)
    if case == "number-over-booleans":  # as data, a column mixes numbers and true/false
        with pytest.raises(DataError, match=r"not true or false at row 1 .*: '1'"):
            read(payload, route, tmp_path, header=False)
        return
    as_data = read(payload, route, tmp_path, header=False)
    assert as_names.notes == as_data.notes == ()
    assert as_names.named and not as_data.named
    np.testing.assert_array_equal(as_data.values[1:], as_names.values)


def test_missing_values_in_the_first_row_are_data(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_bytes(b"NA,1.5\n2.5,3.5\n4.5,0.5\n")
    table = read_table(path, dropna=True)
    assert (table.named, table.notes, table.dropped_rows) == (False, (), 1)
    np.testing.assert_array_equal(table.values, [[2.5, 3.5], [4.5, 0.5]])


def test_tsv_reads_like_csv(tmp_path):
    table = read(b"2019\t2020\n1.5\t2.5\n3.5\t4.5\n", "read-file", tmp_path, suffix=".tsv")
    assert table.columns == ["2019", "2020"] and "as column names" in table.notes[0]


def test_a_numeric_header_is_not_silently_a_row(tmp_path):
    """The issue's case: 2019,2020 above decimals, read by fit and by score."""
    path = tmp_path / "y.csv"
    rows = np.random.default_rng(0).normal(size=(40, 2))
    path.write_text("2019,2020\n" + "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in rows) + "\n")
    fitted = read_table(path)
    np.testing.assert_array_equal(fitted.values, rows)
    assert fitted.columns == ["2019", "2020"]
    assert fitted.notes == (
        f"read the first row (2019, 2020) of {path} as column names: whole numbers above "
        "decimals; pass --no-header if it is data",
    )
    streamed = stream_table(path)
    assert (streamed.columns, streamed.notes) == (fitted.columns, fitted.notes)


@pytest.mark.parametrize("job", ["score", "evaluate"])
def test_score_and_evaluate_check_the_data_path_first(tmp_path, job):
    """Named for what it is, before the model or output is looked at (the path checks of
    every kind are run through a real process in test_data_input.py)."""
    (tmp_path / "loop1.csv").symlink_to("loop2.csv")
    (tmp_path / "loop2.csv").symlink_to("loop1.csv")
    run = score_file if job == "score" else evaluate_file
    with pytest.raises(DataError, match=r"loop1.csv: the symbolic links in this path loop"):
        run(tmp_path / "no-model.pkl", tmp_path / "loop1.csv")


def test_score_refuses_a_device_and_a_named_pipe_at_once(tmp_path):
    import os
    import stat

    os.mknod(tmp_path / "zero.csv", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(DataError, match=r"zero.csv: is a character device, not a data file"):
        stream_table(tmp_path / "zero.csv")
    with pytest.raises(DataError, match=r"fifo.csv: is a named pipe with nothing writing"):
        stream_table(tmp_path / "fifo.csv")


def test_jobs_pass_notes_and_header_through(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(60, 2))
    body = "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in rows) + "\n"
    (tmp_path / "y.csv").write_text("2019,2020\n" + body)
    record = fit_file(tmp_path / "y.csv", tmp_path / "m.pkl", model="gmm", components=1)
    assert record["columns"] == ["2019", "2020"] and record["rows"] == 60
    assert len(record["notes"]) == 1 and "as column names" in record["notes"][0]
    scored = score_file(tmp_path / "m.pkl", tmp_path / "y.csv")
    assert scored["rows"] == 60 and scored["notes"] == record["notes"]
    evaluated = evaluate_file(tmp_path / "m.pkl", tmp_path / "y.csv", n_permutations=10)
    assert evaluated["data_notes"] == record["notes"]
    (tmp_path / "plain.csv").write_text(body)
    told = fit_file(tmp_path / "plain.csv", tmp_path / "m2.pkl", header=True, components=1)
    assert told["rows"] == 59 and told["notes"] == []
    scored = score_file(tmp_path / "m2.pkl", tmp_path / "plain.csv", header=False)
    assert scored["rows"] == 60 and scored["notes"] == []


# ----------------------------------------------------------------------------- the contract

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

integer_text = st.integers(-3000, 3000).map(str)
decimal_text = st.floats(-1e6, 1e6, allow_nan=False).map(repr)
boolean_text = st.sampled_from(["true", "false", "True", "FALSE"])


def cell_value(text: str) -> float:
    booleans = {"true": 1.0, "false": 0.0}
    return booleans[text.lower()] if text.lower() in booleans else float(text)


@st.composite
def numeric_tables(draw) -> tuple[bytes, bool, np.ndarray]:
    """A table of numbers whose first row may be a header of numbers (years, 1,2,3...)."""
    n_cols = draw(st.integers(1, 4))
    n_rows = draw(st.integers(1, 8))
    kinds = draw(
        st.lists(st.sampled_from(["int", "decimal", "bool"]), min_size=n_cols, max_size=n_cols)
    )
    strategy = {"int": integer_text, "decimal": decimal_text, "bool": boolean_text}
    cells = [[draw(strategy[k]) for k in kinds] for _ in range(n_rows)]
    header = draw(st.booleans())
    lines = [",".join(row) for row in cells]
    if header:
        names = draw(
            st.one_of(
                st.just([str(2000 + j) for j in range(n_cols)]),
                st.just([str(j + 1) for j in range(n_cols)]),
                st.lists(integer_text, min_size=n_cols, max_size=n_cols),
            )
        )
        lines.insert(0, ",".join(names))
    values = np.array([[cell_value(c) for c in row] for row in cells])
    return ("\n".join(lines) + "\n").encode(), header, values


@PROPERTY
@given(case=numeric_tables(), route=st.sampled_from(ROUTES))
def test_any_guess_is_right_or_said(tmp_path, case, route):
    """Without a note the reading is right; a note says the reading and the flag that
    reverses it; the flag reads it right; fit and score decide alike."""
    payload, header, values = case
    table = read(payload, route, tmp_path)
    other = read(payload, "stream-file" if route.startswith("read") else "read-file", tmp_path)
    assert (other.named, other.columns) == (table.named, table.columns)
    if table.named is not header:
        (note,) = table.notes
        flag = "--no-header" if table.named else "--header"
        assert flag in note and ("as column names" if table.named else "as data") in note
    else:
        np.testing.assert_array_equal(table.values, values)
    told = read(payload, route, tmp_path, header=header)
    assert told.notes == () and told.named is header
    np.testing.assert_array_equal(told.values, values)
