"""Bounded columns (--bounds): densities over the support that integrate to 1 there, samples
that stay inside, rows outside that score -inf, and every question (marginal, conditional,
imputation) answered over the support. References: scipy's lognormal and logit-normal
densities, numerical integration, and Monte Carlo from the conditional models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import integrate, stats

import gencli
from gencli.cli.main import cli
from gencli.density.bounds import Bounds, parse
from gencli.density.model import DensityModel
from gencli.errors import DataError, FitError, ModelFileError


def one_gaussian(mean: float, var: float) -> dict:
    return {
        "covariance_type": "full",
        "weights": np.array([1.0]),
        "means": np.array([[mean]]),
        "covariances": np.array([[[var]]]),
        "converged": True,
        "n_iter": 1,
        "lower_bound": 0.0,
        "max_iter": 100,
        "n_init": 1,
        "tol": 1e-3,
        "reg_covar": 1e-6,
    }


def bounded_model(lo: float, hi: float, mean=0.3, var=0.5, shift=0.0, scale=1.0):
    return DensityModel(
        "gmm",
        one_gaussian(mean, var),
        ["x"],
        np.array([shift]),
        np.array([scale]),
        bounds=Bounds(np.array([lo]), np.array([hi])),
    )


def positive_data(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A lognormal amount, a share in (0, 1) that rises with it, and an unbounded column."""
    rng = np.random.default_rng(seed)
    amount = np.exp(rng.normal(1.0, 0.8, n))
    share = 1 / (1 + np.exp(-(0.8 * np.log(amount) - 0.5 + rng.normal(0, 0.6, n))))
    other = rng.normal(0, 1, n) + 0.3 * np.log(amount)
    return pd.DataFrame({"amount": amount, "share": share, "other": other})


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------- closed forms


def test_a_log_transformed_gaussian_is_scipys_lognormal_in_any_standardization() -> None:
    x = np.array([1e-6, 0.1, 1.0, 3.0, 40.0])
    for shift, scale in ((0.0, 1.0), (0.7, 2.5)):
        # y = log(x - 2) standardized: z = (y - shift) / scale ~ N(0.3, 0.5)
        model = bounded_model(2.0, math.inf, shift=shift, scale=scale)
        mu, sd = shift + 0.3 * scale, math.sqrt(0.5) * scale
        expected = stats.lognorm(s=sd, scale=math.exp(mu), loc=2.0).logpdf(x + 2.0)
        np.testing.assert_allclose(model.score_samples((x + 2.0)[:, None]), expected, rtol=1e-12)
    upper = bounded_model(-math.inf, 5.0)  # y = -log(5 - x): 5 - x is lognormal(-y)
    expected = stats.lognorm(s=math.sqrt(0.5), scale=math.exp(-0.3)).logpdf(5.0 - x)
    np.testing.assert_allclose(upper.score_samples((5.0 - (5.0 - x))[:, None]), expected)


def test_a_logit_transformed_gaussian_is_the_logit_normal_density() -> None:
    model = bounded_model(2.0, 5.0, mean=-0.4, var=1.7)
    x = np.array([2.001, 2.5, 3.5, 4.9, 4.99999])
    u = (x - 2.0) / 3.0
    y = np.log(u / (1 - u))
    expected = stats.norm(-0.4, math.sqrt(1.7)).logpdf(y) - np.log(u * (1 - u)) - math.log(3.0)
    np.testing.assert_allclose(model.score_samples(x[:, None]), expected, rtol=1e-9)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, math.inf), (-math.inf, 1.0), (2.0, 5.0)])
