"""--model auto: candidates of both families judged by cross-validated held-out likelihood,
and the kernel density whose kernels follow the data's correlations.

References: scipy.stats.gaussian_kde (a full bandwidth matrix), scikit-learn's
GaussianMixture fitted fold by fold, direct kernel sums, numerical integration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import gencli
from gencli.density.families import kde
from gencli.density.model import DensityModel
from gencli.errors import FitError, ModelFileError
from gencli.fitting import cv_candidates
from gencli.fitting.fitter import resolve_model


def correlated(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cov = np.array([[4.0, 1.9], [1.9, 1.0]])  # correlation 0.95, different scales
    return rng.multivariate_normal([10.0, -3.0], cov, size=n)


def rotated_model(X: np.ndarray, h: float) -> DensityModel:
    """A rotated KDE over X in data units, built the way the fit builds it."""
    shift, scale = X.mean(axis=0), X.std(axis=0)
    Z = (X - shift) / scale
    params = kde.fit(Z, bandwidth=h, rotation=kde.whitening(Z))
    return DensityModel("kde", params, ["a", "b"], shift, scale)


def test_rotated_kernels_are_scipys_gaussian_kde() -> None:
    X = correlated(300)
    scott = X.shape[0] ** (-1 / 6)
    model = rotated_model(X, scott)
    queries = correlated(50, seed=1) * 1.3
    reference = stats.gaussian_kde(X.T).logpdf(queries.T)  # covariance x Scott's factor^2
    np.testing.assert_allclose(model.score_samples(queries), reference, rtol=0, atol=1e-9)


def test_a_rotated_density_integrates_to_one_and_samples_follow_it() -> None:
    X = correlated(200)
    model = rotated_model(X, 0.4)
    xs = np.linspace(X[:, 0].min() - 6, X[:, 0].max() + 6, 500)
    ys = np.linspace(X[:, 1].min() - 4, X[:, 1].max() + 4, 500)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    mass = np.exp(model.score_samples(grid)).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert mass == pytest.approx(1.0, abs=2e-3)
    # A draw is a point plus a kernel: covariance = the points' (ddof 0) + the kernel's.
    kernel = 0.4**2 * np.cov(X, rowvar=False)
    expected = np.cov(X, rowvar=False, ddof=0) + kernel
    drawn = model.sample(200_000, seed=3)
    np.testing.assert_allclose(np.cov(drawn, rowvar=False), expected, rtol=0.03, atol=0.01)


def test_a_rotated_model_file_round_trips_and_bad_rotations_are_refused(tmp_path: Path) -> None:
    X = correlated(100)
    model = rotated_model(X, 0.5)
    model.save(tmp_path / "m.pkl")
    again = gencli.load(tmp_path / "m.pkl")
    np.testing.assert_array_equal(again.score_samples(X[:5]), model.score_samples(X[:5]))
    points = model.params["points"]
    for rotation, fragment in [
        (np.zeros((2, 2)), "singular"),
        (np.eye(3), "shape"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "non-finite"),
        (np.eye(2, dtype=np.int64), "not an array of numbers"),
    ]:
        params = dict(model.params, points=points, rotation=rotation)
        with pytest.raises(ModelFileError, match=fragment):
            kde.check_params(params, n_features=2)


def test_collinear_columns_give_no_rotation() -> None:
    X = correlated(100)
    assert kde.whitening(np.column_stack([X, 2 * X[:, 0]])) is None
    assert kde.whitening(X[:, :1]) is None


def test_each_candidates_cv_score_is_the_mean_over_the_same_folds_fitted_directly() -> None:
    from sklearn.mixture import GaussianMixture

    X = correlated(200)
    model = gencli.fit(X, model="auto", validation=0.0, seed=5, bounds="none")
    selection = model.metadata["selection"]
    assert selection["parameter"] == "model" and selection["folds"] == 5
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    jacobian = -float(np.sum(np.log(X.std(axis=0))))
    folds = cv_candidates.make_folds(len(Z), 5, 5)
    records = {
        (c["family"], c.get("components"), c.get("covariance"), c.get("rotated")): c
        for c in selection["candidates"]
    }
    mixture = records[("gmm", 2, "full", None)]
    scores = []
    for fit_rows, scored in folds.pairs:
        gm = GaussianMixture(2, covariance_type="full", reg_covar=1e-6, random_state=5)
        scores.append(gm.fit(Z[fit_rows]).score_samples(Z[scored]) + jacobian)
    assert mixture["cv_mean_log_likelihood"] == pytest.approx(np.mean(np.concatenate(scores)))
    # The per-column KDE at its chosen bandwidth: a direct sum of Gaussian kernels.
    round_kde = records[("kde", None, None, False)]
    h = round_kde["bandwidth"]
    direct = []
    for fit_rows, scored in folds.pairs:
        d2 = ((Z[scored][:, None, :] - Z[fit_rows][None, :, :]) ** 2).sum(axis=2)
        log_kernels = -0.5 * d2 / h**2 - np.log(2 * np.pi * h**2)
        direct.append(logsumexp(log_kernels, axis=1) - np.log(len(fit_rows)) + jacobian)
    assert round_kde["cv_mean_log_likelihood"] == pytest.approx(np.mean(np.concatenate(direct)))


def test_the_winner_has_the_best_score_among_those_scored_on_every_fold() -> None:
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 600)
    ring = np.column_stack([np.cos(angle), np.sin(angle)]) * 5 + rng.normal(0, 0.3, (600, 2))
    model = gencli.fit(ring, model="auto", seed=0)
    candidates = model.metadata["selection"]["candidates"]
    scored = [c for c in candidates if c["status"] == "ok"]
    chosen = [c for c in candidates if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["status"] == "ok"
    assert chosen[0]["cv_mean_log_likelihood"] == max(c["cv_mean_log_likelihood"] for c in scored)
    assert model.family == chosen[0]["family"]
    stopped = [c for c in candidates if c["status"].startswith("stopped")]
    assert stopped, "the race stops mixtures far behind on the first fold"
    # A single Gaussian (K=1) is far worse than the winner on a ring.
    one = next(c for c in candidates if c.get("components") == 1 and c["covariance"] == "full")
    assert one["status"].startswith("stopped") or (
        one["cv_mean_log_likelihood"] < chosen[0]["cv_mean_log_likelihood"] - 0.1
    )


def test_the_search_is_the_same_on_every_run_and_thread_count() -> None:
    X = correlated(300)
    runs = [gencli.fit(X[:150], model="auto", seed=2, jobs=jobs) for jobs in (1, 2)]
    tables = [json.dumps(m.metadata["selection"], sort_keys=True, default=str) for m in runs]
    assert tables[0] == tables[1]


def test_many_rows_use_one_fold_with_a_bounded_number_of_scored_rows() -> None:
    folds = cv_candidates.make_folds(cv_candidates.ALL_FOLDS_ROWS + 30_000, 5, 0)
    assert len(folds.pairs) == 1
    fit_rows, scored = folds.pairs[0]
    assert len(scored) == cv_candidates.SCORED_ROWS and not set(fit_rows) & set(scored)
    assert "1 of 5 folds" in folds.describe()
    small = cv_candidates.make_folds(100, 5, 0)
    held = np.sort(np.concatenate([s for _, s in small.pairs]))
    np.testing.assert_array_equal(held, np.arange(100))  # every row held out exactly once


def test_a_family_option_picks_its_family_and_both_are_refused() -> None:
    assert resolve_model("auto", {"components": 3})[0] == "gmm"
    assert resolve_model("auto", {"bandwidth": "cv"})[0] == "kde"
    family, settings = resolve_model("auto", {})
    assert family == "auto" and settings["covariance"] == "auto" and settings["bandwidth"] == "cv"
    with pytest.raises(FitError, match="options of both families"):
        resolve_model("auto", {"components": 3, "kernel": "tophat"})
    assert resolve_model("gmm", {"bandwidth": 0.3})[0] == "gmm"  # ignored, as it always was


def gencli_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gencli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_explains_the_choice_and_reports_every_candidate(tmp_path: Path) -> None:
    np.savetxt(tmp_path / "d.csv", correlated(300), delimiter=",", header="a,b", comments="")
    result = gencli_run(
        "fit", "d.csv", "--model", "auto", "-o", "m.pkl", "--report", "r.md", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "selected   by 5-fold cross-validation" in result.stdout
    assert "best mixture K=" in result.stdout and "best KDE " in result.stdout
    assert "<- chosen" in result.stdout
    report = (tmp_path / "r.md").read_text()
    assert "| candidate | parameters | CV mean log-lik." in report
    assert gencli.load(tmp_path / "m.pkl").metadata["selection"]["parameter"] == "model"


def test_options_of_both_families_with_auto_are_a_usage_error(tmp_path: Path) -> None:
    np.savetxt(tmp_path / "d.csv", correlated(50), delimiter=",", header="a,b", comments="")
    result = gencli_run(
        "fit",
        "d.csv",
        "--model",
        "auto",
        "-k",
        "2",
        "--kernel",
        "tophat",
        "-o",
        "m.pkl",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--components is for mixtures and --kernel for kernel densities" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "m.pkl").exists()
    picked = gencli_run("fit", "d.csv", "--model", "auto", "-k", "2", "-o", "m.pkl", cwd=tmp_path)
    assert picked.returncode == 0 and "Gaussian mixture, 2 components" in picked.stdout


def test_one_bandwidth_for_columns_of_different_scales_is_said() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(0, 1, 200), rng.normal(0, 500, 200)])
    warned = gencli.fit(X, model="kde", standardize=False).metadata["warnings"]
    assert any("differ 5" in w and "drop --no-standardize" in w for w in warned), warned
    alike = np.column_stack([rng.normal(0, 1, 200), rng.normal(0, 3, 200)])
    quiet = gencli.fit(alike, model="kde", standardize=False).metadata["warnings"]
    assert not any("--no-standardize" in w for w in quiet)
    assert not any("--no-standardize" in w for w in gencli.fit(X, model="kde").metadata["warnings"])


def test_each_folds_rotation_is_made_from_its_fitted_rows_alone() -> None:
    Z = correlated(120)
    Z = (Z - Z.mean(axis=0)) / Z.std(axis=0)
    folds = cv_candidates.make_folds(len(Z), 5, 0)
    spaces = cv_candidates.fold_spaces(Z, folds, True, 0.0)
    assert spaces is not None
    for i, (fitted, _scored, _jacobian) in enumerate(spaces):
        np.testing.assert_allclose(np.cov(fitted, rowvar=False), np.eye(2), atol=1e-10)
        moved = Z.copy()
        moved[folds.pairs[i][1]] *= 50.0  # its held-out rows far off: no change to the fold
        again = cv_candidates.fold_spaces(moved, folds, True, 0.0)
        assert again is not None
        np.testing.assert_array_equal(again[i][0], fitted)
