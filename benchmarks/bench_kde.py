"""KDE scoring: gencli's default, --exact and --approx modes against exact scikit-learn.

Accuracy is refereed by a brute-force log-sum-exp, independent of both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_data import Mixture, ensure
from bench_harness import (
    FAILED,
    INFO,
    MET,
    NOT_MET,
    Bench,
    Check,
    Side,
    baseline,
    broken,
    gencli,
    measure,
    ratio_text,
    seconds,
    warm,
)


def read_csv_values(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def direct_kde(train: Path, query: Path, bandwidth: float) -> np.ndarray:
    """Exact Gaussian KDE log-density in data units by brute-force log-sum-exp.

    Independent of both scikit-learn's tree and gencli, so it can referee both. Squared
    distances come from |q|^2 + |x|^2 - 2 q.x (BLAS); on standardized data of norm ~3 and
    h = 0.05 that costs about 1e-12 in the log-density, far below the targets checked.
    Cached next to the data, since it depends only on the two files and the bandwidth.
    """
    cache = train.with_name(f"reference-{train.stem}-{query.stem}-h{bandwidth}.npy")
    if cache.exists():
        return np.load(cache)
    X, Q = read_csv_values(train), read_csv_values(query)
    shift, scale = X.mean(axis=0), X.std(axis=0)
    Z, ZQ = (X - shift) / scale, (Q - shift) / scale
    n, d = Z.shape
    constant = -math.log(n) - d * math.log(bandwidth * math.sqrt(2 * math.pi))
    z_norms = np.sum(Z * Z, axis=1)
    out = np.empty(len(ZQ))
    step = max(1, 10_000_000 // n)
    for start in range(0, len(ZQ), step):
        block = ZQ[start : start + step]
        squared = np.sum(block * block, axis=1)[:, None] + z_norms[None, :] - 2 * block @ Z.T
        exponent = np.maximum(squared, 0.0) * (-0.5 / bandwidth**2)
        top = exponent.max(axis=1)
        out[start : start + step] = top + np.log(np.exp(exponent - top[:, None]).sum(axis=1))
    out += constant - float(np.sum(np.log(scale)))
    np.save(cache, out)
    return out


def max_relative_error(path: Path, reference: np.ndarray) -> float:
    """Largest |p/p_ref - 1| over the rows, from a file of log-densities."""
    values = np.load(path).ravel() if path.suffix == ".npy" else read_csv_values(path).ravel()
    if values.shape != reference.shape:
        return math.inf
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(np.expm1(values - reference))
    return float(np.max(np.where(np.isnan(error), np.inf, error)))


KDE_BASELINE = "scikit-learn KernelDensity"
FLOOR_ROWS = 10


def bench_kde(bench: Bench, dim: int) -> None:
    """KDE scoring: gencli's default, --exact and --approx against exact scikit-learn.

    The same commands also run on a 10-row query file: that start-up floor (imports, model
    load, reading) bounds any end-to-end ratio, and shows how much of each time is compute.
    """
    rows, bandwidth = bench.sizes.kde, 0.05
    mixture = Mixture(components=4, dim=dim, seed=2)
    train = ensure(bench.data, f"kde{dim}-train", mixture, rows, stream=0)
    query = ensure(bench.data, f"kde{dim}-query", mixture, rows, stream=1)
    tiny = ensure(bench.data, f"kde{dim}-query", mixture, FLOOR_ROWS, stream=2)
    warm(train, query, tiny)
    print(f"  data: {rows:,} training and {rows:,} query rows, {dim}-D, bandwidth {bandwidth}")
    model = bench.work / f"kde{dim}.pkl"
    flags = f"--model kde --bandwidth {bandwidth} --validation 0 -q -o".split()
    fit = measure(gencli("fit", train, *flags, model))
    label = f"score KDE {dim}-D {rows // 1000}k/{rows // 1000}k"
    if fit.returncode != 0:
        bench.check(Check(label, "—", "—", "—", "—", f"fit: {fit.problem()}", "—", FAILED))
        return
    modes: dict[str, list[str]] = {"default": [], "exact": ["--exact"], "approx": ["--approx"]}
    if dim == 1:
        del modes["exact"]  # 1-D is about the approximate path; the exact one is shown in 2-D
    labels = {mode: f"gencli score {' '.join(f) or '(default)'}" for mode, f in modes.items()}
    labels["base"] = KDE_BASELINE

    def commands(rows_file: Path, out: Callable[[str], Path]) -> dict[str, list[str]]:
        found = {
            labels[mode]: gencli("score", model, rows_file, "-o", out(mode), "-q", *flags)
            for mode, flags in modes.items()
        }
        found[KDE_BASELINE] = baseline("kde_score.py", train, rows_file, bandwidth, out("base"))
        return found

    outputs = {mode: bench.work / f"kde{dim}-{mode}.npy" for mode in labels}
    sides = bench.sides(f"kde_{dim}d", commands(query, outputs.__getitem__), bench.repeat)
    print(f"  start-up floor: the same commands on {FLOOR_ROWS} query rows")
    floors = bench.sides(
        f"kde_{dim}d_floor", commands(tiny, lambda _: bench.work / "floor.npy"), bench.repeat
    )
    reference = direct_kde(train, query, bandwidth)
    base = sides[KDE_BASELINE]
    if not base.ok:
        bench.check(broken(label, base, "baseline"))
        return
    base_error = max_relative_error(outputs["base"], reference)
    print(f"  reference: direct log-sum-exp; scikit-learn's max relative error {base_error:.1e}")
    targets = {
        "default": (10.0, 1e-6, ">= 10× faster, rel err <= 1e-6"),
        "exact": (None, None, "— (shown for reference)"),
        "approx": (50.0, 1e-3, ">= 50× faster, rel err <= 1e-3"),
    }
    if dim == 1:
        targets["default"] = (None, None, "— (target is for 2-D)")
    for mode in modes:
        side, floor = sides[labels[mode]], floors[labels[mode]]
        speed_target, error_target, target = targets[mode]
        path = f"{label} {mode}"
        if not side.ok:
            bench.check(broken(path, side, target))
            continue
        speedup = base.seconds / side.seconds
        error = max_relative_error(outputs[mode], reference)
        if speed_target is None or error_target is None:
            status = INFO
        else:
            status = MET if speedup >= speed_target and error <= error_target else NOT_MET
        bench.check(
            Check(
                path,
                f"{seconds(side.seconds)} (floor {floor_text(floor)})",
                f"{seconds(base.seconds)} (floor {floor_text(floors[KDE_BASELINE])})",
                f"{ratio_text(speedup)} faster",
                target,
                f"max rel density error {error:.1e}",
                f"{side.peak_mb:.0f} / {base.peak_mb:.0f} MB",
                status,
            )
        )


def floor_text(side: Side) -> str:
    return seconds(side.seconds) if side.ok else "—"
