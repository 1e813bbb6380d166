"""Kernel densities with point weights (what conditioning a kernel density produces): every
scoring path against a direct weighted sum, integer weights against repeated points, the
model file's format, and sampling in proportion to the weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from gencli.density.families import kde
from gencli.density.model import DensityModel
from gencli.density.modelfile import load
from gencli.errors import ModelFileError


def direct(points: np.ndarray, weights: np.ndarray, Z: np.ndarray, h: float) -> np.ndarray:
    """log sum_i w_i N(z; p_i, h^2 I) / sum_i w_i, written out."""
    d = points.shape[1]
    u2 = ((Z[:, None, :] - points[None]) ** 2).sum(axis=2) / (h * h)
    log_kernel = -0.5 * u2 - d * np.log(h) - 0.5 * d * np.log(2 * np.pi)
    keep = weights > 0
    return logsumexp(log_kernel[:, keep] + np.log(weights[keep]), axis=1) - np.log(weights.sum())


@pytest.mark.parametrize(
    ("d", "mode"),
    [(d, m) for d in (1, 2, 3, 5) for m in ("exact", "fast")] + [(1, "approx"), (2, "approx")],
)
def test_every_path_sums_the_weights(d: int, mode: str) -> None:
    rng = np.random.default_rng(d)
    points = rng.normal(size=(700, d))
    weights = rng.exponential(size=700)
    weights[::7] = 0.0  # weightless points add nothing
    params = kde.fit(points, bandwidth=0.3) | {"weights": weights}
    Z = rng.normal(size=(200, d)) * 1.3
    got = kde.log_density(params, Z, mode=mode)
    tolerance = {"exact": 1e-9, "fast": 2e-6, "approx": 2e-3}[mode]
    np.testing.assert_allclose(got, direct(points, weights, Z, 0.3), rtol=0, atol=tolerance)


def test_integer_weights_are_repeated_points() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 2))
    counts = rng.integers(1, 4, size=300)
    weighted = kde.fit(points, bandwidth=0.25) | {"weights": counts.astype(float)}
    repeated = kde.fit(np.repeat(points, counts, axis=0), bandwidth=0.25)
    Z = rng.normal(size=(100, 2))
    for mode in ("exact", "fast"):
        np.testing.assert_allclose(
            kde.log_density(weighted, Z, mode=mode),
            kde.log_density(repeated, Z, mode=mode),
            rtol=0,
            atol=2e-6,
        )


def test_repeated_points_with_weights_add_their_weights() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 2))
    points = np.vstack([base] * 5)  # every point five times: merged before summing
    weights = rng.uniform(0.1, 2.0, size=200)
    params = kde.fit(points, bandwidth=0.4) | {"weights": weights}
    Z = rng.normal(size=(300, 2))
    np.testing.assert_allclose(
        kde.log_density(params, Z, mode="exact"), direct(points, weights, Z, 0.4), atol=1e-9
    )


def test_draws_follow_the_weights() -> None:
    points = np.array([[0.0], [100.0]])
    params = kde.fit(points, bandwidth=1.0) | {"weights": np.array([1.0, 3.0])}
    draws = kde.sample(params, 40_000, np.random.default_rng(2))
    share = float(np.mean(draws[:, 0] > 50))
    assert share == pytest.approx(0.75, abs=4 * np.sqrt(0.75 * 0.25 / 40_000))


def test_weights_need_format_2_and_are_checked(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    params = kde.fit(rng.normal(size=(30, 2)), bandwidth=0.5) | {"weights": np.ones(30)}
    model = DensityModel("kde", params, ["a", "b"], np.zeros(2), np.ones(2))
    model.save(tmp_path / "w.pkl")
    plain = pickle.loads((tmp_path / "w.pkl").read_bytes())
    assert plain["format_version"] == 2  # a version-1 reader would ignore the weights
    again = load(tmp_path / "w.pkl")
    Z = rng.normal(size=(5, 2))
    np.testing.assert_array_equal(again.score_samples(Z), model.score_samples(Z))
    for bad in (np.ones(29), -np.ones(30), np.zeros(30), np.full(30, np.nan)):
        with pytest.raises(ModelFileError):
            kde.check_params(params | {"weights": bad})
    plain["format_version"] = 1
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(plain, protocol=4))
    with pytest.raises(ModelFileError, match="point weights"):
        load(tmp_path / "old.pkl")
