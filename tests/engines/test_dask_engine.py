"""The Dask engine on a real LocalCluster (two worker processes): distributed EM against
scikit-learn, independence of partitioning, and fit/score/sample through the command line
with the same numbers as the local engine."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gencli.cli.main import cli
from gencli.density.families import gmm
from gencli.density.modelfile import load
from gencli.engines import dask_tasks
from gencli.engines.dask_em import Candidate, ClusterData, run_em
from gencli.engines.dask_fit import fit_on_cluster
from gencli.fitting import em_stats
from gencli.io.parts import plan_parts
from gencli.io.table import Table

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def _mixture(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.vstack(
        [
            rng.normal(0.0, 1.0, (n // 2, 3)),
            rng.normal(3.0, 0.5, (n - n // 2, 3)) * [1.0, 2.0, 1.0] + [0.0, 1.0, 2.0],
        ]
    )
    return X[rng.permutation(n)]


def _write_parts(folder: Path, X: np.ndarray, files: int, group_rows: int) -> Path:
    folder.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(X, files)):
        table = pa.table({name: rows[:, j] for j, name in enumerate(["a", "b", "c"])})
        pq.write_table(table, folder / f"part-{i:03d}.parquet", row_group_size=group_rows)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path, Path]:
    """4,000 rows, as one Parquet file and as 5 files of 300-row row groups."""
    X = _mixture(4000)
    base = tmp_path_factory.mktemp("dask-data")
    return X, _write_parts(base / "one", X, 1, 4000), _write_parts(base / "many", X, 5, 300)


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical"])
def test_distributed_em_reaches_scikit_learns_fixed_point(
    client: Any, data: tuple, covariance: str
) -> None:
    from sklearn.mixture import GaussianMixture

    X, _, many = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = GaussianMixture(2, covariance_type=covariance, max_iter=1, random_state=0).fit(X)
    precisions = start.precisions_
    covariances = np.linalg.inv(precisions) if covariance in ("full", "tied") else 1.0 / precisions
    params = {"covariance_type": covariance, "weights": start.weights_, "means": start.means_}
    params["covariances"] = covariances
    reference = GaussianMixture(
        2,
        covariance_type=covariance,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=precisions,
        tol=1e-9,
        max_iter=2000,
    ).fit(X)
    cluster_data = ClusterData(client, plan_parts(many, part_rows=300), print)
    cluster_data.moments(keep=True)
    cluster_data.prepare(np.zeros(3), np.ones(3), seed=0, validation=0.0)
    candidate = Candidate(2, covariance, 1e-6, 2000, 1e-9)
    candidate.run = em_stats.EmRun(dict(params), 1e-6, 1e-9, 2000)
    run_em(cluster_data, [candidate], every_row=False, base_reg=1e-6)
    ours = gmm.log_density(candidate.run.params, X).mean()
    assert abs(ours - reference.score(X)) < 1e-6
    np.testing.assert_allclose(candidate.run.params["means"], reference.means_, atol=1e-5)


def _fit(client: Any, folder: Path, part_rows: int, **options: Any) -> Any:
    plan = plan_parts(folder, part_rows=part_rows)
    return fit_on_cluster(client, plan, options.pop("model", "gmm"), say=lambda _: None, **options)


def test_a_fit_does_not_depend_on_how_the_rows_are_cut(client: Any, data: tuple) -> None:
    _, one, many = data
    a = _fit(client, one, 10**6, components="1..3", covariance="auto", select="heldout")
    b = _fit(client, many, 300, components="1..3", covariance="auto", select="heldout")
    assert a.metadata["engine"]["partitions"] == 1 and b.metadata["engine"]["partitions"] > 10
    assert a.metadata["validation"]["heldout_rows"] == b.metadata["validation"]["heldout_rows"]
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(a.params[key], b.params[key], rtol=1e-9, atol=1e-12)
    assert a.metadata["validation"]["heldout_mean_log_likelihood"] == pytest.approx(
        b.metadata["validation"]["heldout_mean_log_likelihood"], abs=1e-9
    )
    assert len(a.params["weights"]) == 2  # the two clusters the data was drawn from


def test_the_held_out_rows_are_a_seeded_function_of_the_row_index() -> None:
    u = dask_tasks.uniform(7, dask_tasks.SALT_HELDOUT, 0, 200_000)
    pieces = np.concatenate(
        [dask_tasks.uniform(7, dask_tasks.SALT_HELDOUT, s, 1000) for s in range(0, 200_000, 1000)]
    )
    np.testing.assert_array_equal(u, pieces)
    assert abs((u < 0.2).mean() - 0.2) < 0.005  # uniform: 0.2 of the rows held out
    assert not np.array_equal(u, dask_tasks.uniform(8, dask_tasks.SALT_HELDOUT, 0, 200_000))


def test_kde_keeps_a_seeded_sample_of_at_most_max_rows(client: Any, data: tuple) -> None:
    X, one, many = data
    a = _fit(client, one, 10**6, model="kde", max_rows=500, validation=0.0)
    b = _fit(client, many, 300, model="kde", max_rows=500, validation=0.0)
    assert a.metadata["kde_sample"] == {"rows_kept": 500, "rows": 4000, "max_rows": 500}
    np.testing.assert_array_equal(a.params["points"], b.params["points"])
    kept = a.params["points"] * a.scale + a.shift  # every kernel sits on a data row
    assert np.all(np.isclose(kept[:, None, :], X[None, :, :], atol=1e-9).all(axis=2).any(axis=1))


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_fit_score_sample_through_a_scheduler_match_the_local_engine(
    client: Any, data: tuple, tmp_path: Path
) -> None:
    _, _, many = data
    address = client.scheduler.address
    dask = ["--engine", "dask", "--scheduler", address]
    fitted = _cli("fit", many, "-k", "2", "-o", "m.pkl", *dask)
    assert fitted.exit_code == 0, fitted.output
    model = load("m.pkl")
    assert model.family == "gmm" and model.metadata["engine"]["name"] == "dask"
    assert _cli("score", "m.pkl", many, "-o", "local.csv").exit_code == 0
    scored = _cli("score", "m.pkl", many, "-o", "dask.csv", "--json", *dask)
    assert scored.exit_code == 0, scored.output
    engine = json.loads(scored.stdout)["engine"]  # the cluster's share of the run
    assert (engine["name"], engine["workers"], engine["parts"]) == ("dask", 2, 5)
    assert 0 < engine["scoring_seconds"] < 60
    assert Path("dask.csv").read_bytes() == Path("local.csv").read_bytes()
    scores = np.loadtxt("dask.csv", skiprows=1)
    np.testing.assert_allclose(scores, model.score_samples(data[0]), rtol=1e-12)
    n = 200_000  # four blocks: drawn by both workers
    assert _cli("sample", "m.pkl", "-n", n, "--seed", 5, "-o", "l.npy").exit_code == 0
    assert _cli("sample", "m.pkl", "-n", n, "--seed", 5, "-o", "d.npy", *dask).exit_code == 0
    np.testing.assert_array_equal(np.load("d.npy"), np.load("l.npy"))


def test_an_embedded_cluster_of_one_worker_draws_the_same_rows(
    client: Any, data: tuple, tmp_path: Path
) -> None:
    _, _, many = data
    assert _cli("fit", many, "-k", "2", "--validation", "0", "-o", "m.pkl").exit_code == 0
    one = _cli(
        "sample",
        "m.pkl",
        "-n",
        150_000,
        "--seed",
        9,
        "-o",
        "one.npy",
        "--engine",
        "dask",
        "--workers",
        1,
    )
    assert one.exit_code == 0, one.output
    assert "dask: embedded cluster, 1 worker" in one.output
    address = ["--engine", "dask", "--scheduler", client.scheduler.address]
    assert (
        _cli("sample", "m.pkl", "-n", 150_000, "--seed", 9, "-o", "two.npy", *address).exit_code
        == 0
    )
    np.testing.assert_array_equal(np.load("one.npy"), np.load("two.npy"))


def test_an_unreachable_scheduler_is_one_line_and_leaves_no_file(
    data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gencli.engines import cluster

    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 2)  # 10 s by default: give up sooner
    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        [
            "fit",
            str(data[1]),
            "--engine",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "-o",
            "m.pkl",
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]
    assert not Path("m.pkl").exists()
    assert time.monotonic() - started < 20  # the connection gives up; it does not hang


def test_dask_not_installed_says_what_to_install(
    data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = CliRunner().invoke(cli, ["fit", str(data[1]), "--engine", "dask", "-o", "m.pkl"])
    assert result.exit_code == 1
    assert "pip install 'gencli[dask]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not Path("m.pkl").exists()


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--workers", "2"], "--workers"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler"),
        (["--engine", "dask", "--scheduler", "tcp://h:1", "--workers", "2"], "--workers"),
        (["--max-rows", "10"], "--max-rows"),
    ],
)
def test_cluster_flags_out_of_place_are_usage_errors(data: tuple, args: list, flag: str) -> None:
    result = CliRunner().invoke(cli, ["fit", str(data[1]), "-o", "m.pkl", *args])
    assert result.exit_code == 2
    assert flag in result.output
    assert not Path("m.pkl").exists()


def test_bad_data_in_one_part_is_one_line_naming_that_file(client: Any, tmp_path: Path) -> None:
    folder = tmp_path / "gappy"
    folder.mkdir()
    rng = np.random.default_rng(0)
    good, bad = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    bad[6, 1] = np.nan
    np.savetxt(folder / "a.csv", good, delimiter=",", header="u,v", comments="")
    np.savetxt(folder / "b.csv", bad, delimiter=",", header="u,v", comments="")
    address = ["--engine", "dask", "--scheduler", client.scheduler.address]
    command = ["fit", str(folder), "-k", "2", "-o", "m.pkl", "-q", *address]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {folder / 'b.csv'}: column 'v' has missing or infinite values at row 7 (data "
        "rows, counting from 1); remove them or pass --dropna to drop the 1 affected rows"
    ]
    assert not Path("m.pkl").exists()
    dropped = _cli("fit", folder, "-k", "2", "--dropna", "-o", "m.pkl", *address)
    assert dropped.exit_code == 0, dropped.output
    assert load("m.pkl").metadata["rows"] == 99
    # Scores with --dropna: each part's scores travel as one array; the rows are counted
    # across the parts (row 7 of the second file is row 57), the same bytes as the local run.
    for engine, out in ((address, "dask.csv"), ([], "local.csv")):
        scored = _cli("score", "m.pkl", folder, "--dropna", "-o", out, "--json", *engine)
        assert scored.exit_code == 0, scored.output
        assert json.loads(scored.stdout)["skipped_rows"] == 1
    assert Path("dask.csv").read_bytes() == Path("local.csv").read_bytes()
    rows = np.loadtxt("dask.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(rows[:, 0], [r for r in range(1, 101) if r != 57])
    kept = np.vstack([good, bad])[~np.isnan(np.vstack([good, bad])).any(axis=1)]
    np.testing.assert_allclose(rows[:, 1], load("m.pkl").score_samples(kept), rtol=1e-12)


def test_the_held_out_quantile_sample_does_not_depend_on_the_cut() -> None:
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(3000, 2))
    params = {"covariance_type": "diag", "weights": np.ones(1), "means": np.zeros((1, 2))}
    params["covariances"] = np.ones((1, 2))

    def scores(cuts: list[int]) -> np.ndarray:
        out = []
        for start, stop in zip([0, *cuts], [*cuts, len(Z)], strict=True):
            how = dask_tasks.Split(None, 0, start, np.zeros(2), np.ones(2), 3, 0.3)  # type: ignore[arg-type]
            source = dask_tasks.split(Table(Z[start:stop], ["a", "b"], True, "z"), how)
            out.append(dask_tasks.heldout_scores(source, how, params, 0.25))
        return np.concatenate(out)

    whole, cut = scores([]), scores([7, 1000, 1001, 2500])
    assert 150 < len(whole) < 300  # a quarter of the ~900 held-out rows
    np.testing.assert_array_equal(whole, cut)


def test_a_tiny_max_rows_keeps_exactly_that_many(client: Any, data: tuple) -> None:
    model = _fit(client, data[2], 300, model="kde", max_rows=3, validation=0.0)
    assert len(model.params["points"]) == 3


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_scores_to_a_folder_are_part_files_in_input_order(
    client: Any, data: tuple, engine: str
) -> None:
    _, _, many = data
    address = ["--engine", "dask", "--scheduler", client.scheduler.address]
    assert _cli("fit", many, "-k", "2", "-o", "m.pkl", *address).exit_code == 0
    assert _cli("score", "m.pkl", many, "-o", "one.npy").exit_code == 0
    flags = address if engine == "dask" else []
    result = _cli("score", "m.pkl", many, "-o", "scores/", "--flag-below", "0.05", *flags)
    assert result.exit_code == 0, result.output
    files = sorted(Path("scores").iterdir())
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(files))]
    assert len(files) == len(plan_parts(many).parts) > 1
    table = pq.read_table("scores")
    np.testing.assert_array_equal(
        table.column("log_density").to_numpy(), np.load("one.npy").ravel()
    )
    assert "outliers" in result.output and table.column("outlier").to_numpy().any()
    assert not [p for p in Path(".").iterdir() if p.name.startswith(".scores")]  # no leftovers
    # The summary says what the cluster did, and only when there was one.
    said = f"cluster    {len(files)} parts on 2 workers in "
    assert (said in result.output) == (engine == "dask"), result.output


def test_a_folder_of_scores_is_refused_whole_on_bad_data(client: Any, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    rows = np.random.default_rng(0).normal(size=(40, 2))
    np.savetxt(folder / "a.csv", rows, delimiter=",", header="u,v", comments="")
    rows[5, 0] = np.nan
    np.savetxt(folder / "b.csv", rows, delimiter=",", header="u,v", comments="")
    assert _cli("fit", folder / "a.csv", "-k", "1", "-o", "m.pkl").exit_code == 0
    address = ["--engine", "dask", "--scheduler", client.scheduler.address]
    result = CliRunner().invoke(cli, ["score", "m.pkl", str(folder), "-o", "out/", "-q", *address])
    assert result.exit_code == 1
    assert "b.csv: column 'u' has missing or infinite values at row 6" in result.output
    assert sorted(p.name for p in Path(".").iterdir()) == ["m.pkl", "two"]  # no out/, no temporary


@pytest.mark.parametrize(
    "args, words",
    [
        (["--n-init", "2"], "--n-init is 1 on --engine dask"),
        (["--discrete", "auto"], "--discrete is not available on --engine dask"),
        (["--select", "heldout", "--validation", "0"], "--select heldout needs held-out rows"),
    ],
)
def test_what_the_cluster_does_not_do_is_one_line_and_no_file(
    client: Any, data: tuple, args: list, words: str
) -> None:
    address = ["--engine", "dask", "--scheduler", client.scheduler.address, "-q"]
    result = CliRunner().invoke(
        cli, ["fit", str(data[1]), "-k", "2", "-o", "m.pkl", *address, *args]
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and words in result.output
    assert sorted(p.name for p in Path(".").iterdir()) == []


def test_a_scheduler_without_workers_is_one_line(
    data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    from gencli.engines import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "CONNECT_SECONDS", 1)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        command = ["fit", str(data[1]), "-o", "m.pkl", "--engine", "dask", "--scheduler"]
        result = CliRunner().invoke(cli, [*command, empty.scheduler_address])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: the Dask scheduler at {empty.scheduler_address} has no workers (none joined "
        f"within 1 s); start some with 'dask worker {empty.scheduler_address}'"
    ]
    assert not Path("m.pkl").exists()


def test_the_workers_read_parts_from_a_url(client: Any, data: tuple, tmp_path: Path) -> None:
    """A file:// glob goes through fsspec on the workers: the same model and scores as the
    folder's path."""
    _, _, many = data
    dask = ["--engine", "dask", "--scheduler", client.scheduler.address]
    assert _cli("fit", many, "-k", "2", "-o", "path.pkl", *dask).exit_code == 0
    url = f"file://{many}/part-*.parquet"
    fitted = _cli("fit", url, "-k", "2", "-o", "url.pkl", *dask)
    assert fitted.exit_code == 0, fitted.output
    by_path, by_url = load("path.pkl"), load("url.pkl")
    for key in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(by_url.params[key], by_path.params[key])
    assert _cli("score", "url.pkl", url, "-o", "u.csv", *dask).exit_code == 0
    assert _cli("score", "url.pkl", many, "-o", "p.csv").exit_code == 0
    assert Path("u.csv").read_bytes() == Path("p.csv").read_bytes()


