"""The blocked Gaussian arithmetic that scoring and EM share, against scipy, row by row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gencli.density.families import gaussians
from gencli.fitting import em_stats


def _mixture(kind: str, k: int = 3, d: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    if kind == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
    elif kind == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + 0.5 * np.eye(d)
    elif kind == "diag":
        cov = rng.uniform(0.3, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.3, 2.0, size=k)
    weights = rng.uniform(0.2, 1.0, size=k)
    return {
        "covariance_type": kind,
        "weights": weights / weights.sum(),
        "means": rng.normal(scale=2.0, size=(k, d)),
        "covariances": cov,
    }


def _full_covariance(params: dict, j: int) -> np.ndarray:
    kind, cov = params["covariance_type"], params["covariances"]
    d = params["means"].shape[1]
    return {
        "full": lambda: cov[j],
        "tied": lambda: cov,
        "diag": lambda: np.diag(cov[j]),
        "spherical": lambda: cov[j] * np.eye(d),
    }[kind]()


def _scipy_log_density(params: dict, Z: np.ndarray) -> np.ndarray:
    terms = [
        np.log(w) + multivariate_normal(m, _full_covariance(params, j)).logpdf(Z)
        for j, (w, m) in enumerate(zip(params["weights"], params["means"], strict=True))
    ]
    return logsumexp(np.column_stack(terms), axis=1)


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_log_density_equals_scipy_across_block_edges(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _mixture(kind)
    Z = np.random.default_rng(1).normal(scale=3.0, size=(1000, 4))
    expected = _scipy_log_density(params, Z)
    whole = gaussians.log_density(params, Z)
    monkeypatch.setattr(gaussians, "block_rows", lambda components, columns: 37)
    blocked = gaussians.log_density(params, Z)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(blocked, whole)  # the same arithmetic, row by row


def test_rows_beyond_every_component_or_with_a_gap_score_minus_infinity() -> None:
    params = _mixture("full")
    Z = np.array([[0.0, 0.0, 0.0, 0.0], [1e200, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 0.0]])
    got = gaussians.log_density(params, Z)
    assert np.isfinite(got[0]) and got[1] == -np.inf and got[2] == -np.inf
    assert gaussians.log_density(params, np.zeros((0, 4))).shape == (0,)


def test_offsets_are_taken_before_the_precision_factors() -> None:
    """Rows and means near 1e10 with a unit spread: z L - m L was 4e-6 nats off there."""
    params = _mixture("full", k=2, d=3)
    params["means"] = params["means"] + 1e10
    Z = params["means"][0] + np.random.default_rng(2).normal(size=(50, 3))
    expected = _scipy_log_density(params, Z)
    np.testing.assert_allclose(gaussians.log_density(params, Z), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_em_statistics_equal_a_direct_sum_with_scipy_responsibilities(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _mixture(kind, seed=3)
    Z = np.random.default_rng(4).normal(scale=2.0, size=(500, 4))
    monkeypatch.setattr(gaussians, "block_rows", lambda components, columns: 64)
    stats = em_stats.statistics(Z, params)
    terms = np.column_stack(
        [
            np.log(w) + multivariate_normal(m, _full_covariance(params, j)).logpdf(Z)
            for j, (w, m) in enumerate(zip(params["weights"], params["means"], strict=True))
        ]
    )
    resp = np.exp(terms - logsumexp(terms, axis=1, keepdims=True))
    np.testing.assert_allclose(stats.weight, resp.sum(axis=0), rtol=1e-12)
    for j, m in enumerate(params["means"]):
        diff = Z - m
        np.testing.assert_allclose(stats.offset[j], resp[:, j] @ diff, rtol=1e-10, atol=1e-10)
        scatter = (diff * resp[:, j : j + 1]).T @ diff
        if kind in ("diag", "spherical"):
            np.testing.assert_allclose(stats.scatter[j], np.diag(scatter), rtol=1e-10)
        elif kind == "full":
            np.testing.assert_allclose(stats.scatter[j], scatter, rtol=1e-10, atol=1e-10)
    if kind == "tied":
        total = sum(
            (d := Z - m).T @ (d * resp[:, j : j + 1]) for j, m in enumerate(params["means"])
        )
        np.testing.assert_allclose(stats.scatter, total, rtol=1e-10)
    assert stats.log_likelihood == pytest.approx(logsumexp(terms, axis=1).sum(), rel=1e-12)
