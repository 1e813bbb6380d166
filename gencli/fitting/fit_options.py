"""The fit's options checked before any work, by the same rules the command line's types
apply, so a Python call gets the same one-line refusal (in Python's names: see
:mod:`gencli.audience`) instead of a later failure deep in a fit or a silent repair."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from gencli.errors import FitError

COVARIANCES = ("full", "diag", "tied", "spherical", "auto")
CRITERIA = ("bic", "aic", "heldout")


def check(options: dict[str, Any]) -> None:
    """FitError naming the first option out of its range (None means 'the default')."""
    _whole(options, "max_iter", "--max-iter", 1)
    _whole(options, "n_init", "--n-init", 1)
    _whole(options, "folds", "--folds", 2)
    _number(options, "tol", "--tol", positive=True)
    _number(options, "reg_covar", "--reg-covar", positive=False)
    _choice(options, "covariance", "--covariance", COVARIANCES)
    _choice(options, "select", "--select", CRITERIA)
    for name in ("standardize", "refit"):  # (flags on the command line: always a bool)
        if not isinstance(options.get(name, True), (bool, np.bool_)):
            raise FitError(f"{name} must be True or False, not {options[name]!r}")
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0):
        raise FitError(f"--seed must be a whole number >= 0 (or None), not {seed!r}")


def _whole(options: dict[str, Any], name: str, flag: str, least: int) -> None:
    value = options.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise FitError(f"{flag} must be a whole number of at least {least}, not {value!r}")


def _number(options: dict[str, Any], name: str, flag: str, *, positive: bool) -> None:
    value = options.get(name)
    if value is None:
        return
    ok = (
        isinstance(value, Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and (float(value) > 0 if positive else float(value) >= 0)
    )
    if not ok:
        bound = "above 0" if positive else "0 or more"
        raise FitError(f"{flag} must be a finite number {bound}, not {value!r}")


def _choice(options: dict[str, Any], name: str, flag: str, allowed: tuple[str, ...]) -> None:
    value = options.get(name)
    if value is not None and value not in allowed:
        raise FitError(f"{flag} must be one of {', '.join(allowed)}, not {value!r}")
