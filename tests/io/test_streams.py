"""Streaming score and sample: same bytes as the all-at-once path, flat memory, and the
KDE evaluation modes within their stated tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli
from gencli.density.families import kde_exact, kde_grid, kde_scoring
from gencli.density.model import SAMPLE_CHUNK_ROWS


@pytest.fixture()
def gmm_model(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([0, 0], 1, (300, 2)), rng.normal([4, 1], 0.5, (300, 2))])
    pd.DataFrame(X, columns=["a", "b"]).to_csv("train.csv", index=False)
    assert CliRunner().invoke(cli, ["fit", "train.csv", "-k", "2", "-q"]).exit_code == 0
    return gencli.load("model.pkl")


def test_sample_chunks_do_not_change_the_rows(gmm_model) -> None:
    n = 2 * SAMPLE_CHUNK_ROWS + 123
    whole = gmm_model.sample(n, seed=4)
    for chunk_rows in (1000, SAMPLE_CHUNK_ROWS, 3 * SAMPLE_CHUNK_ROWS):
        parts = list(gmm_model.iter_samples(n, seed=4, chunk_rows=chunk_rows))
        assert max(p.shape[0] for p in parts) <= chunk_rows
        np.testing.assert_array_equal(np.vstack(parts), whole)


@pytest.mark.parametrize("extension", ["csv", "npy", "parquet"])
def test_streamed_sample_file_equals_the_in_memory_rows(gmm_model, extension) -> None:
    n = SAMPLE_CHUNK_ROWS + 500
    args = ["sample", "model.pkl", "-n", str(n), "--seed", "9", "-o", f"s.{extension}"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    if extension == "npy":
        got = np.load("s.npy")
    elif extension == "parquet":
        got = pd.read_parquet("s.parquet").to_numpy()
    else:
        got = pd.read_csv("s.csv").to_numpy()
    np.testing.assert_array_equal(got, gmm_model.sample(n, seed=9))


def test_streamed_scores_equal_the_all_at_once_scores(gmm_model) -> None:
    rows = gmm_model.sample(250_000, seed=1)  # several reader blocks
    pd.DataFrame(rows, columns=["a", "b"]).to_csv("big.csv", index=False)
    result = CliRunner().invoke(cli, ["score", "model.pkl", "big.csv", "-o", "s.npy", "--json"])
    assert result.exit_code == 0, result.output
    read_back = pd.read_csv("big.csv").to_numpy()
    expected = gmm_model.score_samples(read_back)
    np.testing.assert_array_equal(np.load("s.npy")[:, 0], expected)
    assert f'"rows": {len(rows)}' in result.stdout


def test_bad_value_in_a_late_chunk_names_its_row(gmm_model, tmp_path) -> None:
    rows = gmm_model.sample(200_000, seed=2)
    frame = pd.DataFrame(rows, columns=["a", "b"])
    frame.loc[180_000, "b"] = np.nan
    frame.to_csv("gap.csv", index=False)
    result = CliRunner().invoke(cli, ["score", "model.pkl", "gap.csv", "-o", "s.csv"])
    assert result.exit_code == 1
    assert "column 'b'" in result.stderr and "row 180001" in result.stderr
    assert not (tmp_path / "s.csv").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def _mixture(n: int, seed: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]])[:, :d]
    return np.vstack([rng.normal(c, 0.7, size=(n // 3, d)) for c in centres])


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("h", [0.05, 0.2])
def test_fast_and_approx_modes_keep_their_tolerances(d: int, h: float) -> None:
    points = _mixture(3000, 0, d)
    queries = np.vstack([_mixture(1500, 1, d), np.full((3, d), 9.0), np.full((2, d), -7.5)])
    exact = kde_scoring.exact_log_density(points, queries, "gaussian", h)
    fast = kde_scoring.fast_log_density(points, queries, "gaussian", h)
    approx = kde_grid.approx_log_density(points, queries, "gaussian", h)
    assert np.max(np.abs(np.expm1(fast - exact))) <= kde_exact.FAST_RTOL
    assert np.max(np.abs(np.expm1(approx - exact))) <= kde_grid.APPROX_RTOL


def test_approx_refuses_what_it_cannot_do() -> None:
    from gencli.errors import DataError

    points = _mixture(300, 0, 2)
    with pytest.raises(DataError, match="mode='approx' works for the gaussian kernel"):
        kde_grid.approx_log_density(points, points, "epanechnikov", 0.3)


def test_score_modes_through_the_cli(tmp_path) -> None:
    X = _mixture(3000, 3, 2)
    pd.DataFrame(X, columns=["x", "y"]).to_csv("t.csv", index=False)
    runner = CliRunner()
    fit = ["fit", "t.csv", "--model", "kde", "--bandwidth", "0.1", "--validation", "0", "-q"]
    assert runner.invoke(cli, fit).exit_code == 0
    outputs = {}
    for flag in ("", "--exact", "--approx"):
        args = ["score", "model.pkl", "t.csv", "-o", f"s{flag}.npy", "-q"] + (
            [flag] if flag else []
        )
        assert runner.invoke(cli, args).exit_code == 0
        outputs[flag] = np.load(f"s{flag}.npy")[:, 0]
    assert np.max(np.abs(np.expm1(outputs[""] - outputs["--exact"]))) <= 1e-6
    assert np.max(np.abs(np.expm1(outputs["--approx"] - outputs["--exact"]))) <= 1e-3
    both = runner.invoke(cli, ["score", "model.pkl", "t.csv", "--exact", "--approx"])
    assert both.exit_code == 2


@pytest.mark.parametrize("extension", ["csv", "tsv", "npy", "parquet"])
def test_sampling_zero_rows_writes_an_empty_table(gmm_model, extension) -> None:
    result = CliRunner().invoke(cli, ["sample", "model.pkl", "-n", "0", "-o", f"z.{extension}"])
    assert result.exit_code == 0, result.output
    if extension == "npy":
        assert np.load("z.npy").shape == (0, 2)
    elif extension == "parquet":
        assert list(pd.read_parquet("z.parquet").columns) == ["a", "b"]
    else:
        expected = "a\tb\n" if extension == "tsv" else "a,b\n"
        assert Path(f"z.{extension}").read_text() == expected


def test_rows_named_in_a_streamed_error_keep_their_spacing(gmm_model, tmp_path) -> None:
    rows = gmm_model.sample(30, seed=3)
    frame = pd.DataFrame(rows, columns=["a", "b"])
    frame.loc[[1, 2], "a"] = np.inf
    frame.to_csv("inf.csv", index=False)
    result = CliRunner().invoke(cli, ["score", "model.pkl", "inf.csv", "-o", "s.csv"])
    assert result.exit_code == 1
    assert "at row 2, 3 (data rows, counting from 1); remove them" in result.stderr
    assert not (tmp_path / "s.csv").exists()


# ----------------------------------------------------------------------------- reading in blocks


def _stream_values(source, **kwargs) -> np.ndarray:
    from gencli.io.streams import finite_chunks, stream_table

    return np.vstack(list(finite_chunks(stream_table(source, **kwargs))))


def test_missing_values_in_a_late_block_are_missing_counted_from_the_start(tmp_path):
    """Every spelling of a missing value, past the first block: missing, not text."""
    from gencli.errors import DataError

    rows = [f"{i}.25,{i}.5" for i in range(300_000)]  # more than one 4 MB block
    for k, spelling in enumerate(["NA", "null", "N/A", "", "nan", "NaN"]):
        rows[290_000 + 2 * k] = f"1.5,{spelling}"
    (tmp_path / "gap.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    found = r"at row 290001, 290003, 290005, 290007, 290009 \(and 1 more\) \(data rows"
    with pytest.raises(DataError, match=r"column 'b' has missing or infinite values " + found):
        _stream_values(tmp_path / "gap.csv")


def test_streamed_booleans_and_integers_read_as_the_whole_file_does(tmp_path) -> None:
    from gencli.io.data import read_table

    lines = ["a,flag,n"] + [f"{i / 4!r},{'true' if i % 3 else 'False'},{i}" for i in range(200_000)]
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    expected = np.array(
        [[i / 4, 1.0 if i % 3 else 0.0, float(i)] for i in range(200_000)], dtype=np.float64
    )
    np.testing.assert_array_equal(_stream_values(tmp_path / "b.csv", chunk_rows=7000), expected)
    np.testing.assert_array_equal(read_table(tmp_path / "b.csv").values, expected)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("route", ["file", "pipe"])
def test_npy_streams_in_blocks_of_rows(tmp_path, order, route) -> None:
    import io

    array = np.asarray(np.arange(3 * 1001, dtype=">i4").reshape(1001, 3) * 7 - 5, order=order)
    np.save(tmp_path / "a.npy", array)
    source = tmp_path / "a.npy" if route == "file" else "-"
    stdin = io.BytesIO((tmp_path / "a.npy").read_bytes())
    from gencli.io.streams import stream_table

    stream = stream_table(source, format="npy", stdin=stdin, chunk_rows=100)
    chunks = list(stream.chunks)
    assert max(len(c) for c in chunks) == 100 and stream.columns == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(np.vstack(chunks), array.astype(np.float64))


def test_parquet_text_column_is_refused_by_score_with_its_row(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gencli.errors import DataError
    from gencli.io.streams import stream_table

    table = pa.table({"a": [1.0, 2.0, 3.0], "label": [None, None, "n\x07"]})
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataError) as info:
        stream_table(tmp_path / "t.parquet")
    assert str(info.value) == (
        f"{tmp_path / 't.parquet'}: column 'label' has a value that is not a number at row 3 "
        "(data rows, counting from 1): 'n\\x07'; fix it, or remove that column"
    )


@pytest.mark.parametrize("ending", ["\r\n", "\r", "\n"])
def test_blocks_are_cut_at_line_ends_of_any_kind(tmp_path, ending) -> None:
    """Every line end style, across block edges, with blank lines and quoted cells."""
    values = np.round(np.random.default_rng(5).normal(size=(200_000, 2)), 6)
    lines = ["a,b"] + [
        f'"{a!r}",{b!r}' + (ending if i % 1000 == 0 else "")
        for i, (a, b) in enumerate(values.tolist())
    ]
    (tmp_path / "e.csv").write_bytes(ending.join(lines).encode() + ending.encode())
    np.testing.assert_array_equal(_stream_values(tmp_path / "e.csv", chunk_rows=4096), values)


@pytest.mark.parametrize("repeated_name", [False, True])
def test_parquet_streams_only_the_columns_and_row_groups_asked_for(
    tmp_path, repeated_name: bool
) -> None:
    """Unused columns are NaN whether or not they are decoded (a repeated name reads all);
    row groups stream in file order, against pyarrow's own read of those groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gencli.io.streams import stream_table

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    names = ["id", "a", "id" if repeated_name else "note", "b"]
    text = pa.array([f"r{i}" for i in range(5000)])
    table = pa.Table.from_arrays([text, pa.array(a), text, pa.array(b)], names=names)
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=1000)
    stream = stream_table(
        tmp_path / "t.parquet",
        chunk_rows=700,
        usecols=lambda columns, named: [1, 3],
        row_groups=[1, 3],
    )
    got = np.vstack(list(stream.chunks))
    groups = pq.ParquetFile(tmp_path / "t.parquet").read_row_groups([1, 3])
    assert got.shape == (2000, 4) and np.isnan(got[:, [0, 2]]).all()
    np.testing.assert_array_equal(got[:, 1], groups.column(1).to_numpy())
    np.testing.assert_array_equal(got[:, 3], groups.column(3).to_numpy())
