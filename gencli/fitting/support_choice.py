"""``--model auto`` chooses the support too: the columns as they are, or bounded at 0.

Amounts, lengths, counts and pixels cannot be negative, and a density that knows it (fitted
through log transforms, :mod:`gencli.density.bounds`) often generalizes better: on the
quality benchmark's 15 continuous real data sets ``--bounds auto`` won 13 and tied 2 against
the best plain alternative, where the unbounded default won 7 and lost 2 (docs/quality.md).
But not always (iris and diabetes do better unbounded), so neither is imposed: when the user
gave no ``--bounds`` and some column is non-negative, the whole ``auto`` search runs on both
supports and the one with the better cross-validated log-likelihood on the training rows
wins; the held-out rows still measure only the winner. Both figures are in the data's units
(the bounded search adds the transforms' Jacobian), so they compare like with like.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gencli.io.data import Table

BOUNDED = "bounded below (--bounds auto)"
AS_GIVEN = "as given"


def applies(table: Table, model: str, options: dict[str, Any]) -> bool:
    """Whether the search should also try bounding columns at 0: ``--model auto`` with no
    ``--bounds`` and no ``--missing em``, and a column auto would bound (all values > 0,
    or whole numbers >= 0)."""
    if model != "auto" or options.get("bounds") is not None or options.get("missing"):
        return False
    if options.get("discrete") == "none":
        return False
    weights = options.get("weights")
    for j, name in enumerate(table.columns):
        if isinstance(weights, str) and name == weights:
            continue
        column = table.values[:, j]
        smallest = float(np.min(column))
        if smallest > 0 or (smallest == 0 and bool(np.all(column == np.floor(column)))):
            return True  # positive values, or counts (see gencli.density.bounds.resolve)
    return False


def fit_both(
    table: Table,
    model: str,
    options: dict[str, Any],
    fit_one: Callable[[Table, str, dict[str, Any]], Any],
) -> Any:
    """Run the ``auto`` search on the bounded and the given support; keep the better one by
    cross-validated log-likelihood, with every candidate of both in its selection table."""
    listener = options.get("on_candidate")
    fits = {}
    for support, bounds in ((BOUNDED, "auto"), (AS_GIVEN, None)):  # the bounded one first:
        # it never standardizes the caller's rows in place, the other may
        tagged = {**options, "bounds": bounds, "on_candidate": _tagging(listener, support)}
        fits[support] = fit_one(table, model, tagged)
    scores = {support: _best_cv(fit) for support, fit in fits.items()}
    chosen = BOUNDED if scores[BOUNDED] > scores[AS_GIVEN] else AS_GIVEN
    winner, other = fits[chosen], fits[AS_GIVEN if chosen == BOUNDED else BOUNDED]
    selection = winner.metadata["selection"]
    for record in selection["candidates"]:
        record["support"] = chosen
    for record in other.metadata["selection"]["candidates"]:
        selection["candidates"].append(record | {"support": _other(chosen), "chosen": False})
    winner.metadata["support"] = {
        "chosen": chosen,
        "cv_mean_log_likelihood": {support: float(s) for support, s in scores.items()},
    }
    winner.metadata["fit_seconds"] = sum(f.metadata["fit_seconds"] for f in fits.values())
    if chosen == BOUNDED and winner.bounds is not None:
        from gencli.density.bounds import text

        shown = ", ".join(text(b) for b in winner.bounds.describe(winner.columns))
        winner.metadata["warnings"].append(
            f"--model auto bounded {shown} (it cross-validated better): new rows at or past "
            "a bound score -inf; --bounds none fits the columns as given"
        )
    return winner


def _other(support: str) -> str:
    return AS_GIVEN if support == BOUNDED else BOUNDED


def _best_cv(fitted: Any) -> float:
    chosen = [c for c in fitted.metadata["selection"]["candidates"] if c.get("chosen")]
    return float(chosen[0]["cv_mean_log_likelihood"]) if chosen else -np.inf


def _tagging(listener: Any, support: str) -> Any:
    if listener is None:
        return None

    def tell(record: dict[str, Any]) -> None:
        listener(record | {"support": support})

    return tell
