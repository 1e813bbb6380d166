"""Small pieces of a model that need no model: sample counts and seeds, the family modules,
log-likelihood summaries, the data hash, a derived model's metadata."""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

import numpy as np

from gencli.errors import GencliError, ModelFileError

_LOG2 = math.log(2.0)
MAX_SAMPLES = int(np.iinfo(np.int64).max)


#: What a fit measured about the density it made: not true of a marginal or conditional.
FIT_FIGURES = (
    "train_mean_log_likelihood",
    "train_bits_per_dimension",
    "train_estimate",
    "validation",
    "heldout_log_density_quantiles",
)


def derived_metadata(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A derived density's metadata: the fitted model's, without the figures measured on
    it (training and held-out log-likelihoods, outlier quantiles), and what was derived."""
    out = {k: copy.deepcopy(v) for k, v in metadata.items() if k not in FIT_FIGURES}
    out["derived"] = [*out.get("derived", []), record]
    return out


def check_sample_count(n: Any) -> int:
    """``n`` as a Python int from 0 to the int64 maximum, or a GencliError saying so."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer, float)):
        raise GencliError(f"the number of rows to draw must be a whole number, not {n!r}")
    if isinstance(n, float) and not (math.isfinite(n) and n == int(n)):
        raise GencliError(f"the number of rows to draw must be a whole number, not {n!r}")
    count = int(n)
    if not 0 <= count <= MAX_SAMPLES:
        raise GencliError(
            f"the number of rows to draw must be between 0 and {MAX_SAMPLES} (the int64 "
            f"maximum), not {count}"
        )
    return count


def family_module(family: str) -> Any:
    """The module of a density family (imported on first use)."""
    if family == "gmm":
        from gencli.density.families import gmm

        return gmm
    if family == "kde":
        from gencli.density.families import kde

        return kde
    raise ModelFileError(f"unknown model family '{family}'")


def sample_entropy(seed: int | None) -> int:
    """The entropy every block of a sample derives from: the seed, or fresh entropy."""
    return int(np.random.SeedSequence(seed).entropy)  # type: ignore[arg-type]


def log_likelihood_summary(
    log_density: np.ndarray, n_features: float, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Mean and total log-likelihood (nats) and bits per dimension of scored rows (means
    and totals weighted by ``weights`` when given)."""
    if weights is not None and log_density.size:
        log_density = log_density * (weights * (weights.size / np.sum(weights)))
    mean = float(np.mean(log_density)) if log_density.size else float("nan")
    return {
        "rows": int(log_density.size),
        "mean_log_likelihood": mean,
        "total_log_likelihood": float(np.sum(log_density)),
        "bits_per_dimension": -mean / (n_features * _LOG2),
    }


def data_sha256(values: np.ndarray) -> str:
    """SHA-256 of the training values as little-endian float64, row-major (format-independent)."""
    array = np.ascontiguousarray(values, dtype="<f8")
    if array.size == 0:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(array.data.cast("B")).hexdigest()  # the buffer itself, no copy
