"""A mixture fit at a million rows: gencli against the plain pandas + scikit-learn script
run with one BLAS thread (the fair baseline: on 2 cores the script's default threads
oversubscribe), with the default-threads script as a second row.

Targets (issue 14): time no more than the one-thread script's, peak memory at most 1.2x.
Both fit K=5 full covariances with no held-out rows, so the work is the same EM.
"""

from __future__ import annotations

from bench_data import Mixture, ensure
from bench_harness import (
    INFO,
    MET,
    NOT_MET,
    Bench,
    Check,
    baseline,
    broken,
    gencli,
    ratio_text,
    warm,
)
from bench_harness import seconds as as_seconds

FULL_SHAPES = ((1_000_000, 10), (1_000_000, 50))
QUICK_SHAPES = ((200_000, 10), (200_000, 50))
ONE_THREAD = ["env", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1"]


def bench_gmm_memory(bench: Bench) -> None:
    for rows, dim in QUICK_SHAPES if bench.quick else FULL_SHAPES:
        _one(bench, rows, dim)


def _one(bench: Bench, rows: int, dim: int) -> None:
    data = ensure(bench.data, "gmm", Mixture(components=5, dim=dim, seed=1), rows)
    warm(data)
    print(f"  data: {rows:,} rows x {dim} columns, 5 true components ({data.name})")
    flags = ["-k", "5", "--validation", "0", "--seed", "0", "-q", "--json", "-o"]
    base_args = (data, bench.work / "gmm-mem-base.pkl", 5, 0)
    sides = bench.sides(
        f"gmm_memory_{dim}",
        {
            "gencli fit -k 5": gencli("fit", data, *flags, bench.work / "gmm-mem.pkl"),
            "script, 1 BLAS thread": [*ONE_THREAD, *baseline("gmm_fit.py", *base_args)],
            "script, default threads": baseline("gmm_fit.py", *base_args),
        },
        bench.repeat,
    )
    ours = sides["gencli fit -k 5"]
    label = f"fit GMM {rows // 1000}k x {dim}, K=5"
    for name, target_met in (("script, 1 BLAS thread", True), ("script, default threads", False)):
        theirs = sides[name]
        target = "time <= 1.0x, peak <= 1.2x" if target_met else "— (second row)"
        if not (ours.ok and theirs.ok):
            bench.check(broken(f"{label} vs {name}", ours if not ours.ok else theirs, target))
            continue
        gap = float(ours.json()["mean_log_likelihood"]) - float(
            theirs.json()["mean_log_likelihood"]
        )
        time_ratio = ours.seconds / theirs.seconds
        memory_ratio = ours.peak_mb / theirs.peak_mb
        status = INFO
        if target_met:
            status = MET if time_ratio <= 1.0 and memory_ratio <= 1.2 else NOT_MET
        bench.check(
            Check(
                f"{label} vs {name}",
                as_seconds(ours.seconds),
                as_seconds(theirs.seconds),
                f"time {ratio_text(time_ratio)}, peak {ratio_text(memory_ratio)}",
                target,
                f"mean log-lik diff {gap:+.1e} nats/row",
                f"{ours.peak_mb:.0f} / {theirs.peak_mb:.0f} MB",
                status,
            )
        )
