"""Real data sets for the density-quality benchmark, all loaded offline.

Every data set comes from a loader bundled with scikit-learn (``sklearn.datasets.load_*``)
or statsmodels (``statsmodels.api.datasets.<name>.load_pandas()``); nothing is downloaded.
Each loader returns the numeric table the benchmark fits, and says which columns it left
out and why. The rules, applied the same way everywhere:

- non-numeric columns (names, codes) are left out;
- the target/endog column is left out only when it is a class label (iris species, wine
  cultivar, tumour diagnosis, digit, a binary or multinomial outcome); a continuous or
  count outcome is a measurement like any other and stays in;
- row identifiers are left out, and so are columns missing in every row; rows with a missing
  value are then dropped;
- columns constant over every row are left out (a density over a constant is infinite);
- a data set needs at least ``MIN_ROWS`` complete rows, so that the 20% held out has three.

A column is **discrete** when every value is an integer and it has at most
``DISCRETE_MAX_VALUES`` distinct values: a density over such a column is unbounded (a
narrow kernel or component on a repeated value scores without limit), so data sets with
discrete columns are reported apart from the continuous ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_ROWS = 15
DISCRETE_MAX_VALUES = 20
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Dataset:
    """A numeric table and where it came from."""

    name: str
    source: str
    frame: pd.DataFrame
    dropped: str  # which columns were left out, and why ("" when none)

    @property
    def discrete(self) -> list[str]:
        return discrete_columns(self.frame)

    @property
    def kind(self) -> str:
        return "discrete" if self.discrete else "continuous"


def discrete_columns(frame: pd.DataFrame) -> list[str]:
    """Columns whose values are all integers and take at most DISCRETE_MAX_VALUES values."""
    found = []
    for name in frame.columns:
        values = frame[name].to_numpy(dtype=float)
        if np.all(values == np.round(values)) and len(np.unique(values)) <= DISCRETE_MAX_VALUES:
            found.append(str(name))
    return found


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded 80/20 split of the rows: (train, test), each in its original row order."""
    n = len(frame)
    n_test = max(1, round(TEST_FRACTION * n))
    order = np.random.default_rng(seed).permutation(n)
    test_rows = np.sort(order[:n_test])
    train_rows = np.sort(order[n_test:])
    return frame.iloc[train_rows], frame.iloc[test_rows]


# --- loaders: each returns (frame, source, what was dropped) -------------------------------


def _sklearn(name: str, *, drop_label: str = "", **options: object) -> Callable[[], tuple]:
    def load() -> tuple[pd.DataFrame, str, str]:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True, **options)
        frame = bunch.data
        if not drop_label:
            frame = pd.concat([bunch.data, bunch.target], axis=1)
        extra = ", ".join(f"{k}={v}" for k, v in options.items())
        source = f"sklearn.datasets.load_{name}({extra})"
        return frame, source, f"target ({drop_label})" if drop_label else ""

    return load


def _statsmodels(name: str, *, drop: dict[str, str] | None = None) -> Callable[[], tuple]:
    def load() -> tuple[pd.DataFrame, str, str]:
        import statsmodels.api as sm

        frame = getattr(sm.datasets, name).load_pandas().data
        drop_ = dict(drop or {})
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                drop_.setdefault(column, "not numeric")
        frame = frame.drop(columns=list(drop_))
        reasons = ", ".join(f"{column} ({why})" for column, why in drop_.items())
        return frame, f"statsmodels.api.datasets.{name}", reasons

    return load


LOADERS: dict[str, Callable[[], tuple]] = {
    "iris": _sklearn("iris", drop_label="species label"),
    "wine": _sklearn("wine", drop_label="cultivar label"),
    "breast_cancer": _sklearn("breast_cancer", drop_label="diagnosis label"),
    "digits": _sklearn("digits", drop_label="digit label"),
    "diabetes": _sklearn("diabetes", scaled=False),  # target: disease progression, kept
    "linnerud": _sklearn("linnerud"),  # target: three physiological measurements, kept
    "anes96": _statsmodels("anes96", drop={"PID": "party identification label"}),
    "cancer": _statsmodels("cancer"),
    "ccard": _statsmodels("ccard"),
    "co2": _statsmodels("co2"),
    "committee": _statsmodels("committee"),
    "copper": _statsmodels("copper"),
    "cpunish": _statsmodels("cpunish"),
    "danish_data": _statsmodels("danish_data"),
    "elnino": _statsmodels("elnino"),
    "engel": _statsmodels("engel"),
    "fair": _statsmodels("fair"),
    "fertility": _statsmodels("fertility"),
    "grunfeld": _statsmodels("grunfeld"),
    "heart": _statsmodels("heart"),
    "interest_inflation": _statsmodels("interest_inflation"),
    "longley": _statsmodels("longley"),
    "macrodata": _statsmodels("macrodata"),
    "modechoice": _statsmodels(
        "modechoice",
        drop={"individual": "row identifier", "choice": "chosen-mode label"},
    ),
    "nile": _statsmodels("nile"),
    "randhie": _statsmodels("randhie"),
    "scotland": _statsmodels("scotland"),
    "spector": _statsmodels("spector", drop={"GRADE": "grade-improved label"}),
    "stackloss": _statsmodels("stackloss"),
    "star98": _statsmodels("star98"),
    "statecrime": _statsmodels("statecrime"),
    "strikes": _statsmodels("strikes"),
    "sunspots": _statsmodels("sunspots"),
    # china_smoking is a 2x2 table of counts for 8 cities: too few rows (see MIN_ROWS).
    "china_smoking": _statsmodels("china_smoking"),
}


def load(name: str) -> Dataset:
    """Load one data set as the benchmark uses it; ValueError when it cannot be used."""
    raw, source, dropped = LOADERS[name]()
    frame = raw.astype(float).reset_index(drop=True)
    reasons = [dropped] if dropped else []
    empty = [str(c) for c in frame.columns if frame[c].isna().all()]
    if empty:
        frame = frame.drop(columns=empty)
        reasons.append(f"{_names(empty)} (missing in every row)")
    complete = frame.dropna()
    if len(complete) < len(frame):
        reasons.append(f"{len(frame) - len(complete)} rows with a missing value")
    constant = [str(c) for c in complete.columns if complete[c].nunique() <= 1]
    if constant:
        complete = complete.drop(columns=constant)
        reasons.append(f"{_names(constant)} (constant)")
    if len(complete) < MIN_ROWS:
        raise ValueError(f"{name}: {len(complete)} complete rows, fewer than {MIN_ROWS}")
    if complete.shape[1] == 0:
        raise ValueError(f"{name}: no numeric column left")
    complete.columns = [str(c) for c in complete.columns]
    return Dataset(name, source, complete.reset_index(drop=True), "; ".join(reasons))


def _names(columns: list[str]) -> str:
    if len(columns) <= 4:
        return ", ".join(columns)
    return f"{len(columns)} columns ({', '.join(columns[:3])}, ...)"


def load_all(only: list[str] | None = None) -> tuple[list[Dataset], dict[str, str]]:
    """Every data set that loads (or those named in ``only``), and why the others did not."""
    names = only or list(LOADERS)
    unknown = [name for name in names if name not in LOADERS]
    if unknown:
        raise SystemExit(f"unknown data set(s): {', '.join(unknown)}; known: {', '.join(LOADERS)}")
    loaded, skipped = [], {}
    for name in names:
        try:
            loaded.append(load(name))
        except Exception as error:  # a loader that fails is reported, never fatal
            skipped[name] = str(error) if isinstance(error, ValueError) else repr(error)
    return loaded, skipped
