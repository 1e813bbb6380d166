"""What a Dask worker runs for a fit: read a part, standardize and split it, and reduce its
rows to numbers whose size does not depend on the rows (moments, EM statistics, sums).

Everything here is plain numpy on one part; :mod:`gencli.engines.dask_fit` schedules it.
Which rows are held out, and which are sampled, is a seeded function of each row's index
in the whole data set (a counter-based hash), so it does not depend on how the rows are
cut into parts or on how many workers read them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.fitting import em_stats
from gencli.io.parts import PartPlan
from gencli.io.table import Table

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
SALT_HELDOUT, SALT_SAMPLE, SALT_QUANTILES = 1, 2, 3


def uniform(seed: int, salt: int, start: int, n: int) -> np.ndarray:
    """Uniform [0, 1) numbers for rows start..start+n-1: splitmix64 of (seed, salt, index)."""
    key = np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & int(_MASK))
    with np.errstate(over="ignore"):
        x = np.arange(start, start + n, dtype=np.uint64) + key
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class Split:
    """How a part becomes standardized training and held-out rows."""

    plan: PartPlan
    index: int
    offset: int  # rows of the data set before this part
    shift: np.ndarray
    scale: np.ndarray
    seed: int
    validation: float


def read(plan: PartPlan, index: int) -> Table:
    set_up_process()
    return plan.read(index)


def moments(table: Table) -> dict[str, Any]:
    """Count, mean, sum of squared deviations, least and largest value of each column, the
    SHA-256 of the values (as the local engine hashes the whole table), rows dropped."""
    from gencli.density.modelparts import data_sha256

    X = table.values
    mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
    return {
        "rows": int(X.shape[0]),
        "mean": mean,
        "m2": ((X - mean) ** 2).sum(axis=0),
        "min": X.min(axis=0) if len(X) else np.full(X.shape[1], np.inf),
        "max": X.max(axis=0) if len(X) else np.full(X.shape[1], -np.inf),
        "sha256": data_sha256(X),
        "dropped": int(table.dropped_rows),
    }


def combine_moments(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Moments of the parts together (Chan et al.'s pairwise update: exact, no cancellation)."""
    out = dict(parts[0])
    for part in parts[1:]:
        n_a, n_b = out["rows"], part["rows"]
        n = n_a + n_b
        if n_b == 0:
            out["dropped"] += part["dropped"]
            continue
        delta = part["mean"] - out["mean"]
        out = {
            "rows": n,
            "mean": out["mean"] + delta * (n_b / n),
            "m2": out["m2"] + part["m2"] + delta**2 * (n_a * n_b / n),
            "min": np.minimum(out["min"], part["min"]),
            "max": np.maximum(out["max"], part["max"]),
            "dropped": out["dropped"] + part["dropped"],
        }
    digests = "".join(p["sha256"] for p in parts)
    out["sha256"] = (
        parts[0]["sha256"]
        if len(parts) == 1
        else "parts:" + hashlib.sha256(digests.encode()).hexdigest()
    )
    return out


def split(table: Table, how: Split) -> tuple[np.ndarray, np.ndarray]:
    """The part's standardized training rows and held-out rows."""
    from gencli.density.preprocess import standardize

    Z = standardize(table.values, how.shift, how.scale)
    if how.validation <= 0:
        return Z, Z[:0]
    held = uniform(how.seed, SALT_HELDOUT, how.offset, len(Z)) < how.validation
    return Z[~held], Z[held]


def rows_of(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) rows: kept in worker memory, or read again from the file."""
    if isinstance(source, Split):
        return split(read(source.plan, source.index), source)
    return source


def set_up_process() -> None:
    """Once per worker process: keep freed memory for reuse, as the command line does
    (:func:`gencli.native.keep_freed_memory`); Dask's workers trim it at once by default,
    so every pass faulted in fresh pages for its temporaries."""
    global _SET_UP
    if not _SET_UP:
        from gencli.native import keep_freed_memory

        keep_freed_memory()
        _SET_UP = True


_SET_UP = False


def em_pass(source: Any, runs: list[dict[str, Any]], every_row: bool) -> list[em_stats.Statistics]:
    """E-step statistics of the part's training rows (or all its rows) for each mixture."""
    set_up_process()
    train, held = rows_of(source)
    Z = np.concatenate([train, held]) if every_row and len(held) else train
    return [em_stats.statistics(Z, params) for params in runs]


def hard_pass(
    source: Any, centres: list[np.ndarray], kinds: list[str]
) -> list[em_stats.Statistics]:
    """Statistics with each training row given to its nearest centre (the initialization)."""
    train, _ = rows_of(source)
    return [
        em_stats.hard_statistics(train, c, kind) for c, kind in zip(centres, kinds, strict=True)
    ]


def score_pass(source: Any, runs: list[dict[str, Any]], every_row: bool) -> list[np.ndarray]:
    """[train sum, train rows, held-out sum, held-out rows] of each mixture's log-density
    (standardized units); ``every_row`` counts the held-out rows as training rows."""
    from gencli.density.families import gmm

    train, held = rows_of(source)
    if every_row and len(held):
        train, held = np.concatenate([train, held]), held[:0]
    out = []
    for params in runs:
        a = gmm.log_density(params, train) if len(train) else np.zeros(0)
        b = gmm.log_density(params, held) if len(held) else np.zeros(0)
        out.append(np.array([a.sum(), len(a), b.sum(), len(b)]))
    return out


def sample_rows(source: Any, how: Split, rate: float, every_row: bool = False) -> np.ndarray:
    """A seeded uniform sample of the part's training rows (of all its rows, in file order,
    with ``every_row``): the same rows however the data set is cut into parts."""
    train, held = rows_of(source)
    n = len(train) + len(held)
    chosen = uniform(how.seed, SALT_SAMPLE, how.offset, n) < rate
    held_mask = np.zeros(n, dtype=bool)
    if how.validation > 0:
        held_mask = uniform(how.seed, SALT_HELDOUT, how.offset, n) < how.validation
    if not every_row:
        return train[chosen[~held_mask]]
    rows = np.empty((n, train.shape[1]))
    rows[~held_mask], rows[held_mask] = train, held
    return rows[chosen]


def raw_sample(
    plan: PartPlan, index: int, offset: int, seed: int, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """The part's rows (data units) whose hash is below ``rate``, with those hash values."""
    X = read(plan, index).values
    u = uniform(seed, SALT_SAMPLE, offset, len(X))
    keep = u < rate
    return u[keep], X[keep]


def heldout_scores(source: Any, how: Split, params: dict[str, Any], rate: float) -> np.ndarray:
    """Log-densities (standardized units) of a seeded sample of the part's held-out rows,
    chosen by each row's index in the data set (the same rows however it is cut)."""
    from gencli.density.families import gmm

    train, held = rows_of(source)
    if not len(held):
        return np.zeros(0)
    n = len(train) + len(held)
    held_mask = uniform(how.seed, SALT_HELDOUT, how.offset, n) < how.validation
    chosen = uniform(how.seed, SALT_QUANTILES, how.offset, n)[held_mask] < rate
    return gmm.log_density(params, held[chosen])


def add(*parts: list[Any]) -> list[Any]:
    """Element-wise sums of equally long lists (statistics, or score sums)."""
    out = list(parts[0])
    for part in parts[1:]:
        out = [a + b for a, b in zip(out, part, strict=True)]
    return out
