"""``fit --weights COLUMN`` as a user runs it: whole-number weights give the model of the
repeated rows (standardization, fit and figures), scaling every weight changes nothing,
the weight column is not modelled, and bad weights are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli

IRIS = Path(__file__).resolve().parents[2] / "sample_data" / "iris.csv"


def weighted_iris(seed: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(IRIS)
    return frame.assign(w=np.random.default_rng(seed).integers(0, 4, len(frame)))


def repeated(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame.index.repeat(frame.w)].drop(columns="w").reset_index(drop=True)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "options",
    [
        {"model": "kde", "bandwidth": 0.3},
        {"model": "gmm", "components": 2},
        {"model": "gmm", "components": 3, "covariance": "diag"},
    ],
    ids=["kde", "gmm-full", "gmm-diag"],
)
def test_whole_number_weights_give_the_model_of_the_repeated_rows(options) -> None:
    frame = weighted_iris()
    weighted = gencli.fit(frame, weights="w", validation=0, seed=0, **options)
    plain = gencli.fit(repeated(frame), validation=0, seed=0, **options)
    assert weighted.columns == plain.columns == list(frame.columns[:4])
    np.testing.assert_allclose(weighted.shift, plain.shift, rtol=1e-13)
    np.testing.assert_allclose(weighted.scale, plain.scale, rtol=1e-13)
    rows = frame.iloc[:, :4].to_numpy() + 0.05
    np.testing.assert_allclose(
        weighted.score_samples(rows), plain.score_samples(rows), rtol=0, atol=1e-8
    )
    assert weighted.metadata["train_mean_log_likelihood"] == pytest.approx(
        plain.metadata["train_mean_log_likelihood"], abs=1e-8
    )
    assert weighted.metadata["weights"]["total"] == frame.w.sum()


def test_scaling_every_weight_changes_nothing_and_held_out_figures_are_weighted() -> None:
    frame = weighted_iris(1).assign(w=lambda f: f.w + 0.5)
    one = gencli.fit(frame, model="gmm", weights="w", seed=0)
    scaled = gencli.fit(frame.assign(w=frame.w * 7.3), model="gmm", weights="w", seed=0)
    assert one.describe() == scaled.describe()
    np.testing.assert_allclose(one.params["means"], scaled.params["means"], atol=1e-10)
    # The held-out figure is the weighted mean of the held-out rows' log-densities under the
    # fit that was measured (without a refit, the model itself; the split is seeded).
    from gencli.density.preprocess import split_rows

    measured = gencli.fit(frame, model="gmm", weights="w", seed=0, refit=False)
    _, valid = split_rows(len(frame), 0.2, 0)
    scores = measured.score_samples(frame.iloc[valid, :4].to_numpy())
    w = frame.w.to_numpy()[valid]
    record = measured.metadata["validation"]
    assert record["heldout_mean_log_likelihood"] == pytest.approx(
        np.sum(w * scores) / np.sum(w), rel=1e-12
    )
    assert abs(record["heldout_mean_log_likelihood"] - scores.mean()) > 1e-3


def test_the_command_line_takes_a_weight_column_and_does_not_model_it(tmp_path) -> None:
    weighted_iris().to_csv(tmp_path / "w.csv", index=False)
    result = run("fit", str(tmp_path / "w.csv"), "--weights", "w", "--columns",
                 "petal_length,petal_width", "-k", "2", "-o", "m.pkl")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "weights    w: total" in result.stdout and "effective rows" in result.stdout
    assert "dropped" in result.stderr  # rows of weight 0
    model = gencli.load(tmp_path / "m.pkl")
    assert model.columns == ["petal_length", "petal_width"]
    assert model.metadata["weights"]["column"] == "w"


@pytest.mark.parametrize(
    ("change", "extra", "said"),
    [
        ({}, ["--weights", "nope"], "no column 'nope'"),
        ({"w": -1.0}, ["--weights", "w"], "finite and non-negative"),
        ({"w": np.nan}, ["--weights", "w"], "missing or infinite"),
        ({"w": 0.0}, ["--weights", "w"], "every weight"),
        ({}, ["--weights", "w", "--missing", "em"], "cannot be combined"),
    ],
)
def test_bad_weights_are_one_line_and_write_nothing(tmp_path, change, extra, said) -> None:
    frame = weighted_iris()
    for column, value in change.items():
        if value == 0.0:
            frame[column] = 0.0
        else:
            frame.loc[5, column] = value
    frame.to_csv(tmp_path / "w.csv", index=False)
    result = run("fit", str(tmp_path / "w.csv"), *extra, "-o", "m.pkl")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv"]


def test_the_report_and_inspect_show_the_weights(tmp_path) -> None:
    frame = weighted_iris().assign(w=lambda f: f.w + 1)
    frame.to_csv(tmp_path / "w.csv", index=False)
    result = run("fit", str(tmp_path / "w.csv"), "--weights", "w", "-k", "2",
                 "--report", "r.md", "-o", "m.pkl")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = (tmp_path / "r.md").read_text()
    assert f"| **row weights** | w: total {frame.w.sum()}" in report
    assert "| w |" not in report  # the weight column is not a modelled column
    unit = frame.w / frame.w.max()
    kish = unit.sum() ** 2 / (unit**2).sum()
    assert f"effective rows {kish:.1f}" in run("inspect", "m.pkl").stdout
