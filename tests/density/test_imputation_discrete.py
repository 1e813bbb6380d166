"""Imputation and component probabilities with whole-number (discrete) columns.

A discrete column is a box [v, v + 1) of the dequantized density. References: the model's
own joint scores (the box probabilities of ``gencli.density.families.boxes``, checked
against numerical integration in test_boxes.py), summed over the integers or integrated
over a fine grid of the continuous column; one-component models scored one by one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import gencli
from gencli.density import imputation
from gencli.density.model import DensityModel

FITS = {
    "gmm full": {"model": "gmm", "components": 2, "covariance": "full"},
    "gmm tied": {"model": "gmm", "components": 2, "covariance": "tied"},
    "gmm diag": {"model": "gmm", "components": 3, "covariance": "diag"},
    "gmm spherical": {"model": "gmm", "components": 2, "covariance": "spherical"},
    "kde": {"model": "kde", "bandwidth": "scott"},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """x continuous, c whole numbers 0..5 that x depends on, y continuous."""
    rng = np.random.default_rng(0)
    c = rng.integers(0, 6, 240)
    x = 2.0 * c + rng.normal(0, 1.5, 240) + 10
    return pd.DataFrame({"x": x, "c": c.astype(float), "y": rng.normal(0, 1, 240) + 0.3 * x})


@pytest.fixture(scope="module")
def models(frame: pd.DataFrame) -> dict[str, DensityModel]:
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, options in FITS.items():
            out[name] = gencli.fit(frame, seed=0, discrete="auto", **options)
            assert out[name].discrete == [1]
    return out


@pytest.mark.parametrize("name", FITS)
def test_a_missing_whole_number_gets_its_conditional_mean(
    models: dict[str, DensityModel], name: str
) -> None:
    model = models[name]
    X = np.array([[14.0, np.nan, 4.5], [9.0, np.nan, 2.0], [30.0, np.nan, 9.0]])
    got = imputation.fill(model, X)[:, 1]
    values = np.arange(-40, 50)
    for row, value in zip(X, got, strict=True):
        grid = np.column_stack([np.full(values.size, row[0]), values, np.full(values.size, row[2])])
        mass = np.exp(model.score_samples(grid))  # P(c = v, x, y) per v
        assert value == pytest.approx((values * mass).sum() / mass.sum(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", FITS)
def test_a_missing_continuous_cell_given_a_box_gets_its_conditional_mean(
    models: dict[str, DensityModel], name: str
) -> None:
    model = models[name]
    X = np.array([[np.nan, 3.0, 4.0], [np.nan, 0.0, 3.0], [np.nan, 5.0, np.nan]])
    got = imputation.fill(model, X)
    xs = np.linspace(-25.0, 55.0, 8_001)
    ys = np.linspace(-15.0, 30.0, 451)
    for row, filled in zip(X, got, strict=True):
        if np.isnan(row[2]):  # x and y both missing: integrate over the plane
            gx, gy = np.meshgrid(xs[::20], ys, indexing="ij")  # steps of 0.2 and 0.1
            grid = np.column_stack([gx.ravel(), np.full(gx.size, row[1]), gy.ravel()])
            p = np.exp(model.score_samples(grid))
            expected = [(grid[:, 0] * p).sum() / p.sum(), (grid[:, 2] * p).sum() / p.sum()]
            np.testing.assert_allclose(filled[[0, 2]], expected, rtol=1e-6)
            continue
        grid = np.column_stack([xs, np.full(xs.size, row[1]), np.full(xs.size, row[2])])
        p = np.exp(model.score_samples(grid))
        assert filled[0] == pytest.approx((xs * p).sum() / p.sum(), rel=1e-9)
        assert filled[1:] == pytest.approx(row[1:])


@pytest.mark.parametrize("name", ["gmm full", "gmm diag", "kde"])
def test_draws_are_whole_numbers_with_the_conditional_moments(
    models: dict[str, DensityModel], name: str
) -> None:
    model = models[name]
    mean = imputation.fill(model, np.array([[14.0, np.nan, 4.5]]))[0, 1]
    draws = imputation.fill(
        model, np.array([[14.0, np.nan, 4.5]]), draws=20_000, rng=np.random.default_rng(1)
    )
    assert np.array_equal(draws[:, 1], np.floor(draws[:, 1]))
    assert np.all(draws[:, [0, 2]] == [14.0, 4.5])
    assert draws[:, 1].mean() == pytest.approx(mean, abs=4 * draws[:, 1].std() / np.sqrt(20_000))
    boxed = imputation.fill(
        model, np.array([[np.nan, 3.0, 4.0]]), draws=20_000, rng=np.random.default_rng(2)
    )
    expected = imputation.fill(model, np.array([[np.nan, 3.0, 4.0]]))[0, 0]
    spread = boxed[:, 0].std() / np.sqrt(20_000)
    assert boxed[:, 0].mean() == pytest.approx(expected, abs=4 * spread)


@pytest.mark.parametrize("name", ["gmm full", "gmm diag", "gmm spherical"])
def test_component_probabilities_count_the_boxes(
    models: dict[str, DensityModel], name: str, frame: pd.DataFrame
) -> None:
    model = models[name]
    X = frame.to_numpy()[:20]
    got = np.exp(imputation.component_log_probabilities(model, X))
    params = model.params
    joint = []
    for k, weight in enumerate(params["weights"]):
        one = dict(params, weights=np.ones(1), means=params["means"][k : k + 1])
        if params["covariance_type"] != "tied":
            one["covariances"] = params["covariances"][k : k + 1]
        alone = DensityModel("gmm", one, model.columns, model.shift, model.scale, discrete=[1])
        joint.append(weight * np.exp(alone.score_samples(X)))
    expected = np.array(joint).T / np.sum(joint, axis=0)[:, None]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-300)


def test_component_picks_equal_a_direct_search() -> None:
    from gencli.density.imputation import _pick

    rng = np.random.default_rng(4)
    resp = rng.dirichlet(np.ones(7), size=300)
    u = rng.random((300, 50))
    cumulative = np.cumsum(resp, axis=1)
    cumulative[:, -1] = 1.0  # the last component takes what rounding leaves
    direct = [[int(np.argmax(c > v)) for v in row] for c, row in zip(cumulative, u, strict=True)]
    np.testing.assert_array_equal(_pick(resp, u), direct)