def test_every_transform_integrates_to_one_and_rows_outside_score_minus_inf(lo, hi) -> None:
    model = bounded_model(lo, hi, mean=0.2, var=2.0)
    a = lo if math.isfinite(lo) else hi - 1e4
    b = hi if math.isfinite(hi) else lo + 1e4
    total, error = integrate.quad(
        lambda t: math.exp(model.score_samples(np.array([[t]]))[0]),
        a,
        b,
        limit=500,
        points=[a + 1e-3, (a + b) / 2, b - 1e-3] if b - a < 100 else [a + 1, a + 10],
    )
    assert total == pytest.approx(1.0, abs=1e-6), error
    off = [v for v in (lo, hi, lo - 1, hi + 1) if math.isfinite(v)]
    assert np.all(model.score_samples(np.array(off)[:, None]) == -np.inf)


def test_a_fitted_2d_density_integrates_to_one_over_its_support() -> None:
    data = positive_data(300)[["amount", "share"]]
    # Integrate in the transformed coordinates (amount = e^s, share = expit(v)), where the
    # integrand is smooth: d amount = e^s ds, d share = share (1 - share) dv (Simpson).
    s = np.linspace(-7.0, 8.0, 401)
    v = np.linspace(-14.0, 14.0, 401)
    S, V = np.meshgrid(s, v, indexing="ij")
    amount, share = np.exp(S), 1 / (1 + np.exp(-V))
    rows = np.column_stack([amount.ravel(), share.ravel()])
    for family in ("gmm", "kde"):
        model = gencli.fit(data, model=family, bounds="amount=0:,share=0:1", seed=0)
        density = np.exp(model.score_samples(rows)).reshape(S.shape)
        integrand = density * amount * share * (1 - share)
        total = integrate.simpson(integrate.simpson(integrand, x=v, axis=1), x=s)
        assert total == pytest.approx(1.0, abs=1e-4), family


# --------------------------------------------------------------------------- samples


def test_samples_stay_strictly_inside_even_from_a_very_wide_model() -> None:
    wide = bounded_model(0.0, 1.0, mean=0.0, var=4e4)  # most mass rounds to 0 or 1
    drawn = wide.sample(20_000, seed=1)[:, 0]
    assert np.all((drawn > 0.0) & (drawn < 1.0))
    assert np.all(np.isfinite(wide.score_samples(drawn[:, None])))
    positive = bounded_model(0.0, math.inf, mean=-500.0, var=1e4)  # e^-900 underflows
    assert np.all(positive.sample(5_000, seed=2) > 0.0)


def test_sampled_proportions_follow_the_bounded_density() -> None:
    model = bounded_model(2.0, 5.0, mean=0.5, var=0.8)
    drawn = model.sample(200_000, seed=3)[:, 0]
    u = (drawn - 2.0) / 3.0
    y = np.log(u / (1 - u))
    assert stats.kstest(y, stats.norm(0.5, math.sqrt(0.8)).cdf).pvalue > 1e-3


def test_a_fit_with_bounds_keeps_iris_samples_positive_and_scores_better_held_out() -> None:
    frame = pd.read_csv(Path(__file__).resolve().parents[2] / "sample_data" / "iris.csv")
    plain = gencli.fit(frame, model="gmm", seed=0)
    bounded = gencli.fit(frame, model="gmm", bounds="auto", seed=0)
    assert [b["column"] for b in bounded.metadata["bounds"]] == list(frame.columns)
    assert np.all(bounded.sample(50_000, seed=0) > 0)
    assert np.any(plain.sample(50_000, seed=0) <= 0)  # what the issue saw
    assert bounded.metadata["validation"]["heldout_rows"] == 30


def test_bounds_improve_held_out_likelihood_on_skewed_positive_data() -> None:
    data = positive_data(1_000, seed=4)
    train, test = data.iloc[:800], data.iloc[800:]
    plain = gencli.fit(train, model="gmm", components=1, seed=0)
    bounded = gencli.fit(train, model="gmm", components=1, bounds="auto,share=0:1", seed=0)
    gain = bounded.score_samples(test).mean() - plain.score_samples(test).mean()
    assert gain > 0.5  # one lognormal/logit-normal vs one Gaussian: a large, true gain


# --------------------------------------------------------------------------- questions


