"""gencli.fit refuses an option out of range before any work, in one line naming the Python
parameter, as the command line's types do (which name the flag)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import gencli
from gencli.cli.main import cli
from gencli.errors import FitError

ROWS = np.random.default_rng(0).normal(size=(60, 2))


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"tol": -1}, "tol must be a finite number above 0, not -1"),
        ({"tol": float("nan")}, "tol must be a finite number above 0"),
        ({"reg_covar": -1.0}, "reg_covar must be a finite number 0 or more, not -1.0"),
        ({"max_iter": 0}, "max_iter must be a whole number of at least 1, not 0"),
        ({"n_init": 1.5}, "n_init must be a whole number of at least 1, not 1.5"),
        ({"folds": 1}, "folds must be a whole number of at least 2, not 1"),
        ({"seed": -3}, "seed must be a whole number >= 0"),
        ({"covariance": "ful"}, "covariance must be one of full, diag, tied, spherical, auto"),
        ({"select": "BIC"}, "select must be one of bic, aic, heldout"),
        ({"refit": "no"}, "refit must be True or False"),
    ],
)
def test_out_of_range_options_are_refused_before_any_work(options, said) -> None:
    with pytest.raises(FitError) as info:
        gencli.fit(ROWS, model="gmm", **options)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_numpy_numbers_are_numbers() -> None:
    model = gencli.fit(ROWS, model="gmm", components=np.int64(2), max_iter=np.int64(50),
                       tol=np.float64(1e-3), seed=np.int64(1), validation=0)  # fmt: skip
    assert model.describe()["components"] == 2


def test_the_command_line_names_the_flag(tmp_path) -> None:
    np.savetxt(tmp_path / "d.csv", ROWS, delimiter=",")
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "d.csv"), "--reg-covar", "-1"])
    assert result.exit_code == 2 and "--reg-covar" in result.stderr
