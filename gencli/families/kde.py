"""Kernel densities: scikit-learn's KernelDensity, with scale-aware bandwidth rules and a
sampler for every kernel.

scikit-learn's own ``scott``/``silverman`` bandwidths look only at n and d (its issue
#25623), so they are right only for data of unit scale; here the rules multiply by the
data's spread, and convert the Gaussian-kernel bandwidth to the chosen kernel through the
kernels' canonical bandwidths (Marron & Nolan, 1988), so every kernel gets an equivalent
amount of smoothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gencli.errors import FitError, ModelFileError

KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")
RULES = ("scott", "silverman")


def _log_radial_moment(kernel: str, m: int, squared: bool = False) -> float:
    """log of the integral over u >= 0 of k(u) ** (1 or 2) * u**m, for kernel profile k."""
    from scipy.special import gammaln

    a = m + 1.0
    if kernel == "gaussian":  # k(u) = exp(-u^2 / 2)
        if squared:
            return math.log(0.5) + float(gammaln(a / 2))
        return (a / 2 - 1) * math.log(2) + float(gammaln(a / 2))
    if kernel == "tophat":  # k(u) = 1 on [0, 1]
        return -math.log(a)
    if kernel == "epanechnikov":  # k(u) = 1 - u^2 on [0, 1]
        if squared:
            return math.log(8) - math.log(a) - math.log(a + 2) - math.log(a + 4)
        return math.log(2) - math.log(a) - math.log(a + 2)
    if kernel == "exponential":  # k(u) = exp(-u)
        return float(gammaln(a)) - (a * math.log(2) if squared else 0.0)
    if kernel == "linear":  # k(u) = 1 - u on [0, 1]
        if squared:
            return math.log(2) - math.log(a) - math.log(a + 1) - math.log(a + 2)
        return -math.log(a) - math.log(a + 1)
    if kernel == "cosine":  # k(u) = cos(pi u / 2) on [0, 1]
        from scipy.integrate import quad

        power = 2 if squared else 1
        # Substitute u = 1 - t: the integrand's mass sits near u = 1 for large m.
        value, _ = quad(
            lambda t: (
                math.sin(math.pi * t / 2) ** power * math.exp(m * math.log1p(-t)) if t < 1 else 0.0
            ),
            0.0,
            1.0,
            limit=200,
            points=[min(1.0, 1.0 / (m + 1)), min(1.0, 10.0 / (m + 1))],
        )
        return math.log(value)
    raise ValueError(f"unknown kernel {kernel!r}")


def log_canonical_bandwidth(kernel: str, d: int) -> float:
    """log of the canonical bandwidth (R(K) / mu2(K)^2) ** (1 / (d + 4)) of a radial kernel.

    Two kernels smooth equivalently (same asymptotic MISE) when their bandwidths are in
    the ratio of their canonical bandwidths.
    """
    log_i0 = _log_radial_moment(kernel, d - 1)
    log_surface = log_kernel_norm(kernel, d) - log_i0
    log_i2 = _log_radial_moment(kernel, d + 1)
    log_j0 = _log_radial_moment(kernel, d - 1, squared=True)
    log_mu2 = log_i2 - log_i0 - math.log(d)
    log_roughness = log_j0 - log_surface - 2 * log_i0
    return (log_roughness - 2 * log_mu2) / (d + 4)


def kernel_factor(kernel: str, d: int) -> float:
    """Bandwidth of ``kernel`` that smooths like a Gaussian kernel of bandwidth 1."""
    return math.exp(log_canonical_bandwidth(kernel, d) - log_canonical_bandwidth("gaussian", d))


def rule_of_thumb(Z: np.ndarray, rule: str, kernel: str = "gaussian") -> float:
    """Scott's or Silverman's bandwidth for the data's own scale, converted to ``kernel``.

    The spread is the root mean of the column variances, which is 1 on standardized data
    (where this agrees with scikit-learn's rule for the Gaussian kernel).
    """
    n, d = Z.shape
    if rule == "scott":
        factor = n ** (-1.0 / (d + 4))
    elif rule == "silverman":
        factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise ValueError(f"unknown bandwidth rule {rule!r}")
    spread = float(np.sqrt(np.mean(np.var(Z, axis=0))))
    if not spread > 0:
        raise FitError("every column is constant, so no bandwidth fits; the data has no spread")
    return factor * spread * kernel_factor(kernel, d)


def fit(
    Z: np.ndarray, *, bandwidth: float | str = "scott", kernel: str = "gaussian"
) -> tuple[Any, str | None]:
    """Fit a KernelDensity; return it and the rule that chose the bandwidth (None if given)."""
    from sklearn.neighbors import KernelDensity

    if kernel not in KERNELS:
        raise FitError(f"unknown kernel '{kernel}'; use one of {', '.join(KERNELS)}")
    if Z.shape[0] < 2:
        raise FitError(f"a kernel density needs at least 2 rows but the data has {Z.shape[0]}")
    rule = None
    if isinstance(bandwidth, str):
        rule = bandwidth
        if rule not in RULES:
            raise FitError(
                f"unknown bandwidth '{bandwidth}'; give a positive number or one of "
                f"{', '.join(RULES)}"
            )
        value = rule_of_thumb(Z, rule, kernel)
    else:
        value = float(bandwidth)
        if not (value > 0 and math.isfinite(value)):
            raise FitError(f"--bandwidth must be a positive number but got {bandwidth}")
    estimator = KernelDensity(bandwidth=value, kernel=kernel).fit(Z)
    return estimator, rule


def log_kernel_norm(kernel: str, d: int) -> float:
    """log of the integral over R^d of the kernel profile k(|x|) at bandwidth 1."""
    log_surface = math.log(2) + (d / 2) * math.log(math.pi) - math.lgamma(d / 2)
    return log_surface + _log_radial_moment(kernel, d - 1)


# scikit-learn's tree-based KernelDensity drifts from the exact sum from about d = 24
# (log-space bounds; errors of tens of nats at d = 64, scikit-learn issue #7492), gives
# the compact kernels a density of about e^-35 where no training point is within reach
# (the true density is 0), and normalizes the cosine kernel wrongly in even dimensions
# (off by 2.75x at d = 2, NaN at d = 4). gencli uses the tree only where it is exact:
# the Gaussian and exponential kernels in low dimension; elsewhere it sums the kernels.
TREE_MAX_DIM = 12
TREE_KERNELS = ("gaussian", "exponential")
_CHUNK_ENTRIES = 1 << 21


def _profile_sums(kernel: str, u2: np.ndarray) -> np.ndarray:
    """log of the sum over each row of the kernel profile at squared scaled distances u2."""
    from scipy.special import logsumexp

    if kernel == "gaussian":
        return np.asarray(logsumexp(-0.5 * u2, axis=1))
    u = np.sqrt(u2)
    if kernel == "exponential":
        return np.asarray(logsumexp(-u, axis=1))
    inside = u < 1.0
    if kernel == "tophat":
        values = inside.astype(np.float64)
    elif kernel == "epanechnikov":
        values = np.where(inside, 1.0 - u2, 0.0)
    elif kernel == "linear":
        values = np.where(inside, 1.0 - u, 0.0)
    elif kernel == "cosine":
        values = np.where(inside, np.cos(0.5 * np.pi * u), 0.0)
    else:
        raise ValueError(f"unknown kernel {kernel!r}")
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(values.sum(axis=1)))


def direct_log_density(
    points: np.ndarray, Z: np.ndarray, kernel: str, bandwidth: float
) -> np.ndarray:
    """Exact KDE log-density by summing every kernel, in chunks of queries (any dimension)."""
    n, d = points.shape
    log_norm = log_kernel_norm(kernel, d) + d * math.log(bandwidth) + math.log(n)
    centre = points.mean(
        axis=0
    )  # distances are translation-invariant; centring avoids cancellation
    P = points - centre
    Q = Z - centre
    p_sq = np.einsum("ij,ij->i", P, P)
    out = np.empty(Q.shape[0])
    chunk = max(1, _CHUNK_ENTRIES // max(n, 1))
    scale = 1.0 / (bandwidth * bandwidth)
    for start in range(0, Q.shape[0], chunk):
        q = Q[start : start + chunk]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + p_sq[None, :] - 2.0 * (q @ P.T)
        np.maximum(d2, 0.0, out=d2)
        d2 *= scale
        out[start : start + chunk] = _profile_sums(kernel, d2) - log_norm
    return out


def score_samples(estimator: Any, Z: np.ndarray) -> np.ndarray:
    """log-density of each row of Z under the fitted KernelDensity, exact in any dimension."""
    points = np.asarray(estimator.tree_.data)
    if estimator.kernel not in TREE_KERNELS or points.shape[1] > TREE_MAX_DIM:
        return direct_log_density(points, Z, estimator.kernel, float(estimator.bandwidth_))
    return np.asarray(estimator.score_samples(Z))


def to_params(estimator: Any, rule: str | None) -> dict[str, Any]:
    """The kernel density as builtins and arrays: kernel, bandwidth and the training points."""
    return {
        "kernel": str(estimator.kernel),
        "bandwidth": float(estimator.bandwidth_),
        "bandwidth_rule": rule,
        "points": np.ascontiguousarray(estimator.tree_.data, dtype=np.float64),
    }


def from_params(params: dict[str, Any]) -> Any:
    """Rebuild the KernelDensity from its training points (building the tree is cheap)."""
    from sklearn.neighbors import KernelDensity

    kernel = params["kernel"]
    if kernel not in KERNELS:
        raise ModelFileError(f"unknown kernel '{kernel}' in the model file")
    bandwidth = float(params["bandwidth"])
    points = np.asarray(params["points"], dtype=np.float64)
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise ModelFileError(f"the bandwidth in the model file is not positive: {bandwidth}")
    if points.ndim != 2 or points.shape[0] < 1 or not np.all(np.isfinite(points)):
        raise ModelFileError("the training points in the model file are not a finite 2-D array")
    return KernelDensity(bandwidth=bandwidth, kernel=kernel).fit(points)


def _unit_radii(kernel: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Radii of draws from the kernel with bandwidth 1: density proportional to k(r) r^(d-1)."""
    if kernel == "tophat":
        return rng.random(n) ** (1.0 / d)
    if kernel == "epanechnikov":
        return np.sqrt(rng.beta(d / 2.0, 2.0, size=n))
    if kernel == "exponential":
        return rng.gamma(d, 1.0, size=n)
    if kernel == "linear":
        return rng.beta(d, 2.0, size=n)
    if kernel == "cosine":
        # Rejection from Beta(d, 2), density ~ (1 - u) u^(d-1): cos(pi u / 2) <= pi (1 - u) / 2.
        radii = np.empty(n)
        filled = 0
        while filled < n:
            want = n - filled
            proposal = rng.beta(d, 2.0, size=2 * want + 16)
            slack = 1.0 - proposal
            accept_prob = np.where(
                slack > 0, np.sin(np.pi * slack / 2) / (np.pi * slack / 2 + 1e-300), 1.0
            )
            kept = proposal[rng.random(proposal.size) < accept_prob][:want]
            radii[filled : filled + kept.size] = kept
            filled += kept.size
        return radii
    raise ValueError(f"no radial sampler for kernel {kernel!r}")


def kernel_noise(kernel: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Draws from the kernel centred at 0 with bandwidth 1, for any of the six kernels."""
    if kernel == "gaussian":
        return rng.standard_normal((n, d))
    directions = rng.standard_normal((n, d))
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return directions / norms * _unit_radii(kernel, n, d, rng)[:, None]


def sample(params: dict[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """A draw is a random training point plus a draw from the kernel."""
    points = np.asarray(params["points"], dtype=np.float64)
    picks = rng.integers(0, points.shape[0], size=n)
    noise = kernel_noise(params["kernel"], n, points.shape[1], rng)
    return points[picks] + params["bandwidth"] * noise


def describe(params: dict[str, Any]) -> dict[str, Any]:
    """A short, printable summary of the kernel density."""
    return {
        "kernel": params["kernel"],
        "bandwidth": params["bandwidth"],
        "bandwidth_rule": params["bandwidth_rule"],
        "training_points": int(np.asarray(params["points"]).shape[0]),
    }