def fitted() -> DensityModel:
    return gencli.fit(positive_data(400), model="gmm", components=2, bounds="amount=0:,share=0:1")


def test_marginals_and_conditionals_keep_the_bounds_and_integrate_to_one() -> None:
    model = fitted()
    share = model.marginal(["share"])
    assert share.bounds is not None and share.bounds.upper[0] == 1.0
    total, _ = integrate.quad(
        lambda t: math.exp(share.score_samples(np.array([[t]]))[0]), 0, 1, limit=200
    )
    assert total == pytest.approx(1.0, abs=1e-6)
    conditional = model.condition({"other": 0.4, "amount": 3.0})
    total, _ = integrate.quad(
        lambda t: math.exp(conditional.score_samples(np.array([[t]]))[0]), 0, 1, limit=200
    )
    assert total == pytest.approx(1.0, abs=1e-6)
    # Bayes: p(share | amount, other) = p(amount, share, other) / p(amount, other)
    rows = np.array([[3.0, s, 0.4] for s in (0.1, 0.5, 0.9)])
    joint = model.score_samples(rows)
    given = model.marginal(["amount", "other"]).score_samples(np.array([[3.0, 0.4]]))
    np.testing.assert_allclose(
        conditional.score_samples(rows[:, [1]]), joint - given, rtol=1e-10, atol=1e-10
    )
    with pytest.raises(DataError, match="outside the model's bounds"):
        model.condition({"amount": -1.0})


def test_imputed_means_are_conditional_means_in_data_units() -> None:
    model = fitted()
    row = np.array([[np.nan, np.nan, 0.4]])
    filled = model.impute(row)[0]
    conditional = model.condition({"other": 0.4})
    amount = conditional.marginal(["amount"])
    share = conditional.marginal(["share"])

    def mean(m, a, b):
        return integrate.quad(
            lambda t: t * math.exp(m.score_samples(np.array([[t]]))[0]), a, b, limit=400
        )[0]

    assert filled[0] == pytest.approx(mean(amount, 0, 500), rel=1e-6)
    assert filled[1] == pytest.approx(mean(share, 0, 1), rel=1e-6)
    draws = model.impute(row, draws=2_000, seed=0)
    assert np.all(draws[:, 0] > 0) and np.all((draws[:, 1] > 0) & (draws[:, 1] < 1))


# --------------------------------------------------------------------------- files, errors


def test_the_model_file_keeps_the_bounds_and_an_older_format_cannot_claim_them(tmp_path) -> None:
    model = fitted()
    model.save(tmp_path / "b.pkl")
    loaded = gencli.load(tmp_path / "b.pkl")
    np.testing.assert_array_equal(loaded.bounds.lower, model.bounds.lower)
    rows = positive_data(20, seed=9)
    np.testing.assert_array_equal(loaded.score_samples(rows), model.score_samples(rows))
    plain = model.to_plain()
    assert plain["format_version"] == 3
    from gencli.density.fileformat import write

    plain["format_version"] = 2
    write(plain, tmp_path / "old.pkl")
    with pytest.raises(ModelFileError, match="bounds"):
        gencli.load(tmp_path / "old.pkl")
    for bad in ({"amount": [1.0, 0.5]}, {"nope": [0.0, None]}, {"amount": [None, None]}):
        plain = model.to_plain()
        plain["bounds"] = bad
        write(plain, tmp_path / "bad.pkl")
        with pytest.raises(ModelFileError, match="bounds"):
            gencli.load(tmp_path / "bad.pkl")


def test_bounds_are_parsed_as_written() -> None:
    assert parse("income=0:,share=0:1") == (
        False,
        {"income": (0.0, math.inf), "share": (0.0, 1.0)},
    )
    assert parse(["auto", "x=:5"]) == (True, {"x": (-math.inf, 5.0)})
    assert parse({"x": (None, 2)}) == (False, {"x": (-math.inf, 2.0)})
    for bad, said in (
        ("income", "not COLUMN=LO:HI"),
        ("x=a:1", "not a number"),
        ("x=2:1", "not below"),
        ("x=:", "gives no bound"),
    ):
        with pytest.raises(FitError, match=said):
            parse(bad)


