"""Write the sample data sets: three real ones that scikit-learn ships (and iris with gaps) and
two synthetic ones.

Run from the repository root: ``python sample_data/make_data.py``. The output is
deterministic, so the committed CSV files can be checked against a fresh run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

HERE = Path(__file__).resolve().parent


def _write(frame: pd.DataFrame, name: str) -> None:
    frame.to_csv(HERE / name, index=False, lineterminator="\n")
    print(f"wrote {name}: {frame.shape[0]} rows x {frame.shape[1]} columns")


def iris() -> pd.DataFrame:
    """Fisher's iris measurements in cm; the species label is left out (it is not a number)."""
    frame = datasets.load_iris(as_frame=True).data
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return frame


def iris_gaps() -> pd.DataFrame:
    """Ten iris rows with some cells emptied (a seeded 25%), for ``gencli impute``."""
    frame = iris().iloc[::15].reset_index(drop=True)
    rng = np.random.default_rng(16)
    hidden = rng.random(frame.shape) < 0.25
    hidden[hidden.all(axis=1), 0] = False
    return frame.mask(hidden)


def wine_holes() -> pd.DataFrame:
    """The wine table with a seeded 15% of its cells emptied, for ``fit --missing em``."""
    frame = wine()
    rng = np.random.default_rng(17)
    hidden = rng.random(frame.shape) < 0.15
    hidden[hidden.all(axis=1), 0] = False
    return frame.mask(hidden)


def wine() -> pd.DataFrame:
    """Chemical analysis of 178 Italian wines (13 measurements); the cultivar is left out."""
    frame = datasets.load_wine(as_frame=True).data
    frame.columns = [c.replace("/", "_") for c in frame.columns]
    return frame


def digits() -> pd.DataFrame:
    """8x8 images of handwritten digits, 0-16 per pixel; pixels that are 0 in every image are
    left out, since a density over a constant column is infinite."""
    frame = datasets.load_digits(as_frame=True).data.astype(int)
    return frame.loc[:, frame.std() > 0]


def moons() -> pd.DataFrame:
    """Two interleaving half circles with Gaussian noise (seeded): a shape one Gaussian misses."""
    points, _ = datasets.make_moons(n_samples=500, noise=0.1, random_state=0)
    return pd.DataFrame(np.round(points, 6), columns=["x", "y"])


def mixture_parts(parts: int = 4) -> None:
    """20,000 rows from a seeded 3-component Gaussian mixture in 3-D, as Parquet part files
    (a folder, as a distributed job writes them): data for ``--engine dask``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 5.0, 2.0]])
    scales = np.array([[1.0, 0.5, 2.0], [0.7, 1.5, 0.6], [1.2, 1.0, 1.0]])
    labels = rng.choice(3, size=20_000, p=[0.5, 0.3, 0.2])
    rows = np.round(means[labels] + scales[labels] * rng.standard_normal((20_000, 3)), 6)
    folder = HERE / "mixture_parts"
    folder.mkdir(exist_ok=True)
    for i, part in enumerate(np.array_split(rows, parts)):
        table = pa.table({name: part[:, j] for j, name in enumerate("xyz")})
        pq.write_table(table, folder / f"part-{i}.parquet")
    print(f"wrote mixture_parts/: {rows.shape[0]} rows x 3 columns in {parts} Parquet files")


if __name__ == "__main__":
    _write(iris(), "iris.csv")
    _write(iris_gaps(), "iris_gaps.csv")
    _write(wine(), "wine.csv")
    _write(wine_holes(), "wine_holes.csv")
    _write(digits(), "digits.csv")
    _write(moons(), "moons.csv")
    mixture_parts()
