"""The Dask engine (issue 15): out of core, scaling from one worker to two, and its overhead.

- Out of core: a K=5 mixture fitted with ``--engine dask`` to 20M x 10 rows in 20 Parquet
  files, on an embedded cluster of two workers with ``--memory-limit 1GB``; the peak RSS of
  the largest process (the wrapper's wait4 sees every descendant) against 1 GB, and the
  median seconds of one EM pass over every row (recorded by gencli) against one iteration of
  scikit-learn's GaussianMixture on the same rows in memory (baselines/gmm_iteration.py).
- Scaling: the same EM pass (4M rows) and a ``score`` of the out-of-core rows, 1 worker
  against 2 (target 1.7x).
- Overhead: ``fit -k 5`` and ``score`` of 1M x 10 rows, --engine dask against local.

The fits use ``--tol 0.05`` so that they converge in a few passes (the work per pass is
what is measured) and ``--validation 0``; the data is generated once into benchmarks/.data.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from bench_data import Mixture
from bench_harness import INFO, MET, NOT_MET, Bench, Check, baseline, broken, gencli, ratio_text
from bench_harness import seconds as as_seconds

OUT_OF_CORE = (20_000_000, 20)  # rows, files
QUICK_OUT_OF_CORE = (2_000_000, 4)
SCALING_ROWS = (4_000_000, 8)
QUICK_SCALING_ROWS = (1_000_000, 4)
OVERHEAD_ROWS = (1_000_000, 4)
FIT = ["-k", "5", "--validation", "0", "--tol", "0.05", "--seed", "0", "-q", "--json"]
# The scaling fit runs to 6 EM passes, so that the median pass is a steady one: the first
# pass after the rows are loaded also pays each worker's first-touch page faults.
SCALING_FIT = [*FIT[:4], "--tol", "1e-12", "--max-iter", "6", *FIT[6:]]


def parts(bench: Bench, rows: int, files: int) -> Path:
    """``rows`` x 10 rows of a 5-component mixture in ``files`` Parquet files (cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = bench.data / f"dask-parts-{rows}-{files}"
    if (folder / ".done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    mixture = Mixture(components=5, dim=10, seed=3)
    per_file = rows // files
    for i in range(files):
        chunks = list(Mixture.chunks(mixture, per_file, stream=i))
        X = np.concatenate(chunks)
        table = pa.table({f"x{j}": X[:, j] for j in range(10)})
        pq.write_table(table, folder / f"part-{i:03d}.parquet", row_group_size=250_000)
    (folder / ".done").write_text("")
    return folder


def bench_dask_overhead(bench: Bench) -> None:
    _overhead(bench)


def bench_dask_scaling(bench: Bench) -> None:
    _scaling(bench)


def bench_dask_out_of_core(bench: Bench) -> None:
    _out_of_core(bench)


def _engine_seconds(side, key: str) -> float:  # type: ignore[no-untyped-def]
    """The median over the runs of a figure of the summary's ``engine`` block."""
    return statistics.median(float(json.loads(run.stdout)["engine"][key]) for run in side.runs)


def _pass_seconds(side) -> float:  # type: ignore[no-untyped-def]
    """The median over the runs of each run's median EM pass."""
    return _engine_seconds(side, "em_pass_seconds")


def _out_of_core(bench: Bench) -> None:
    rows, files = QUICK_OUT_OF_CORE if bench.quick else OUT_OF_CORE
    data = parts(bench, rows, files)
    print(f"  out of core: {rows:,} rows x 10 columns in {files} Parquet files")
    dask = ["--engine", "dask", "--workers", "2", "--memory-limit", "1GB"]
    sides = bench.sides(
        "dask_out_of_core",
        {
            "gencli fit --engine dask": gencli(
                "fit", data, *FIT, *dask, "-o", bench.work / "d.pkl"
            ),
            "sklearn in memory, 3 iterations": baseline("gmm_iteration.py", data, 5, 3),
        },
        1,
    )
    fit, script = sides["gencli fit --engine dask"], sides["sklearn in memory, 3 iterations"]
    label = f"dask EM pass, {rows:,} x 10, K=5"
    if not fit.ok or not script.ok:
        bench.check(broken(label, fit if not fit.ok else script, "pass <= 1.5x, peak < 1 GB"))
        return
    ours, theirs = _pass_seconds(fit), float(script.json()["seconds_per_iteration"])
    ratio = ours / theirs
    peak_ok = fit.peak_mb < 1024
    bench.check(
        Check(
            label,
            f"{as_seconds(ours)} per pass",
            f"{as_seconds(theirs)} per iteration (sklearn, in memory)",
            f"{ratio:.2f}x the time",
            "<= 1.5x sklearn's iteration, largest process < 1 GB",
            f"{fit.json()['engine']['em_passes']} passes, parts read again each pass: "
            f"{not fit.json()['engine']['kept_in_memory']}",
            f"{fit.peak_mb:.0f} / {script.peak_mb:.0f} MB",
            MET if ratio <= 1.5 and peak_ok else NOT_MET,
        )
    )


def _scaling(bench: Bench) -> None:
    rows, files = QUICK_SCALING_ROWS if bench.quick else SCALING_ROWS
    data = parts(bench, rows, files)
    model = bench.work / "scaling.pkl"
    print(f"  scaling: {rows:,} rows x 10 columns in {files} Parquet files")
    commands = {
        f"fit, {w} worker{'s' if w > 1 else ''}": gencli(
            "fit", data, *SCALING_FIT, "--engine", "dask", "--workers", w, "-o", model
        )
        for w in (1, 2)
    }
    fits = bench.sides("dask_scaling_fit", commands, bench.repeat)
    if all(side.ok for side in fits.values()):
        one, two = _pass_seconds(fits["fit, 1 worker"]), _pass_seconds(fits["fit, 2 workers"])
        _speedup(bench, f"dask EM pass, {rows:,} x 10: 1 -> 2 workers", one, two)
    # Scoring is measured against running clusters, so that starting one is not part of
    # it (a `dask scheduler` and 1 or 2 `dask worker` processes), on the out-of-core rows:
    # the client's fixed costs (importing Dask, connecting, sending the model: about 2.5 s
    # here) would otherwise be most of a 4M-row run.
    # Two figures: the whole command (with its serial start, about 0.85 s of importing Dask
    # and connecting, and its end) and the cluster's share of it, the summary's
    # engine.scoring_seconds (model sent to last part written), the analogue of a fit's
    # time per EM pass.
    rows, files = QUICK_OUT_OF_CORE if bench.quick else OUT_OF_CORE
    data = parts(bench, rows, files)
    seconds: dict[int, float] = {}
    scoring: dict[int, float] = {}
    for w in (1, 2):
        with running_cluster(bench.work / f"scheduler-{w}.json", w) as address:
            command = gencli("score", model, data, "--engine", "dask", "--scheduler", address)
            label = f"score, {w} worker{'s' if w > 1 else ''}"
            side = bench.sides(
                f"dask_scaling_score_{w}",
                {label: [*command, "--json", "-o", bench.work / "scores.npy"]},
                bench.repeat,
            )[label]
            if side.ok:
                seconds[w] = side.seconds
                scoring[w] = _engine_seconds(side, "scoring_seconds")
    if len(seconds) == 2:
        _speedup(bench, f"dask score, {rows:,} x 10: 1 -> 2 workers", seconds[1], seconds[2])
        _speedup(
            bench,
            f"dask score, {rows:,} x 10, the cluster's share: 1 -> 2 workers",
            scoring[1],
            scoring[2],
        )


@contextlib.contextmanager
def running_cluster(info: Path, workers: int) -> Iterator[str]:
    """A `dask scheduler` and a `dask worker` with ``workers`` single-threaded processes on
    127.0.0.1, with the embedded cluster's settings, stopped (by their handles) on the way
    out."""
    from gencli.engines.cluster import QUIET

    python = sys.executable
    started: list[subprocess.Popen] = []
    # The settings gencli gives its embedded cluster (Dask's housekeeping turned down),
    # which a running cluster takes from its environment.
    environment = os.environ | {
        "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(ours)
        for key, (_default, ours) in QUIET.items()
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": environment}
    try:
        started.append(
            subprocess.Popen(
                [python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                **quiet,
            )
        )  # fmt: skip
        while not info.exists():
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        started.append(
            subprocess.Popen(
                [python, "-m", "distributed.cli.dask_worker", address, "--nworkers",
                 str(workers), "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                **quiet,
            )
        )  # fmt: skip
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        info.unlink(missing_ok=True)


def _speedup(bench: Bench, label: str, one: float, two: float) -> None:
    speedup = one / two
    bench.check(
        Check(
            label,
            as_seconds(two),
            f"{as_seconds(one)} (1 worker)",
            f"{speedup:.2f}x",
            ">= 1.7x on 2 cores",
            "same partitions, same result",
            "—",
            MET if speedup >= 1.7 else NOT_MET,
        )
    )


def _overhead(bench: Bench) -> None:
    rows, files = OVERHEAD_ROWS
    data = parts(bench, rows, files)
    print(f"  overhead: {rows:,} rows x 10 columns in {files} Parquet files")
    model = bench.work / "overhead.pkl"
    fits = bench.sides(
        "dask_overhead_fit",
        {
            "fit, local": gencli("fit", data, *FIT, "-o", model),
            "fit, --engine dask": gencli("fit", data, *FIT, "--engine", "dask", "-o", model),
        },
        bench.repeat,
    )
    scores = bench.sides(
        "dask_overhead_score",
        {
            "score, local": gencli("score", model, data, "-q", "-o", bench.work / "s.npy"),
            "score, --engine dask": gencli(
                "score", model, data, "--engine", "dask", "-q", "-o", bench.work / "s.npy"
            ),
        },
        bench.repeat,
    )
    for what, sides in (("fit -k 5", fits), ("score", scores)):
        local, dask = (sides[label] for label in sides)
        if not (local.ok and dask.ok):
            continue
        bench.check(
            Check(
                f"dask overhead, {what}, {rows:,} x 10",
                as_seconds(dask.seconds),
                f"{as_seconds(local.seconds)} (local engine)",
                ratio_text(local.seconds / dask.seconds) + " faster",
                "stated (a cluster starts and ships tasks)",
                "—",
                f"{dask.peak_mb:.0f} / {local.peak_mb:.0f} MB",
                INFO,
            )
        )
