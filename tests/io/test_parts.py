"""Data in many files, read by the local engine: a folder, a glob or a list of files is one
table in name order, with the same checks as one file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from gencli.cli.main import cli
from gencli.density.modelfile import load
from gencli.io.parts import plan_parts, read_parts


def _csvs(folder: Path, header: bool) -> np.ndarray:
    folder.mkdir()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3)) * [1.0, 10.0, 100.0]
    for i, rows in enumerate(np.array_split(X, 3)):
        np.savetxt(
            folder / f"p{i}.csv", rows, delimiter=",", header="a,b,c" if header else "",
            comments="",
        )  # fmt: skip
    return X


def test_a_folder_a_glob_and_a_list_read_the_same_rows(tmp_path: Path) -> None:
    X = _csvs(tmp_path / "d", header=True)
    for data in (tmp_path / "d", str(tmp_path / "d" / "*.csv"), sorted((tmp_path / "d").iterdir())):
        table = read_parts(data)
        np.testing.assert_allclose(table.values, X, rtol=1e-15)
        assert table.columns == ["a", "b", "c"]


def test_headerless_files_pick_columns_by_position(tmp_path: Path) -> None:
    X = _csvs(tmp_path / "d", header=False)
    table = read_parts(tmp_path / "d", columns=["x2", "x0"])
    np.testing.assert_allclose(table.values, X[:, [2, 0]], rtol=1e-15)
    assert table.columns == ["x2", "x0"] and not table.named


def test_parquet_row_groups_are_parts_and_rows_keep_their_file_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 2))
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"u": X[:, 0], "v": X[:, 1]}), tmp_path / "d" / "x.parquet",
                   row_group_size=100)  # fmt: skip
    plan = plan_parts(tmp_path / "d", part_rows=250)
    assert len(plan.parts) == 4 and [p.start for p in plan.parts] == [0, 300, 600, 900]
    np.testing.assert_array_equal(read_parts(tmp_path / "d").values, X)


def test_a_fit_of_many_files_refuses_to_write_over_one_of_them(tmp_path: Path) -> None:
    _csvs(tmp_path / "d", header=True)
    target = tmp_path / "d" / "p1.csv"
    before = target.read_bytes()
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "d"), "--model", "gmm", "-k", "1",
                                      "-o", str(target)])  # fmt: skip
    assert result.exit_code == 1
    assert "p1.csv" in result.output and len(result.output.strip().splitlines()) == 1
    assert target.read_bytes() == before


def test_a_fit_of_many_files_counts_the_dropped_rows(tmp_path: Path) -> None:
    X = _csvs(tmp_path / "d", header=True)
    gappy = X[60:].copy()
    gappy[[3, 7], 1] = np.nan
    np.savetxt(tmp_path / "d" / "p2.csv", gappy, delimiter=",", header="a,b,c", comments="")
    result = CliRunner().invoke(
        cli, ["fit", str(tmp_path / "d"), "--dropna", "--model", "gmm", "-k", "1", "-o", "m.pkl"]
    )
    assert result.exit_code == 0, result.output
    assert "dropped 2 rows with missing or infinite values" in result.output
    assert load("m.pkl").metadata["rows"] == 88


def test_a_glob_that_matches_no_data_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "s*"), "-o", "m.pkl"])
    assert result.exit_code == 1
    assert "no data file matches this pattern" in result.output
    assert not Path("m.pkl").exists()
