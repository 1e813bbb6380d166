"""``fit --missing em`` as a user runs it: rows with gaps kept and used, the same model as an
ordinary fit when nothing is missing, and one-line refusals of what cannot work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli
from gencli.fitting import em_missing

IRIS = Path(__file__).resolve().parents[2] / "sample_data" / "iris.csv"


def with_gaps(fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(IRIS)
    return frame.mask(np.random.default_rng(seed).random(frame.shape) < fraction)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_with_nothing_missing_it_is_the_ordinary_fit() -> None:
    frame = pd.read_csv(IRIS)
    plain = gencli.fit(frame, model="gmm", seed=0)
    latent = gencli.fit(frame, model="gmm", missing="em", seed=0)
    assert plain.describe() == latent.describe()
    np.testing.assert_allclose(latent.params["means"], plain.params["means"], atol=1e-10)
    np.testing.assert_allclose(
        latent.params["covariances"], plain.params["covariances"], atol=1e-10
    )
    for key in ("train_mean_log_likelihood",):
        assert latent.metadata[key] == pytest.approx(plain.metadata[key], abs=1e-10)


def test_rows_with_gaps_are_used_and_the_figures_are_their_observed_densities(tmp_path) -> None:
    frame = with_gaps(0.2)
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    result = run("fit", str(tmp_path / "gaps.csv"), "--missing", "em", "--validation", "0",
                 "-k", "1..3", "-o", "m.pkl")  # fmt: skip
    assert result.exit_code == 0, result.output
    gaps = int(frame.isna().to_numpy().sum())
    assert f"missing    {gaps} cells" in result.stdout
    model = gencli.load(tmp_path / "m.pkl")
    assert model.metadata["rows"] == len(frame)  # no row dropped
    assert model.metadata["missing"]["rows_with_gaps"] == int(frame.isna().any(axis=1).sum())
    # The training figure: each row's density over its observed cells, in data units,
    # computed from the saved parameters (standardized space + the observed Jacobian).
    X = frame.to_numpy()
    Z = (X - model.shift) / model.scale
    observed = ~np.isnan(X)
    per_row = em_missing.observed_log_density(model.params, Z) - observed @ np.log(model.scale)
    assert model.metadata["train_mean_log_likelihood"] == pytest.approx(per_row.mean(), rel=1e-9)
    drawn = run("sample", "m.pkl", "-n", "100", "-o", "s.csv")
    assert drawn.exit_code == 0 and not pd.read_csv(tmp_path / "s.csv").isna().any().any()


def test_em_beats_dropping_rows_and_filling_means_on_held_out_rows() -> None:
    """Scored the same way (each held-out row's observed cells) on rows never seen."""
    frame = with_gaps(0.35, seed=3)
    full = pd.read_csv(IRIS)
    order = np.random.default_rng(1).permutation(len(full))
    train, test = frame.iloc[order[:110]], frame.iloc[order[110:]]
    em = gencli.fit(train, model="gmm", missing="em", components=2, seed=0, validation=0)
    dropped = gencli.fit(train.dropna(), model="gmm", components=2, seed=0, validation=0)
    filled = gencli.fit(train.fillna(train.mean()), model="gmm", components=2, seed=0,
                        validation=0)  # fmt: skip

    def held_out(model) -> float:
        X = test.to_numpy()
        Z = (X - model.shift) / model.scale
        scores = em_missing.observed_log_density(model.params, Z)
        scores -= (~np.isnan(X)) @ np.log(model.scale)
        return float(scores[(~np.isnan(X)).any(axis=1)].mean())

    assert held_out(em) > held_out(dropped)
    assert held_out(em) > held_out(filled) + 0.1


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--model", "kde"], "--missing em needs a Gaussian mixture"),
        (["--dropna"], "contradicts it"),
        (["--discrete", "petal_width"], "--discrete cannot be combined"),
        (["--bounds", "sepal_length=0:"], "--bounds cannot be combined"),
        (["--columns", "empty,sepal_width"], "column 'empty' has no distinct observed value"),
    ],
)
def test_what_cannot_work_is_one_line_and_writes_nothing(tmp_path, extra, said) -> None:
    frame = with_gaps(0.2).assign(empty=np.nan)
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    result = run("fit", str(tmp_path / "gaps.csv"), "--missing", "em", *extra, "-o", "m.pkl")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaps.csv"]


def test_without_missing_em_gaps_are_refused_as_before(tmp_path) -> None:
    with_gaps(0.2).to_csv(tmp_path / "gaps.csv", index=False)
    result = run("fit", str(tmp_path / "gaps.csv"), "-o", "m.pkl")
    assert result.exit_code == 1 and "missing or infinite values" in result.stderr
    assert not (tmp_path / "m.pkl").exists()


def test_the_report_and_inspect_say_how_many_cells_were_latent(tmp_path) -> None:
    frame = with_gaps(0.2)
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    result = run("fit", str(tmp_path / "gaps.csv"), "--missing", "em", "-k", "2",
                 "--report", "r.md", "-o", "m.pkl")  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = int(frame.isna().to_numpy().sum())
    report = (tmp_path / "r.md").read_text()
    assert f"| **missing cells** | {cells} (" in report
    # the data table shows each column's observed cells, not NaN
    assert f"| sepal_length | continuous | {frame.sepal_length.mean():.4g}" in report
    shown = run("inspect", "m.pkl")
    assert f"missing    {cells} cells latent in EM" in shown.stdout
