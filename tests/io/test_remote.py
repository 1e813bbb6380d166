"""Data at a URL, read through fsspec: file://, memory:// and http:// from a real local web
server, as one file, a folder or a glob, for fit and score; every failure one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli
from gencli.density.modelfile import load
from gencli.io.parts import read_parts


def _cli(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _data(folder: Path) -> np.ndarray:
    """Three CSV parts and one Parquet file of 4 row groups, of the same 600 rows."""
    folder.mkdir(parents=True, exist_ok=True)
    X = np.random.default_rng(0).normal(size=(600, 3)) * [1.0, 5.0, 0.5] + [0.0, 10.0, -2.0]
    (folder / "parts").mkdir()
    for i, rows in enumerate(np.array_split(X, 3)):
        np.savetxt(folder / "parts" / f"p{i}.csv", rows, delimiter=",", header="a,b,c",
                   comments="", fmt="%.17g")  # fmt: skip
    (folder / "parts" / "_SUCCESS").write_text("")  # marker files are not data
    table = pa.table({name: X[:, j] for j, name in enumerate("abc")})
    pq.write_table(table, folder / "all.parquet", row_group_size=150)
    return X


def test_file_urls_read_the_same_rows_as_paths(tmp_path: Path) -> None:
    X = _data(tmp_path)
    url = f"file://{tmp_path}"
    for data in (f"{url}/parts", f"{url}/parts/p*.csv", f"{url}/all.parquet"):
        table = read_parts(data)
        np.testing.assert_array_equal(table.values, X)
        assert table.columns == ["a", "b", "c"]


def test_fit_and_score_from_a_url_equal_the_local_run(tmp_path: Path) -> None:
    X = _data(tmp_path)
    assert _cli("fit", tmp_path / "parts", "-k", "2", "-o", "local.pkl").exit_code == 0
    fitted = _cli("fit", f"file://{tmp_path}/parts", "-k", "2", "-o", "url.pkl")
    assert fitted.exit_code == 0, fitted.output
    local, remote = load("local.pkl"), load("url.pkl")
    np.testing.assert_array_equal(remote.score_samples(X), local.score_samples(X))
    parquet = _cli("fit", f"file://{tmp_path}/all.parquet", "-k", "2", "-o", "pq.pkl")
    assert parquet.exit_code == 0, parquet.output
    np.testing.assert_allclose(load("pq.pkl").score_samples(X), local.score_samples(X), rtol=1e-12)
    assert remote.metadata["source"].startswith(f"file://{tmp_path}/parts/p0.csv")
    assert _cli("score", "url.pkl", f"file://{tmp_path}/all.parquet", "-o", "u.csv").exit_code == 0
    assert _cli("score", "url.pkl", tmp_path / "all.parquet", "-o", "p.csv").exit_code == 0
    assert Path("u.csv").read_bytes() == Path("p.csv").read_bytes()


def test_memory_urls_work_in_the_python_api() -> None:
    X = np.random.default_rng(1).normal(size=(300, 2))
    with fsspec.open("memory://gencli-test/data.csv", "w") as handle:
        np.savetxt(handle, X, delimiter=",", header="u,v", comments="", fmt="%.17g")
    try:
        model = gencli.fit("memory://gencli-test/data.csv", model="gmm", components=1, seed=0)
    finally:
        fsspec.filesystem("memory").rm("/gencli-test", recursive=True)
    # One full Gaussian: the sample mean and (ddof 0) covariance, with sklearn's reg_covar.
    np.testing.assert_allclose(
        model.sample(200_000, seed=0).mean(axis=0), X.mean(axis=0), atol=0.02
    )
    assert model.columns == ["u", "v"]


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``python -m http.server`` on 127.0.0.1 serving the data, ended by its handle."""
    pytest.importorskip("aiohttp")
    X = _data(tmp_path / "site")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path / "site",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the test web server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", X
    finally:
        server.terminate()
        server.wait(10)


def test_fit_and_score_over_http(web_server: tuple[str, np.ndarray]) -> None:
    base, X = web_server
    fitted = _cli("fit", f"{base}/all.parquet", "-k", "2", "-o", "web.pkl")
    assert fitted.exit_code == 0, fitted.output
    assert _cli("fit", Path.cwd() / "missing.csv", "-o", "x.pkl").exit_code == 1
    scored = _cli("score", "web.pkl", f"{base}/parts/p1.csv", "-o", "s.csv")
    assert scored.exit_code == 0, scored.output
    expected = load("web.pkl").score_samples(np.array_split(X, 3)[1])
    np.testing.assert_allclose(np.loadtxt("s.csv", skiprows=1), expected, rtol=1e-12)
    missing = _cli("fit", f"{base}/nothing.csv", "-o", "n.pkl")
    assert missing.exit_code == 1
    assert missing.output.strip() == f"Error: {base}/nothing.csv: no such file; check the URL"
    assert not Path("n.pkl").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///no/such/file.csv", "file:///no/such/file.csv: no such file; check the URL"),
        ("nosuchscheme://bucket/x.csv", "nosuchscheme://bucket/x.csv: cannot read nosuchscheme://"),
        ("file:///no/such/*.csv", "file:///no/such/*.csv: no data file matches this pattern"),
    ],
)
def test_a_bad_url_is_one_line_and_no_file(url: str, message: str) -> None:
    for command in (["fit", url, "-o", "m.pkl"], ["score", "m.pkl", url, "-o", "s.csv"]):
        if command[0] == "score":
            Path("m.pkl").unlink(missing_ok=True)
            gencli.fit(np.random.default_rng(0).normal(size=(50, 1)), model="gmm").save("m.pkl")
        result = _cli(*command)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.output
        assert not Path(command[-1]).exists()


def test_a_file_url_that_is_the_output_is_refused(tmp_path: Path) -> None:
    _data(tmp_path)
    gencli.fit(np.random.default_rng(0).normal(size=(50, 3)), model="gmm").save("m.pkl")
    target = tmp_path / "parts" / "p0.csv"
    before = target.read_bytes()
    result = _cli("score", "m.pkl", f"file://{target}", "-o", target)
    assert result.exit_code == 1 and "input" in result.output, result.output
    assert target.read_bytes() == before


def test_an_output_url_is_one_line(tmp_path: Path) -> None:
    gencli.fit(np.random.default_rng(0).normal(size=(50, 1)), model="gmm").save("m.pkl")
    result = _cli("sample", "m.pkl", "-n", "3", "-o", f"file://{tmp_path}/s.csv")
    assert result.exit_code == 1
    assert "outputs are local files" in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()
