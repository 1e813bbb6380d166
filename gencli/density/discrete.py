"""Columns of whole numbers: found, named, and modelled as what they are.

A density over a column that takes a few integer values is unbounded: a mixture component or
a narrow kernel sitting on a repeated value scores ever higher without being a better model.
Such a column is modelled by uniform dequantization instead: the density is fitted to
x + U[0, 1) on it, a row scores the probability of its integer box [k, k + 1) there (times
the density over the continuous columns), and samples are rounded down to whole numbers. The
scores then sum (over the integers) and integrate (over the rest) to exactly 1, and the
log-likelihood of the dequantized rows the fit maximizes is a lower bound on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gencli.errors import FitError

#: A column of whole numbers with at most this many distinct values is discrete.
MAX_DISTINCT = 20


#: Rows looked at first: a continuous column shows a fraction there (the full pass over a
#: million rows of 50 strided columns took 0.96 s of a fit).
_SCREEN_ROWS = 1_000


def is_discrete(column: np.ndarray) -> bool:
    """Whole numbers only, and at most MAX_DISTINCT distinct ones."""
    if not (_whole(column[:_SCREEN_ROWS]) and _whole(column)):
        return False
    return bool(np.unique(column).size <= MAX_DISTINCT)


def _whole(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.floor(values)))


def discrete_columns(
    X: np.ndarray, columns: Sequence[str], spec: str | Sequence[str] | None, source: str
) -> list[int]:
    """The indices of the discrete columns: found ('auto', the default), none ('none' or an
    empty list), or the named ones (each must hold whole numbers only)."""
    if spec is None or (isinstance(spec, str) and spec in ("auto", "warn")):
        return [j for j in range(X.shape[1]) if is_discrete(X[:, j])]
    if isinstance(spec, str) and spec == "none":
        return []
    names = [c.strip() for c in spec.split(",")] if isinstance(spec, str) else list(spec)
    picks = []
    for name in names:
        if name not in columns:
            raise FitError(
                f"--discrete: no column '{name}' in {source}; its columns are {', '.join(columns)}"
            )
        j = list(columns).index(name)
        values = X[:, j]
        if not np.all(values == np.floor(values)):
            bad = values[values != np.floor(values)][0]
            raise FitError(
                f"--discrete: column '{name}' of {source} holds {bad:g}, not a whole number; "
                "only columns of whole numbers can be discrete"
            )
        picks.append(j)
    return sorted(set(picks))


def dequantize(X: np.ndarray, discrete: Sequence[int], seed: int | None) -> np.ndarray:
    """A copy of X with U[0, 1) noise added to the discrete columns (seeded)."""
    if not discrete:
        return X
    out = np.array(X, dtype=np.float64, copy=True)
    rng = np.random.default_rng(None if seed is None else [seed, 0xD15C])
    noise = rng.random((X.shape[0], len(discrete)))
    noise[noise == 0.0] = 0.5  # (0, 1): a bounded column's lowest box never meets its bound
    out[:, list(discrete)] += noise
    return out


def unbounded_warning(names: Sequence[str]) -> str:
    """What to say about whole-number columns that are modelled as continuous."""
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
    plural = len(names) > 1
    return (
        f"column{'s' if plural else ''} {shown} hold{'' if plural else 's'} whole numbers "
        f"with at most {MAX_DISTINCT} values: a density over {'them' if plural else 'it'} is "
        "unbounded, so likelihoods can reward spikes on single values; --discrete auto models "
        f"{'them' if plural else 'it'} as discrete (--discrete none silences this)"
    )
