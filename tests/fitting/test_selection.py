"""Model selection, held-out validation, repairs and outlier flags, each checked against
an independent computation written here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from scipy.special import logsumexp

import gencli
from gencli.cli.main import cli
from gencli.errors import FitError
from gencli.fitting.selection import parse_components


def three_blobs(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [4.0, 7.0]])
    return np.vstack([rng.normal(c, 0.8, size=(n // 3, 2)) for c in centres]) * [1.0, 50.0]


def test_auto_with_bic_picks_three_well_separated_components() -> None:
    model = gencli.fit(three_blobs(), "gmm", components="auto", select="bic")
    assert model.params["weights"].shape == (3,)
    selection = model.metadata["selection"]
    assert [c["components"] for c in selection["candidates"]] == list(range(1, 11))
    chosen = [c for c in selection["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["components"] == 3
    assert chosen[0]["bic"] == min(c["bic"] for c in selection["candidates"])


def test_heldout_and_aic_criteria_also_find_three() -> None:
    for criterion in ("heldout", "aic"):
        model = gencli.fit(three_blobs(), "gmm", components="1..6", select=criterion)
        assert model.params["weights"].shape == (3,), criterion


def test_bic_matches_its_definition_in_data_units() -> None:
    X = three_blobs(300)
    model = gencli.fit(X, "gmm", components="2..3", validation=0.0)
    candidates = model.metadata["selection"]["candidates"]
    final = model.score_samples(X).sum()
    chosen = next(c for c in candidates if c["chosen"])
    k, d = chosen["components"], 2
    n_params = (k - 1) + k * d + k * d * (d + 1) // 2
    assert chosen["bic"] == pytest.approx(-2 * final + n_params * math.log(len(X)), rel=1e-9)
    assert chosen["aic"] == pytest.approx(-2 * final + 2 * n_params, rel=1e-9)


def test_covariance_auto_searches_all_four_types() -> None:
    model = gencli.fit(three_blobs(300), "gmm", components="2..3", covariance="auto")
    candidates = model.metadata["selection"]["candidates"]
    assert {c["covariance"] for c in candidates} == {"full", "diag", "tied", "spherical"}
    assert len(candidates) == 8


@pytest.mark.parametrize(
    "spec, expected",
    [("auto", list(range(1, 11))), ("3", [3]), ("1..4", [1, 2, 3, 4]), ("2,8,4", [2, 4, 8])],
)
def test_parse_components(spec: str, expected: list[int]) -> None:
    assert parse_components(spec) == expected


@pytest.mark.parametrize("spec", ["0", "4..2", "x", "1..", ""])
def test_parse_components_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_components(spec)


def _reference_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_valid = round(fraction * n)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def test_heldout_numbers_match_scipy_on_the_held_out_rows() -> None:
    rng = np.random.default_rng(3)
    X = rng.multivariate_normal([1.0, -2.0], [[4.0, 1.5], [1.5, 1.0]], size=500)
    model = gencli.fit(X, "gmm", components=1, validation=0.2, refit=False, seed=5)
    train, valid = _reference_split(500, 0.2, 5)
    mean, cov = X[train].mean(0), np.cov(X[train], rowvar=False, bias=True)
    reference = stats.multivariate_normal(mean, cov)
    record = model.metadata["validation"]
    assert (record["train_rows"], record["heldout_rows"]) == (400, 100)
    assert record["refit"] is False
    assert record["heldout_mean_log_likelihood"] == pytest.approx(
        reference.logpdf(X[valid]).mean(), abs=1e-4
    )
    assert record["heldout_bits_per_dimension"] == pytest.approx(
        -reference.logpdf(X[valid]).mean() / (2 * math.log(2)), abs=1e-4
    )
    # without refit the final model is the one fitted on the training rows
    np.testing.assert_allclose(model.score_samples(X[:5]), reference.logpdf(X[:5]), atol=1e-4)


def test_refit_uses_every_row() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 2)) * [2.0, 0.5]
    model = gencli.fit(X, "gmm", components=1, validation=0.2)
    full = stats.multivariate_normal(X.mean(0), np.cov(X, rowvar=False, bias=True))
    np.testing.assert_allclose(model.score_samples(X[:5]), full.logpdf(X[:5]), atol=1e-4)
    assert model.metadata["validation"]["refit"] is True


def _slow_cv_loglik(x: np.ndarray, h: float, folds: list[np.ndarray]) -> float:
    """Mean held-out log-likelihood of a 1-D Gaussian KDE, written out from the formula."""
    total = 0.0
    for test in folds:
        train = np.setdiff1d(np.arange(len(x)), test)
        diffs = (x[test][:, None] - x[train][None, :]) / h
        log_k = -0.5 * diffs**2 - 0.5 * math.log(2 * math.pi) - math.log(h)
        total += float(np.sum(logsumexp(log_k, axis=1) - math.log(len(train))))
    return total / len(x)


def test_cv_bandwidth_lands_within_five_percent_of_a_brute_force_grid() -> None:
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(-2, 0.3, 150), rng.normal(1.5, 1.0, 150)])
    model = gencli.fit(
        x.reshape(-1, 1), "kde", bandwidth="cv", folds=5, validation=0.0, standardize=False
    )
    folds = [test for _, test in KFold(5, shuffle=True, random_state=0).split(x.reshape(-1, 1))]
    grid = np.exp(np.linspace(math.log(0.02), math.log(2.0), 600))
    best = grid[np.argmax([_slow_cv_loglik(x, h, folds) for h in grid])]
    assert model.params["bandwidth"] == pytest.approx(best, rel=0.05)
    assert model.params["bandwidth_rule"] == "cv"
    history = model.metadata["selection"]["candidates"]
    chosen = [c for c in history if c["chosen"]]
    assert len(chosen) == 1
    assert chosen[0]["cv_mean_log_likelihood"] == pytest.approx(
        _slow_cv_loglik(x, model.params["bandwidth"], folds), abs=1e-9
    )


def test_singular_covariance_is_repaired_and_recorded() -> None:
    rng = np.random.default_rng(8)
    a = rng.normal(size=400)
    X = np.column_stack([a, 2 * a + 1, rng.normal(size=400)])  # two columns in a line
    model = gencli.fit(X, "gmm", components=2, reg_covar=0.0, validation=0.0)
    fixes = model.metadata["fixes"]
    assert any("singular" in fix and "reg_covar=1e-06" in fix for fix in fixes), fixes
    assert np.all(np.isfinite(model.score_samples(X)))
    assert model.params["reg_covar"] == pytest.approx(1e-6)


def test_non_convergence_is_retried_with_more_iterations() -> None:
    rng = np.random.default_rng(11)
    X = rng.standard_t(3, size=(400, 3))  # heavy tails: EM with 4 components crawls
    model = gencli.fit(X, "gmm", components=4, max_iter=1, validation=0.0, tol=1e-10)
    fixes = model.metadata["fixes"]
    assert any("not converged after 1 iterations" in fix for fix in fixes), fixes
    assert model.params["max_iter"] > 2


def test_collapsed_component_on_integer_data_is_repaired() -> None:
    rng = np.random.default_rng(9)
    # a column that is constant within each cluster: a full covariance collapses on it
    X = np.vstack(
        [
            np.column_stack([rng.normal(0, 1, 200), np.zeros(200)]),
            np.column_stack([rng.normal(5, 1, 200), np.full(200, 3.0)]),
        ]
    )
    model = gencli.fit(X, "gmm", components=2, validation=0.0)
    assert any("collapsed" in fix for fix in model.metadata["fixes"])
    assert model.params["reg_covar"] >= 1e-3


def test_heldout_selection_needs_heldout_rows() -> None:
    with pytest.raises(FitError, match="select='heldout' needs held-out rows"):
        gencli.fit(three_blobs(90), "gmm", components="1..3", select="heldout", validation=0.0)


def test_flag_below_uses_the_heldout_quantile(tmp_path) -> None:
    rng = np.random.default_rng(10)
    X = rng.normal(size=(500, 2))
    np.savetxt("train.csv", X, delimiter=",", header="a,b", comments="")
    runner = CliRunner()
    args = ["fit", "train.csv", "-k", "1", "--no-refit", "--seed", "2", "-q"]
    assert runner.invoke(cli, args).exit_code == 0
    model = gencli.load("model.pkl")
    _, valid = _reference_split(500, 0.2, 2)
    threshold = np.quantile(model.score_samples(X[valid]), 0.05)
    queries = np.vstack([rng.normal(size=(200, 2)), [[6.0, 6.0], [-7.0, 0.0]]])
    np.savetxt("new.csv", queries, delimiter=",", header="a,b", comments="")
    result = runner.invoke(
        cli, ["score", "model.pkl", "new.csv", "--flag-below", "0.05", "-o", "s.csv"]
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    scores = pd.read_csv("s.csv")
    expected = model.score_samples(queries) < threshold
    np.testing.assert_array_equal(scores["outlier"].to_numpy(), expected)
    assert bool(scores["outlier"].iloc[-1]) and bool(scores["outlier"].iloc[-2])
    assert f"outliers   {expected.sum()} rows below {threshold:.4f}" in result.stdout


def test_flag_below_without_heldout_rows_says_how_to_fix(tmp_path) -> None:
    np.savetxt("t.csv", np.random.default_rng(0).normal(size=(50, 2)), delimiter=",")
    runner = CliRunner()
    runner.invoke(cli, ["fit", "t.csv", "-k", "1", "--validation", "0", "-q"])
    result = runner.invoke(cli, ["score", "model.pkl", "t.csv", "--flag-below", "0.01"])
    assert result.exit_code == 1
    assert "model.pkl" in result.stderr and "--validation" in result.stderr
    assert not any(p.name == "s.csv" for p in tmp_path.iterdir())


def test_cli_shows_candidates_on_stderr_and_the_choice_in_the_summary(tmp_path) -> None:
    np.savetxt("blobs.csv", three_blobs(300), delimiter=",", header="x,y", comments="")
    result = CliRunner().invoke(cli, ["fit", "blobs.csv", "-k", "1..5"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("candidates:")
    assert len([line for line in result.stderr.splitlines() if "BIC" in line]) == 5
    assert "selected   by lowest BIC among 5 candidates" in result.stdout
    assert "Gaussian mixture, 3 components" in result.stdout
    assert "held-out   mean log-likelihood" in result.stdout


def test_cli_rejects_a_bad_components_spec() -> None:
    result = CliRunner().invoke(cli, ["fit", "x.csv", "-k", "4..2"])
    assert result.exit_code == 2 and "runs backwards" in result.stderr


# ----------------------------------------------------------------------------- threads


def test_candidates_on_threads_match_the_same_search_in_turn() -> None:
    X = three_blobs(900, seed=5)
    heard: list[int] = []
    threaded = gencli.fit(
        X,
        components="1..8",
        covariance="auto",
        jobs=2,
        on_candidate=lambda c: heard.append(c["components"]),
    )
    in_turn = gencli.fit(X, components="1..8", covariance="auto", jobs=1)
    a, b = threaded.metadata["selection"]["candidates"], in_turn.metadata["selection"]["candidates"]
    assert [(c["components"], c["covariance"]) for c in a] == [
        (c["components"], c["covariance"]) for c in b
    ]
    for x, y in zip(a, b, strict=True):
        assert x["bic"] == y["bic"] and x["iterations"] == y["iterations"], (x, y)
    np.testing.assert_array_equal(threaded.params["means"], in_turn.params["means"])
    assert heard == [c["components"] for c in b]  # reported in grid order, every one


def test_a_search_leaves_thread_limits_and_warning_filters_as_it_found_them() -> None:
    import warnings

    import sklearn.mixture  # noqa: F401 - so its OpenMP library is in the picture
    from threadpoolctl import ThreadpoolController

    before = [lib["num_threads"] for lib in ThreadpoolController().info()]
    filters = list(warnings.filters)
    rng = np.random.default_rng(11)
    X = rng.standard_t(3, size=(400, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gencli.fit(X, components="2..5", max_iter=2, tol=1e-12, jobs=2, validation=0.0)
    # EM stopped short on every candidate, on worker threads: no warning of scikit-learn's
    # got out (gencli's own repairs and notes are GencliWarnings, issued once, at the end)
    leaked = [w for w in caught if "converge" in str(w.message).lower()]
    assert leaked and all(issubclass(w.category, gencli.GencliWarning) for w in leaked)
    assert all(w.filename == __file__ for w in leaked)
    assert [lib["num_threads"] for lib in ThreadpoolController().info()] == before
    assert list(warnings.filters) == filters


def test_api_refuses_zero_jobs() -> None:
    with pytest.raises(FitError, match="jobs must be -1"):
        gencli.fit(three_blobs(300), components="1..3", jobs=0)


def test_cli_refuses_zero_jobs() -> None:
    np.savetxt("blobs.csv", three_blobs(300), delimiter=",", header="x,y", comments="")
    result = CliRunner().invoke(cli, ["fit", "blobs.csv", "-k", "1..3", "--jobs", "0"])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert message.startswith(
        "Error: Invalid value for '--jobs': 0 candidates at a time cannot run; "
        "use -1 (one per core) or 1+"
    )
    assert not list(Path(".").glob("*.pkl"))


def test_a_search_stopped_midway_leaves_no_fit_running() -> None:
    import threading

    import sklearn.mixture  # noqa: F401 - so its OpenMP library is counted before and after
    from threadpoolctl import ThreadpoolController

    def threads() -> dict[str, int]:
        return {lib["filepath"]: lib["num_threads"] for lib in ThreadpoolController().info()}

    before = threads()

    def stop(candidate: dict) -> None:
        raise KeyboardInterrupt  # as Ctrl-C would, while later candidates are fitting

    with pytest.raises(KeyboardInterrupt):
        gencli.fit(three_blobs(3000), components="1..10", jobs=2, on_candidate=stop)
    assert not [t for t in threading.enumerate() if t.name.startswith("gencli-candidate")]
    assert threads() == before