def test_a_report_from_the_cluster_shows_a_sample_the_cut_does_not_change(
    client: Any, data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gencli.engines import dask_jobs
    from gencli.engines.dask_fit import fit_on_cluster

    X, one, many = data
    samples = []
    for folder in (one, many):
        plan = plan_parts(folder, part_rows=300)
        model = fit_on_cluster(
            client, plan, "gmm", say=lambda _: None, components=2, report_rows=700
        )
        samples.append(model.metadata.pop("report_sample"))
    np.testing.assert_array_equal(samples[0], samples[1])
    assert samples[0].shape == (700, 3)
    rows = {tuple(r) for r in X}
    assert all(tuple(r) in rows for r in samples[0])  # rows of the data, in data units
    monkeypatch.setattr(dask_jobs, "REPORT_ROWS", 700)
    address = ["--engine", "dask", "--scheduler", client.scheduler.address, "-q"]
    for report in ("r.json", "r.html"):
        result = _cli("fit", many, "-k", "1..3", "-o", "m.pkl", "--report", report, *address)
        assert result.exit_code == 0, result.output
    record = json.loads(Path("r.json").read_text())
    assert record["figure_rows"] == {"shown": 700, "rows": 4000}
    assert record["validation"]["heldout_rows"] > 0
    assert len(record["selection"]["candidates"]) == 3
    page = Path("r.html").read_text()
    assert "a seeded uniform sample of 700 of the 4,000 rows" in page and "<img" in page
    assert "report_sample" not in load("m.pkl").metadata


def test_marginal_and_conditional_scores_on_the_cluster_equal_the_local_ones(
    client: Any, data: tuple
) -> None:
    """score --columns/--given send a derived model to the workers: the same bytes."""
    _, one, _ = data
    assert _cli("fit", one, "-k", "2", "--model", "gmm", "-o", "m.pkl", "-q").exit_code == 0
    dask = ["--engine", "dask", "--scheduler", client.scheduler.address, "-q"]
    for flags in (["--columns", "a,c"], ["--given", "b"], ["--columns", "a", "--given", "c"]):
        assert _cli("score", "m.pkl", one, *flags, "-o", "local.csv", "-q").exit_code == 0
        result = _cli("score", "m.pkl", one, *flags, "-o", "dask.csv", *dask)
        assert result.exit_code == 0, result.output
        assert Path("dask.csv").read_bytes() == Path("local.csv").read_bytes()


def test_packed_chunks_give_back_the_very_chunks() -> None:
    """What a worker sends back unpacks into the chunks it scored: rows, scores, counts."""
    from gencli.engines.dask_score import PackedChunks
    from gencli.engines.local import ScoredChunk

    rng = np.random.default_rng(0)
    sizes = [5, 0, 3, 7]  # a chunk whose rows were all skipped (--dropna) in between
    made = [
        ScoredChunk(np.arange(i * 10 + 1.0, i * 10 + 1.0 + m), rng.normal(size=m), 10, 10 - m, i)
        for i, m in enumerate(sizes)
    ]
    back = PackedChunks.of(list(made)).chunks()
    assert len(back) == len(made)
    for got, want in zip(back, made, strict=True):
        np.testing.assert_array_equal(got.row_numbers, want.row_numbers)
        np.testing.assert_array_equal(got.log_density, want.log_density)
        assert (got.rows_read, got.skipped, got.underflow) == (
            want.rows_read,
            want.skipped,
            want.underflow,
        )
    no_rows = [ScoredChunk(np.zeros(0), c.log_density, 10, 0, 0) for c in made]
    assert all(c.row_numbers.size == 0 for c in PackedChunks.of(no_rows).chunks())
    assert PackedChunks.of([]).chunks() == []


def test_parts_of_many_chunks_sum_and_write_as_the_local_engine(
    client: Any, tmp_path: Path
) -> None:
    """Parts of 40,000 rows are scored in 16,384-row chunks: the summary's total (a sum
    per chunk) and the file are the local engine's to the last bit."""
    folder = _write_parts(tmp_path / "big", _mixture(80_000, seed=3), 2, 40_000)
    fitted = _cli("fit", folder, "-k", "2", "--validation", "0", "-o", "m.pkl")
    assert fitted.exit_code == 0, fitted.output
    address = ["--engine", "dask", "--scheduler", client.scheduler.address]
    summaries = {}
    for name, engine in (("local", []), ("dask", address)):
        scored = _cli("score", "m.pkl", folder, "-o", f"{name}.csv", "--json", *engine)
        assert scored.exit_code == 0, scored.output
        summaries[name] = json.loads(scored.stdout)
    for key in ("rows", "total_log_likelihood", "mean_log_likelihood"):
        assert summaries["dask"][key] == summaries["local"][key], key
    assert Path("dask.csv").read_bytes() == Path("local.csv").read_bytes()