def write_csv(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("bounds", "said"),
    [
        ("amount=1:", "row 1, column 'amount'"),  # values at or below 1
        ("share=0:0.5", "outside the bounds"),
        ("nope=0:", "no column 'nope'"),
        ("amount=0", "not COLUMN=LO:HI"),
        ("count=0.5:", "whole-number bounds"),
    ],
)
def test_bad_bounds_are_one_line_and_write_nothing(tmp_path, bounds, said) -> None:
    frame = positive_data(50)
    frame["count"] = np.arange(50) % 3
    data = write_csv(tmp_path / "d.csv", frame.assign(amount=np.r_[0.5, frame.amount[1:]]))
    result = run("fit", data, "--bounds", bounds, "-o", "m.pkl")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_a_training_value_on_a_bound_is_refused_with_what_to_do(tmp_path) -> None:
    frame = positive_data(50)
    frame.loc[7, "amount"] = 0.0
    data = write_csv(tmp_path / "d.csv", frame)
    result = run("fit", data, "--bounds", "amount=0:", "-o", "m.pkl")
    assert result.exit_code == 1
    assert "row 8, column 'amount': 0 lies on the bound" in result.stderr
    assert "move the bound" in result.stderr
    auto = run("fit", data, "--bounds", "auto", "-o", "m.pkl")  # auto leaves it open
    assert auto.exit_code == 0, auto.output
    assert "amount take" in auto.stderr and "left unbounded" in auto.stderr


def test_the_command_line_fits_scores_and_samples_over_the_support(tmp_path) -> None:
    data = write_csv(tmp_path / "d.csv", positive_data(300))
    fit = run("fit", data, "--bounds", "auto", "--bounds", "share=0:1", "-o", "m.pkl")
    assert fit.exit_code == 0, fit.output
    assert "bounds     amount=0: (log), share=0:1 (logit)" in fit.stdout
    inspect = run("inspect", "m.pkl")
    assert "bounds     amount=0:, share=0:1" in inspect.stdout
    sample = run("sample", "m.pkl", "-n", "5000", "-o", "s.csv")
    assert sample.exit_code == 0, sample.output
    drawn = pd.read_csv(tmp_path / "s.csv")
    assert (drawn.amount > 0).all() and ((drawn.share > 0) & (drawn.share < 1)).all()
    outside = positive_data(4, seed=5)
    outside.loc[1, "share"] = 1.5
    outside.loc[2, "amount"] = -2.0
    score = run("score", "m.pkl", write_csv(tmp_path / "new.csv", outside), "-o", "s.txt")
    assert score.exit_code == 0, score.output
    values = np.loadtxt(tmp_path / "s.txt", skiprows=1)
    assert np.isinf(values[[1, 2]]).all() and np.isfinite(values[[0, 3]]).all()
    assert "2 rows scored -inf" in score.stderr + score.stdout


# --------------------------------------------------------------------------- whole numbers


