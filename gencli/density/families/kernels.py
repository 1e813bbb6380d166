"""Radial kernel profiles and their normalizing constants, shared by fitting and scoring.

A kernel density with profile k(|u|) at bandwidth h over n points is
sum_i k(|x - x_i| / h) / (n h^d integral of k over R^d); the integrals are closed forms in
log space (the cosine kernel's by quadrature), so they stay finite in any dimension.
"""

from __future__ import annotations

import math

import numpy as np

KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")
COMPACT = ("tophat", "epanechnikov", "linear", "cosine")  # zero beyond radius 1


def _log_radial_moment(kernel: str, m: int, squared: bool = False) -> float:
    """log of the integral over u >= 0 of k(u) ** (1 or 2) * u**m, for kernel profile k."""
    gammaln = math.lgamma
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


def log_kernel_norm(kernel: str, d: int) -> float:
    """log of the integral over R^d of the kernel profile k(|x|) at bandwidth 1."""
    log_surface = math.log(2) + (d / 2) * math.log(math.pi) - math.lgamma(d / 2)
    return log_surface + _log_radial_moment(kernel, d - 1)


def profile(kernel: str, u2: np.ndarray) -> np.ndarray:
    """The compact kernels' profiles at squared scaled distances (zero outside radius 1)."""
    inside = u2 < 1.0
    if kernel == "tophat":
        return inside.astype(np.float64)
    if kernel == "epanechnikov":
        return np.where(inside, 1.0 - u2, 0.0)
    u = np.sqrt(u2)
    if kernel == "linear":
        return np.where(inside, 1.0 - u, 0.0)
    if kernel == "cosine":
        return np.where(inside, np.cos(0.5 * np.pi * u), 0.0)
    raise ValueError(f"unknown kernel {kernel!r}")


def log_normalizer(kernel: str, d: int, bandwidth: float, n: float) -> float:
    """log of n * h^d * (integral of the kernel profile over R^d)."""
    return log_kernel_norm(kernel, d) + d * math.log(bandwidth) + math.log(n)
