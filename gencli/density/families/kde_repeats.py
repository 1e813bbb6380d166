"""Repeated rows in a kernel density: points summed once with weights, rows scored once.

Integer-valued data repeats rows by the thousand (300k rows on a 10 x 10 grid have 100
distinct ones); summing each repeat again turned a KDE fit into 675 s. Repeated training
points become one point with a weight (how often it occurs) and repeated query rows are
scored once and copied.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

# Rows are scored once each when at most this share of them is distinct (hashing and
# sorting 65k rows costs about 5 ms; below it the saving is small).
_DISTINCT_SHARE = 0.75
_MIN_ROWS_TO_DEDUPLICATE = 64
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: a bijection of the 64-bit words


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(the distinct rows, each row's index among them, how often each occurs), or None
    when most rows are distinct anyway.

    Rows are hashed to one 64-bit word and the words sorted (np.unique over rows sorts
    whole rows, 20x slower); a hash collision is caught by comparing every row with its
    representative, and then nothing is merged.
    """
    m = X.shape[0]
    if m < _MIN_ROWS_TO_DEDUPLICATE or X.ndim != 2 or X.shape[1] == 0:
        return None
    bits = np.ascontiguousarray(X + 0.0, dtype=np.float64).view(np.uint64)  # -0.0 -> 0.0
    key = bits[:, 0].copy()
    for column in range(1, bits.shape[1]):
        key *= _HASH_MULTIPLIER  # wraps modulo 2^64, as intended
        key ^= bits[:, column] + (key >> np.uint64(29))
    _, first, inverse, counts = np.unique(
        key, return_index=True, return_inverse=True, return_counts=True
    )
    if first.size > _DISTINCT_SHARE * m:
        return None
    distinct = X[first]
    if not np.array_equal(distinct[inverse], X):
        return None  # two different rows share a hash: score every row
    return distinct, inverse.reshape(-1), counts.astype(np.float64)


def distinct_points(
    points: np.ndarray, cache: dict[str, Any] | None, point_weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The training points with repeats merged into weights (None: every point once, no
    repeats worth merging). ``point_weights`` are the points' own weights (a weighted or a
    conditioned kernel density); merged repeats add theirs."""
    if cache is not None and "distinct_points" in cache:
        return cast("tuple[np.ndarray, np.ndarray | None]", cache["distinct_points"])
    if point_weights is not None and not np.all(point_weights > 0):
        keep = point_weights > 0  # a weightless point adds nothing
        points, point_weights = points[keep], point_weights[keep]
    found = distinct_rows(points)
    if found is None:
        result = (points, point_weights)
    elif point_weights is None:
        result = (found[0], found[2])
    else:
        merged = np.bincount(found[1], weights=point_weights, minlength=found[0].shape[0])
        result = (found[0], merged)
    if cache is not None:
        cache["distinct_points"] = result
    return result
