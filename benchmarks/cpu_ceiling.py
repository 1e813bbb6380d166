"""How much faster two busy processes are than one on this machine, before any Dask.

The Dask engine's 1 -> 2 worker targets are ratios on a 2-core machine; this measures their
ceiling: the same work in one process, then split over two processes running at once, for
(1) a pure Python loop (no memory traffic: what the cores themselves give), (2) the EM
statistics of gencli/fitting/em_stats.py on 500k x 10 rows, K = 5 full, and (3) scoring
those rows (gencli/density/families/gaussians.py). Interleaved, ``--repeat`` times.

    python benchmarks/cpu_ceiling.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing import get_context

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

PARTS, ROWS, K, D = 8, 500_000, 5, 10


def _mixture() -> dict:
    rng = np.random.default_rng(1)
    covariances = np.stack([np.eye(D) * (1 + i) for i in range(K)])
    return {
        "covariance_type": "full",
        "weights": np.full(K, 1 / K),
        "means": rng.normal(size=(K, D)),
        "covariances": covariances,
    }


def _loop(parts: list[int]) -> Callable[[], None]:
    def run() -> None:
        for _ in parts:
            total = 0
            for i in range(2_500_000):
                total += i * i

    return run


def _em(parts: list[int]) -> Callable[[], None]:
    from gencli.fitting import em_stats

    data = [np.random.default_rng(i).normal(size=(ROWS, D)) for i in parts]
    params = _mixture()
    return lambda: [em_stats.statistics(Z, params) for Z in data] and None


def _score(parts: list[int]) -> Callable[[], None]:
    from gencli.density.families import gaussians

    data = [np.random.default_rng(i).normal(size=(ROWS, D)) for i in parts]
    params, cache = _mixture(), {}
    step = 6553  # the command line's scoring chunk at 10 columns

    def run() -> None:
        for Z in data:
            for start in range(0, len(Z), step):
                gaussians.log_density(params, Z[start : start + step], cache)

    return run


WORK = {"python loop": _loop, "EM statistics": _em, "scoring": _score}


def _timed(kind: str, parts: list[int], queue) -> None:  # type: ignore[no-untyped-def]
    from gencli.native import keep_freed_memory

    keep_freed_memory()
    run = WORK[kind](parts)
    started = time.perf_counter()
    run()
    queue.put(time.perf_counter() - started)


def _once(kind: str) -> float:
    """One process doing every part, over two processes each doing half at once."""
    context = get_context("fork")
    queue = context.Queue()
    one = context.Process(target=_timed, args=(kind, list(range(PARTS)), queue))
    one.start()
    alone = queue.get()
    one.join()
    pair = [
        context.Process(target=_timed, args=(kind, list(range(j, PARTS, 2)), queue))
        for j in range(2)
    ]
    for process in pair:
        process.start()
    together = max(queue.get() for _ in pair)
    for process in pair:
        process.join()
    return float(alone / together)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {kind: [] for kind in WORK}
    for _ in range(args.repeat):
        for kind in WORK:
            ratios[kind].append(_once(kind))
    for kind, values in ratios.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{kind:14s} 2 processes / 1: median {statistics.median(values):.2f}x  ({shown})")


if __name__ == "__main__":
    main()
