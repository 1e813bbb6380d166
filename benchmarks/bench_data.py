"""Seeded synthetic data sets for the benchmarks, written once and cached by name.

Every file is a Gaussian mixture with a known number of components, written as CSV with a
header and values rounded to six decimals (what real exports look like, and what keeps the
files small). A file is written under a temporary name and renamed, so an interrupted run
never leaves a truncated file that a later run would trust.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture to draw rows from: a seed fixes its parameters and its draws."""

    components: int
    dim: int
    seed: int
    spread: float = 4.0

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means, Cholesky factors of the covariances and weights, all from ``seed``."""
        rng = np.random.default_rng([self.seed, 0])
        means = rng.normal(0.0, self.spread, (self.components, self.dim))
        factors = np.empty((self.components, self.dim, self.dim))
        for k in range(self.components):
            a = rng.normal(0.0, 1.0, (self.dim, self.dim)) / np.sqrt(self.dim)
            factors[k] = np.linalg.cholesky(a @ a.T + 0.3 * np.eye(self.dim))
        weights = rng.dirichlet(np.full(self.components, 5.0))
        return means, factors, weights

    def chunks(self, rows: int, stream: int) -> Iterator[np.ndarray]:
        """Draw ``rows`` rows in chunks; ``stream`` separates e.g. training from query rows."""
        means, factors, weights = self.parameters()
        rng = np.random.default_rng([self.seed, 1, stream])
        left = rows
        while left > 0:
            n = min(left, CHUNK_ROWS)
            label = rng.choice(self.components, size=n, p=weights)
            noise = rng.standard_normal((n, self.dim))
            yield means[label] + np.einsum("nij,nj->ni", factors[label], noise)
            left -= n


def write_csv(path: Path, chunks: Iterator[np.ndarray], dim: int) -> None:
    """Stream chunks into a CSV with header c0, c1, ..., atomically."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{j}" for j in range(dim)]
    schema = pa.schema([(name, pa.float64()) for name in names])
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with pacsv.CSVWriter(str(partial), schema) as writer:
            for block in chunks:
                block = np.round(block, 6)
                columns = [pa.array(block[:, j]) for j in range(dim)]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def ensure(folder: Path, name: str, mixture: Mixture, rows: int, stream: int = 0) -> Path:
    """The path of a data set, drawn and written on first use."""
    m = mixture
    path = folder / f"{name}-{rows}-d{m.dim}-k{m.components}-s{m.seed}-{stream}.csv"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(path, mixture.chunks(rows, stream), mixture.dim)
    return path
