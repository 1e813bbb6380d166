"""The fit's rules that need no fit: which models can honour the discrete columns, how many
training rows a model needs, what to say about one bandwidth for every column, and the
held-out record's shape."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from gencli.density.modelparts import log_likelihood_summary
from gencli.errors import FitError


def check_discrete_support(
    model: str, options: dict[str, Any], discrete: list[int], columns: Sequence[str]
) -> None:
    """Refuse a model that cannot give the discrete columns exact box probabilities: a full
    or tied covariance over two or more of them, a kernel other than the Gaussian."""
    if not discrete:
        return
    names = ", ".join(columns[j] for j in discrete[:5]) + (", ..." if len(discrete) > 5 else "")
    plural = len(discrete) > 1
    what = (
        f"column{'s' if plural else ''} {names} hold{'' if plural else 's'} whole numbers "
        "only (at most 20 values)"
    )
    cure = "--model auto, or --discrete none to treat them as continuous"
    covariance = options["covariance"]
    if model == "gmm" and len(discrete) > 1 and covariance in ("full", "tied"):
        raise FitError(
            f"{what}: a {covariance} covariance cannot give the probability of their "
            f"whole-number values exactly; use --covariance diag or spherical, {cure}"
        )
    if model == "kde" and options["kernel"] != "gaussian":
        raise FitError(
            f"{what}: only the gaussian kernel gives the probability of their whole-number "
            f"values exactly; use --kernel gaussian, {cure}"
        )


def one_bandwidth_note(X: np.ndarray, columns: Sequence[str]) -> list[str]:
    """Without standardizing, a kernel density has one bandwidth for every column: say so
    when the columns' spreads differ by more than 10x (wine: 0.2x to 46,300x of each
    column's own rule, held-out -68.0 against -20.1 standardized)."""
    from gencli.density.preprocess import column_moments

    _, spread = column_moments(X)
    low, high = int(np.argmin(spread)), int(np.argmax(spread))
    if not spread[low] > 0 or spread[high] / spread[low] <= 10:
        return []
    return [
        f"--no-standardize: a kernel density has one bandwidth for every column, but the "
        f"columns' spreads differ {spread[high] / spread[low]:.3g}-fold ({columns[high]} "
        f"{spread[high]:.3g}, {columns[low]} {spread[low]:.3g}); drop --no-standardize to "
        "give each column a bandwidth at its own scale"
    ]


def sklearn_version() -> str:
    """scikit-learn's version, read from its installed metadata when a KDE fit has not
    imported it (0.7 s of imports for one string)."""
    if "sklearn" in sys.modules:
        return str(sys.modules["sklearn"].__version__)
    from importlib.metadata import version

    return version("scikit-learn")


def rows_needed(model: str, options: dict[str, Any]) -> tuple[int, str]:
    """The fewest training rows the model can be fitted to, and what needs them."""
    if model == "auto":
        folds = int(options["folds"])
        return max(2, folds), f"the {folds}-fold cross-validation that compares the models"
    if model == "kde":
        if options["bandwidth"] == "cv":
            folds = int(options["folds"])
            return max(2, folds), f"--bandwidth cv with {folds} folds"
        return 2, "a kernel density"
    from gencli.fitting.selection import parse_components

    try:
        ks = parse_components(options["components"])
    except ValueError as exc:
        raise FitError(f"--components: {exc}") from None
    smallest = ks[0]
    if len(ks) == 1:
        return max(2, smallest), f"a {smallest}-component mixture"
    return max(2, smallest), f"the smallest mixture searched ({smallest} components)"


def validation_record(
    fraction: float,
    train_scores: np.ndarray,
    heldout_scores: np.ndarray,
    refitted: bool,
    n_features: float,
    weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> dict[str, Any]:
    train = log_likelihood_summary(train_scores, n_features, weights[0])
    heldout = log_likelihood_summary(heldout_scores, n_features, weights[1])
    return {
        "fraction": float(fraction),
        "train_rows": int(train_scores.size),
        "heldout_rows": int(heldout_scores.size),
        "refit": bool(refitted),
        "train_mean_log_likelihood": train["mean_log_likelihood"],
        "train_bits_per_dimension": train["bits_per_dimension"],
        "heldout_mean_log_likelihood": heldout["mean_log_likelihood"],
        "heldout_bits_per_dimension": heldout["bits_per_dimension"],
    }
