"""Box masses for discrete columns: time to score rows, beside the ordinary log-density.

100k rows x 10 columns, 3 of them integer-coded (0..16), scored in the estimator's space
under a 5-component diag mixture and a 2,000-point Gaussian KDE. The box scores do more
work per row (two log-CDFs per discrete column and component or point); the ratio says
how much more.

    python benchmarks/bench_boxes.py [--rows 100000] [--points 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from gencli.density.families import boxes, gmm, kde


def best_of(repeat: int, work: Callable[[], np.ndarray]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def data(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with integer columns 1, 4 and 7 (binomial counts 0..16), the rest continuous."""
    X = rng.normal(0, 1, (rows, 10)) @ rng.normal(0, 0.5, (10, 10)) + rng.normal(0, 3, 10)
    discrete = np.array([1, 4, 7])
    X[:, discrete] = rng.binomial(16, [0.2, 0.5, 0.7], (rows, 3))
    return X, discrete, np.ones(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X, discrete, ones = data(args.rows, rng)
    train = X[: args.points].copy()
    train[:, discrete] += rng.random((args.points, discrete.size))  # dequantized
    shift, scale = train.mean(axis=0), train.std(axis=0)
    Z = (X - shift) / scale  # discrete columns: the boxes' lower edges in z
    widths = ones / scale[discrete]
    Ztrain = (train - shift) / scale

    estimator = gmm.fit(Ztrain, components=5, covariance="diag", seed=0)
    mixture = gmm.to_params(estimator)
    density = kde.fit(Ztrain, bandwidth="scott", kernel="gaussian")
    print(f"{args.rows} rows x 10 columns (3 discrete, 0..16), best of {args.repeat}")
    cases = [
        (
            "gmm diag K=5",
            lambda: boxes.gmm_log_mass(mixture, Z, discrete, widths),
            lambda: gmm.log_density(mixture, Z),
        ),
        (
            f"kde gaussian n={args.points}",
            lambda: boxes.kde_log_mass(density, Z, discrete, widths),
            lambda: kde.log_density(density, Z, mode="exact"),
        ),
    ]
    for name, box, plain in cases:
        box_s, plain_s = best_of(args.repeat, box), best_of(args.repeat, plain)
        print(
            f"{name:<22} box mass {box_s:7.3f} s  ({args.rows / box_s:>10,.0f} rows/s)   "
            f"plain log-density {plain_s:7.3f} s   ratio {box_s / plain_s:5.2f}"
        )


if __name__ == "__main__":
    main()
