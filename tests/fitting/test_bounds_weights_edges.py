"""Edges of bounds, weights and the support choice found in review: figures in one unit on
both supports, weights on any scale, learned means in the data's units, bounds too far to
resolve, and what the user is told."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import gencli
from gencli.errors import FitError


def quiet_fit(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gencli.fit(data, seed=0, **options)


def test_a_bounded_count_cross_validates_in_the_same_units_as_its_held_out_figure() -> None:
    """Candidates score t(x + U); without the discrete column's Jacobian their CV figure
    was 2 nats/row above the held-out box probabilities for counts near 8."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"k": rng.poisson(8, 500).astype(float), "x": rng.normal(0, 1, 500)})
    for bounds in ("auto", "none"):
        model = quiet_fit(frame, bounds=bounds, folds=3)
        chosen = next(c for c in model.metadata["selection"]["candidates"] if c["chosen"])
        heldout = model.metadata["validation"]["heldout_mean_log_likelihood"]
        assert abs(chosen["cv_mean_log_likelihood"] - heldout) < 0.4, (bounds, chosen, heldout)


@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1e100, 1e300])
def test_weights_on_any_scale_give_the_same_model(scale) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    w = rng.random(200) + 0.1
    base = quiet_fit(X, model="gmm", components=2, weights=w)
    scaled = quiet_fit(X, model="gmm", components=2, weights=w * scale)
    np.testing.assert_allclose(scaled.score_samples(X), base.score_samples(X), atol=1e-10)
    assert scaled.metadata["weights"]["total"] == pytest.approx(w.sum() * scale)


def test_a_few_dominant_weights_are_said() -> None:
    X = np.random.default_rng(2).normal(size=(300, 2))
    w = np.ones(300)
    w[0] = 1e12
    model = quiet_fit(X, model="gmm", components=1, weights=w)
    assert any("effective rows" in line for line in model.metadata["warnings"])


def test_estimator_means_of_bounded_columns_are_means_in_data_units() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": np.exp(rng.normal(1.0, 0.5, 400))})
    est = gencli.GaussianMixtureDensity(components=1, bounds="a=0:", seed=0).fit(frame)
    model = est.model_
    mu = model.params["means"][0, 0] * model.scale[0] + model.shift[0]
    var = np.asarray(model.params["covariances"]).reshape(-1)[0] * model.scale[0] ** 2
    assert est.means_[0, 0] == pytest.approx(math.exp(mu + var / 2), rel=1e-12)  # lognormal
    assert est.transformed_columns_ == ["a"]


def test_a_bound_too_far_to_resolve_is_refused() -> None:
    frame = pd.DataFrame({"a": np.random.default_rng(4).normal(size=100)})
    with pytest.raises(FitError, match="can no longer tell them apart"):
        gencli.fit(frame, model="gmm", components=1, bounds="a=-1e17:")


def test_the_default_says_when_it_bounded_columns_itself() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"income": np.exp(rng.normal(1, 0.9, 120)), "z": rng.normal(size=120)})
    model = quiet_fit(frame)
    assert model.bounds is not None
    assert any("--model auto bounded income=0:" in line for line in model.metadata["warnings"])


def test_missing_em_takes_bounds_none() -> None:
    frame = pd.DataFrame(np.random.default_rng(6).normal(size=(80, 2)), columns=["a", "b"])
    frame.iloc[::7, 0] = np.nan
    model = quiet_fit(frame, model="gmm", components=1, missing="em", bounds="none")
    assert model.metadata["missing"]["cells_missing"] == frame.isna().to_numpy().sum()
