"""A marginal or conditional model is not the fitted model: it carries none of the fit's
figures, says what it was derived from, and refuses what needs the fit's held-out rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gencli
from gencli.density.modelparts import FIT_FIGURES
from gencli.errors import DataError
from gencli.jobs import score_file
from gencli.questions import impute_file, sample_given


@pytest.fixture
def fitted(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)) * [1, 10, 100], columns=["a", "b", "c"])
    frame.to_csv(tmp_path / "d.csv", index=False)
    gencli.fit(frame, model="gmm", components=2, seed=0).save(tmp_path / "m.pkl")
    return tmp_path


def test_derived_models_drop_the_fit_figures_and_say_what_they_are(fitted: Path) -> None:
    model = gencli.load(fitted / "m.pkl")
    assert all(key in model.metadata for key in ("train_mean_log_likelihood", "validation"))
    derived = model.marginal(["a", "c"]).condition({"c": 50.0})
    assert not set(FIT_FIGURES) & set(derived.metadata)
    derived.save(fitted / "derived.pkl")
    shown = subprocess.run(
        [sys.executable, "-m", "gencli", "inspect", str(fitted / "derived.pkl")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "derived    the marginal of a, c; then conditioned on c = 50" in shown
    assert "training mean log-likelihood" not in shown
    flagged = subprocess.run(
        [sys.executable, "-m", "gencli", "score", "derived.pkl", "d.csv", "--flag-below", "0.1",
         "-o", "s.csv"],
        capture_output=True, text=True, cwd=fitted,
    )  # fmt: skip
    assert flagged.returncode == 1 and not (fitted / "s.csv").exists()
    assert "not a marginal or conditional density" in flagged.stderr


def test_the_library_refuses_what_the_command_line_refuses(fitted: Path) -> None:
    with pytest.raises(DataError, match="not a marginal or conditional"):
        score_file(fitted / "m.pkl", fitted / "d.csv", None, flag_below=0.1, given=["b"])
    for draws in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="draws"):
            impute_file(fitted / "m.pkl", fitted / "d.csv", fitted / "o.csv", draws=draws)
        with pytest.raises(DataError, match="draws"):
            gencli.load(fitted / "m.pkl").impute(np.array([[1.0, np.nan, 3.0]]), draws=draws)
    for extra in ({}, {"given": {"a": 1.0}, "given_file": fitted / "d.csv"}):
        with pytest.raises(DataError, match="either"):
            sample_given(fitted / "m.pkl", 5, fitted / "o.csv", **extra)
    assert not (fitted / "o.csv").exists()


def test_imputed_draws_in_small_blocks_are_the_same_rows(
    fitted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filling a chunk in blocks (to bound memory) changes nothing but the draws' stream:
    ids and draw numbers stay in order and every observed cell passes through."""
    from gencli import questions

    gappy = pd.read_csv(fitted / "d.csv")
    gappy.iloc[::3, 1] = np.nan
    gappy.to_csv(fitted / "g.csv", index=False)
    monkeypatch.setattr(questions, "OUTPUT_ROWS", 7)
    impute_file(fitted / "m.pkl", fitted / "g.csv", fitted / "o.csv", draws=3, seed=1)
    out = pd.read_csv(fitted / "o.csv")
    assert list(out["row"]) == list(np.repeat(np.arange(1, 201), 3))
    assert list(out["draw"]) == [1, 2, 3] * 200
    np.testing.assert_array_equal(out[["a", "c"]].to_numpy(), np.repeat(gappy[["a", "c"]], 3, 0))
    assert out["b"].notna().all()


def test_predict_and_predict_proba_in_python_equal_scikit_learn(fitted: Path) -> None:
    model = gencli.load(fitted / "m.pkl")
    frame = pd.read_csv(fitted / "d.csv")[["c", "a", "b"]]  # matched by name
    standardized = ((frame[model.columns] - model.shift) / model.scale).to_numpy()
    expected = model.estimator.predict_proba(standardized)
    np.testing.assert_allclose(model.predict_proba(frame), expected, rtol=1e-9, atol=1e-300)
    np.testing.assert_array_equal(model.predict(frame), np.argmax(expected, axis=1))
    kde = gencli.fit(frame, model="kde", seed=0)
    with pytest.raises(DataError, match="Gaussian mixture"):
        kde.predict_proba(frame)


def test_id_columns_never_repeat_a_model_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(60, 2)), columns=["row", "draw"])
    gencli.fit(frame, model="gmm", components=1, seed=0).save(tmp_path / "m.pkl")
    pd.DataFrame({"row": [0.5], "draw": [np.nan]}).to_csv(tmp_path / "g.csv", index=False)
    impute_file(tmp_path / "m.pkl", tmp_path / "g.csv", tmp_path / "o.csv", draws=2, seed=0)
    assert list(pd.read_csv(tmp_path / "o.csv").columns) == ["row_", "draw_", "row", "draw"]
    pd.DataFrame({"draw": [0.1]}).to_csv(tmp_path / "f.csv", index=False)
    sample_given(tmp_path / "m.pkl", 2, tmp_path / "s.csv", given_file=tmp_path / "f.csv")
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == ["row_", "row", "draw"]