def counts_and_amounts(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    count = rng.poisson(2.0, n).astype(float)
    return pd.DataFrame({"count": count, "amount": np.exp(rng.normal(0.3 * count, 0.5))})


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_a_bounded_count_sums_and_integrates_to_one_and_samples_stay_in_range(family) -> None:
    options = {"covariance": "diag"} if family == "gmm" else {}
    data = counts_and_amounts()
    model = gencli.fit(data, model=family, bounds="auto", discrete="auto", seed=0, **options)
    assert model.metadata["bounds"][0] == {
        "column": "count",
        "lower": 0.0,
        "upper": None,
        "transform": "log",
    }
    s = np.linspace(-8.0, 8.0, 401)
    amount = np.exp(s)
    total = sum(
        integrate.simpson(
            np.exp(model.score_samples(np.column_stack([np.full(s.size, k), amount]))) * amount,
            x=s,
        )
        for k in range(60)
    )
    assert total == pytest.approx(1.0, abs=1e-4)
    assert model.score_samples(np.array([[-1.0, 1.0]]))[0] == -np.inf
    drawn = model.sample(50_000, seed=1)
    assert drawn[:, 0].min() == 0.0 and np.all(drawn[:, 0] == np.floor(drawn[:, 0]))
    # the count given an amount: a distribution over 0, 1, 2, ... that sums to 1, whose
    # mean is what imputation gives
    given = model.condition({"amount": 2.0})
    k = np.arange(20_000.0)[:, None]
    probabilities = np.exp(given.score_samples(k))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
    filled = model.impute(np.array([[np.nan, 2.0]]))[0, 0]
    assert filled == pytest.approx(float(np.sum(k[:, 0] * probabilities)), rel=1e-9)
    amount_given = model.condition({"count": 0.0})
    area, _ = integrate.quad(
        lambda t: math.exp(amount_given.score_samples(np.array([[t]]))[0]),
        0,
        300,
        points=[0.01, 1, 5],
        limit=400,
    )
    assert area == pytest.approx(1.0, abs=1e-7)


def test_a_two_sided_count_stays_in_its_range_like_digit_pixels() -> None:
    rng = np.random.default_rng(3)
    pixels = np.clip(np.round(rng.normal([[2.0, 14.0]], 6.0, size=(500, 2))), 0, 16)
    frame = pd.DataFrame(pixels, columns=["p0", "p1"])
    plain = gencli.fit(frame, model="gmm", covariance="diag", discrete="auto", seed=0)
    bounded = gencli.fit(
        frame, model="gmm", covariance="diag", discrete="auto", bounds="p0=0:16,p1=0:16", seed=0
    )
    assert plain.sample(20_000, seed=0).min() < 0  # what the issue saw on digits
    drawn = bounded.sample(20_000, seed=0)
    assert drawn.min() == 0.0 and drawn.max() == 16.0
    grid = np.array([[a, b] for a in range(17) for b in range(17)], dtype=float)
    assert np.exp(bounded.score_samples(grid)).sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(bounded.score_samples(np.array([[17.0, 3.0], [3.0, -1.0]])) == -np.inf)


@pytest.mark.parametrize(
    "extra", [["--bounds", "amount=0:"], ["--weights", "other"], ["--missing", "em"]]
)
def test_the_dask_engine_refuses_what_it_cannot_do_yet_before_starting(tmp_path, extra) -> None:
    data = write_csv(tmp_path / "d.csv", positive_data(30))
    result = run("fit", data, "--engine", "dask", "--workers", "1", *extra, "-o", "m.pkl")
    assert result.exit_code == 1, result.output
    assert "not available on --engine dask yet" in result.stderr
    assert "embedded cluster" not in result.stderr  # refused before any cluster started
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_auto_bounds_counts_below_minus_one_so_a_new_zero_is_not_minus_inf() -> None:
    """A whole-number column with many values (cancer deaths: 1..360 in training, a 0 in
    new rows) gets log(x + 1); a positive fractional column gets log(x)."""
    rng = np.random.default_rng(7)
    deaths = rng.integers(1, 360, 200).astype(float)
    frame = pd.DataFrame({"deaths": deaths, "rate": np.exp(rng.normal(0, 1, 200))})
    model = gencli.fit(frame, model="gmm", components=1, bounds="auto", seed=0)
    lower = {b["column"]: b["lower"] for b in model.metadata["bounds"]}
    assert lower == {"deaths": -1.0, "rate": 0.0}
    assert np.isfinite(model.score_samples(np.array([[0.0, 1.0]])))[0]
    assert model.score_samples(np.array([[-1.0, 1.0]]))[0] == -np.inf
