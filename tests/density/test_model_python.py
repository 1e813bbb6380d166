"""What a notebook user meets on a DensityModel: named samples, and the estimator's units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import gencli


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {"height": rng.normal(170.0, 9.0, 200), "weight": rng.normal(70.0, 12.0, 200)}
    )


def test_samples_come_as_a_frame_with_the_columns_on_request() -> None:
    model = gencli.fit(_frame(), model="gmm", components=1, validation=0)
    rows = model.sample(5, seed=2)
    assert isinstance(rows, np.ndarray) and rows.shape == (5, 2)  # as before
    frame = model.sample(5, seed=2, as_frame=True)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["height", "weight"]
    np.testing.assert_array_equal(frame.to_numpy(), rows)


def test_the_estimator_lives_in_standardized_units(tmp_path: Path) -> None:
    data = _frame()
    model = gencli.fit(data, model="gmm", components=1, validation=0)
    model.save(tmp_path / "m.pkl")
    X = data.to_numpy()[:10]
    # One Gaussian: the data's density is scipy's with the rows' mean and covariance (MLE).
    truth = stats.multivariate_normal(
        data.mean().to_numpy(), np.cov(data.to_numpy(), rowvar=False, bias=True)
    ).logpdf(X)
    for fitted in (model, gencli.load(tmp_path / "m.pkl")):  # rebuilt from the file too
        inner = fitted.standardized_estimator
        assert inner is fitted.estimator  # the old name still answers
        np.testing.assert_allclose(fitted.score_samples(X), truth, rtol=1e-5)
        in_z = inner.score_samples(fitted.to_z(X)) + fitted.log_jacobian
        np.testing.assert_allclose(in_z, truth, rtol=1e-5)
        assert np.all(inner.score_samples(X) < truth - 100)  # raw rows: far off, as documented
