"""Write the sample data sets: three real ones that scikit-learn ships, and a 2-D synthetic one.

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


if __name__ == "__main__":
    _write(iris(), "iris.csv")
    _write(wine(), "wine.csv")
    _write(digits(), "digits.csv")
    _write(moons(), "moons.csv")
