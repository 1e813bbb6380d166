"""A fit keeps one copy of the data where it can: rows gencli read itself are standardized
in place, rows a caller passed are never touched, and every figure is the same either way.

References: numpy's own moments and SHA-256 of the rows as written, and a fit of the same
rows passed as an array (which is never overwritten).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import gencli
from gencli.density.preprocess import standardize
from gencli.jobs import fit_file


def rows(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal([1.0, -50.0, 300.0], [2.0, 0.5, 40.0], size=(n, 3))


def test_an_array_passed_in_is_never_modified() -> None:
    X = rows(600)
    before = X.copy()
    for model in ("gmm", "kde", "auto"):
        gencli.fit(X, model=model, seed=0)
        np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("validation", [0.0, 0.2])
def test_a_fit_from_a_file_equals_the_fit_of_the_same_array(tmp_path, validation) -> None:
    X = rows()
    path = tmp_path / "rows.npy"
    np.save(path, X)
    from_file = gencli.fit(str(path), model="gmm", components=3, validation=validation, seed=1)
    from_array = gencli.fit(X, model="gmm", components=3, validation=validation, seed=1)
    assert from_file.metadata["data_sha256"] == hashlib.sha256(X.tobytes()).hexdigest()
    assert from_file.metadata["data_sha256"] == from_array.metadata["data_sha256"]
    for key in ("means", "covariances", "weights"):
        np.testing.assert_array_equal(from_file.params[key], from_array.params[key])
    assert (
        from_file.metadata["train_mean_log_likelihood"]
        == (from_array.metadata["train_mean_log_likelihood"])
    )


def test_the_record_describes_the_rows_as_read(tmp_path) -> None:
    X = rows()
    path = tmp_path / "rows.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    record = fit_file(path, tmp_path / "m.pkl", model="gmm", components=2, seed=0)
    summary = record["data_summary"]
    np.testing.assert_allclose([c["mean"] for c in summary], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose([c["std"] for c in summary], X.std(axis=0), rtol=1e-9)
    assert [c["min"] for c in summary] == list(X.min(axis=0))
    assert [c["max"] for c in summary] == list(X.max(axis=0))
    assert [c["kind"] for c in summary] == ["continuous"] * 3


def test_standardizing_in_place_gives_the_same_numbers_and_reuses_the_array() -> None:
    X = rows()
    shift, scale = X.mean(axis=0), X.std(axis=0)
    expected = standardize(X, shift, scale)
    Z = standardize(X, shift, scale, in_place=True)
    assert Z is X
    np.testing.assert_array_equal(Z, expected)


def test_values_near_the_largest_double_are_not_standardized_in_place() -> None:
    X = np.array([[1.7e308, 0.0], [-1.7e308, 1.0], [0.0, 2.0]])
    shift, scale = np.array([-1.0e308, 1.0]), np.array([1.0e308, 1.0])
    Z = standardize(X, shift, scale, in_place=True)
    assert Z is not X  # the differences overflow: X is kept to take them in halves
    assert np.all(np.isfinite(Z)) and Z[0, 0] == pytest.approx(2.7)


def test_the_hash_of_no_rows_is_the_hash_of_no_bytes() -> None:
    from gencli.density.modelparts import data_sha256

    assert data_sha256(np.empty((0, 3))) == hashlib.sha256(b"").hexdigest()
    X = rows(10)
    assert data_sha256(X[::2]) == hashlib.sha256(np.ascontiguousarray(X[::2]).tobytes()).hexdigest()
