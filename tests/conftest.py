"""Shared fixtures: every test runs in its own empty folder, with sample data at hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test writes lands in the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture()
def iris_csv(tmp_path: Path) -> Path:
    return Path(shutil.copy(SAMPLE_DATA / "iris.csv", tmp_path / "iris.csv"))


@pytest.fixture()
def blobs_csv(tmp_path: Path) -> Path:
    """300 rows of a seeded two-cluster 2-D mixture, columns a and b."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([0, 0], 1, (150, 2)), rng.normal([5, 8], [0.5, 2], (150, 2))])
    path = tmp_path / "blobs.csv"
    np.savetxt(path, X, delimiter=",", header="a,b", comments="")
    return path
