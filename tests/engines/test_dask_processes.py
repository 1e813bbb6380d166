"""The Dask engine with real processes: a ``dask scheduler`` and ``dask worker`` processes
on 127.0.0.1 (one of them killed in the middle of a fit), and an embedded cluster stopped by
Ctrl-C leaving no process behind. Every process a test starts is ended by its handle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gencli.density.modelfile import load

pytest.importorskip("distributed")

GENCLI = [sys.executable, "-m", "gencli"]


def _write_parts(folder: Path, rows: int, files: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir()
    X = np.vstack([rng.normal(0, 1, (rows // 2, 4)), rng.normal(2, 0.7, (rows - rows // 2, 4))])
    X = X[rng.permutation(rows)]
    for i, part in enumerate(np.array_split(X, files)):
        table = pa.table({f"x{j}": part[:, j] for j in range(4)})
        pq.write_table(table, folder / f"part-{i:02d}.parquet")
    return folder


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture()
def scheduler(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler and two single-threaded worker processes without nannies (a killed
    worker stays dead), as a user would start them."""
    info = tmp_path / "scheduler.json"
    started = []
    try:
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]  # fmt: skip
        started += workers
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for process in reversed(started):
            _stop(process)


def test_a_fit_survives_a_worker_killed_in_the_middle(
    scheduler: tuple[str, list[subprocess.Popen]], tmp_path: Path
) -> None:
    address, workers = scheduler
    data = _write_parts(tmp_path / "parts", 60_000, 6)
    command = [*GENCLI, "fit", str(data), "--engine", "dask", "--scheduler", address]
    command += ["-k", "3", "--tol", "1e-5"]  # about 8 s of EM passes here
    fit = subprocess.Popen(
        [*command, "-o", "killed.pkl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert fit.stderr is not None
        line = fit.stderr.readline().decode()  # said once connected, before the first pass
        assert line.startswith(f"dask: cluster at {address}, 2 workers"), line
        time.sleep(1.5)
        assert fit.poll() is None, "the fit ended before a worker could be killed"
        workers[0].kill()
        workers[0].wait()
        _, err = fit.communicate(timeout=300)
    finally:
        _stop(fit)
    if fit.returncode != 0:  # allowed: one line, and no model file
        assert len(err.decode().strip().splitlines()) == 1, err.decode()
        assert not (tmp_path / "killed.pkl").exists()
        return
    assert subprocess.run([*command, "-o", "calm.pkl", "-q"], timeout=300).returncode == 0
    killed, calm = load(tmp_path / "killed.pkl"), load(tmp_path / "calm.pkl")
    for key in ("weights", "means", "covariances"):
        np.testing.assert_allclose(killed.params[key], calm.params[key], rtol=1e-9, atol=1e-12)


def _session_processes(session: int) -> list[int]:
    """Processes still in session ``session`` (a fresh one the test made for the run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_ctrl_c_stops_the_embedded_cluster_and_leaves_no_process(tmp_path: Path) -> None:
    data = _write_parts(tmp_path / "parts", 60_000, 6)
    fit = subprocess.Popen(
        [*GENCLI, "fit", str(data), "--engine", "dask", "--workers", "2", "-k", "3",
         "--tol", "1e-5", "-o", "m.pkl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert fit.stderr is not None
        line = fit.stderr.readline().decode()
        assert line.startswith("dask: embedded cluster, 2 workers"), line
        time.sleep(1.0)
        fit.send_signal(signal.SIGINT)
        _, err = fit.communicate(timeout=120)
    finally:
        _stop(fit)
    assert fit.returncode == 130, err.decode()
    assert "interrupted" in err.decode().lower()
    assert not (tmp_path / "m.pkl").exists()
    deadline = time.monotonic() + 20
    while _session_processes(fit.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _session_processes(fit.pid)
    for pid in left:  # the test's own session: clean it up before failing
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left behind: {left}"
