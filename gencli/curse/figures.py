"""The curse of dimensionality, exact: closed forms for x ~ N(0, I_d), and the ``--dims`` grammar.

Every figure comes from closed forms and scipy's special functions evaluated in log space,
so it stays finite and accurate at d = 1000 and beyond. The Monte Carlo twins and the
records that put both side by side are in :mod:`gencli.curse.run`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from gencli.errors import GencliError

if TYPE_CHECKING:
    pass

__all__ = [
    "DIMS_FORMS",
    "KDE_TARGET_REL_MSE",
    "MAX_DIM",
    "ball_to_cube_log",
    "kde_samples_needed",
    "log_mass_within_unit_ball",
    "norm_moments",
    "parse_dims",
]

#: Largest dimension accepted: the distance contrast draws samples x d normals.
MAX_DIM = 100_000

#: The relative mean squared error at the mode that a KDE must get below.
KDE_TARGET_REL_MSE = 0.1

#: Shown in every error about a bad ``--dims`` value.
DIMS_FORMS = (
    "accepted forms: 'A..B' (log-spaced integers from A to B, about four per decade, "
    "both ends included), 'A..B:S' (A, A+S, ... up to B), 'A,B,C' (a list), "
    "or a comma-separated mix such as '1..10:1,100,1000'; "
    f"every dimension is an integer from 1 to {MAX_DIM}"
)

LN10 = math.log(10.0)
#: Below this a double loses precision (subnormal): report the log alone.
LOG_SMALLEST_NORMAL = math.log(2.2250738585072014e-308)
LOG_LARGEST = math.log(1.7976931348623157e308)

_INT = r"\s*(\d+)\s*"
_RANGE = re.compile(rf"^{_INT}\.\.{_INT}(?::{_INT})?$")
_SINGLE = re.compile(rf"^{_INT}$")


# --------------------------------------------------------------------------- dims


def _log_grid(lo: int, hi: int, per_decade: int = 4) -> list[int]:
    """Integers from lo to hi, roughly evenly spaced in log, ends always included."""
    if lo == hi:
        return [lo]
    points = max(2, round(per_decade * math.log10(hi / lo)) + 1)
    ratio = (hi / lo) ** (1.0 / (points - 1))
    grid = {lo, hi}
    grid.update(round(lo * ratio**i) for i in range(1, points - 1))
    return sorted(grid)


def check_dim(value: int, spec: str) -> int:
    if not 1 <= value <= MAX_DIM:
        raise GencliError(f"dimension {value} in {spec!r} is out of range; {DIMS_FORMS}")
    return value


def parse_dims(spec: str) -> list[int]:
    """Parse a dimension spec such as ``1..1000``, ``5..50:5``, ``1,2,10`` or a mix.

    Returns the sorted, de-duplicated dimensions. Raises ``GencliError`` naming the
    accepted forms when the spec is malformed.
    """
    if not spec or not spec.strip():
        raise GencliError(f"no dimensions given; {DIMS_FORMS}")
    dims: set[int] = set()
    for part in spec.split(","):
        ranged = _RANGE.match(part)
        single = _SINGLE.match(part)
        if single:
            dims.add(check_dim(int(single.group(1)), spec))
        elif ranged:
            lo = check_dim(int(ranged.group(1)), spec)
            hi = check_dim(int(ranged.group(2)), spec)
            if lo > hi:
                raise GencliError(
                    f"range {part.strip()!r} runs backwards ({lo} > {hi}); {DIMS_FORMS}"
                )
            if ranged.group(3) is None:
                dims.update(_log_grid(lo, hi))
            else:
                step = int(ranged.group(3))
                if step < 1:
                    raise GencliError(f"step in {part.strip()!r} must be >= 1; {DIMS_FORMS}")
                dims.update(range(lo, hi + 1, step))
        else:
            raise GencliError(f"cannot read {part.strip()!r} in {spec!r}; {DIMS_FORMS}")
    return sorted(dims)


# --------------------------------------------------------------------------- exact


def norm_moments(d: int) -> tuple[float, float]:
    """Mean and standard deviation of ||x|| ~ chi(d).

    The mean is sqrt(2) Gamma((d+1)/2) / Gamma(d/2); ``poch(d/2, 1/2)`` is that gamma
    ratio computed without the cancellation of a difference of two large gammaln values.
    """
    from scipy import special

    mean = math.sqrt(2.0) * float(special.poch(d / 2.0, 0.5))
    return mean, math.sqrt(max(d - mean * mean, 0.0))


def log_mass_within_unit_ball(d: int) -> float:
    """Natural log of P(||x|| <= 1) = P(chi2_d <= 1), finite even where it underflows.

    Uses the series P(a, x) = x^a e^-x / Gamma(a+1) * sum_k x^k / ((a+1)...(a+k)) of the
    regularized lower incomplete gamma function, a = d/2, x = 1/2: every term is positive
    and each is at most a third of the one before, so it converges in a few dozen terms.
    """
    from scipy import special

    a, x = d / 2.0, 0.5
    total, term, k = 1.0, 1.0, 0
    while term > 1e-17 * total:
        k += 1
        term *= x / (a + k)
        total += term
    return a * math.log(x) - x - float(special.gammaln(a + 1.0)) + math.log(total)


def ball_to_cube_log(d: int) -> float:
    """Natural log of vol(unit d-ball) / vol([-1, 1]^d) = pi^(d/2) / Gamma(d/2 + 1) / 2^d."""
    from scipy import special

    return d / 2.0 * math.log(math.pi) - float(special.gammaln(d / 2.0 + 1.0)) - d * math.log(2)


def _kde_log_n(s: float, d: int, log_c: float, h_max2: float) -> float:
    """log n(h) = log V(h) - log(target - B(h)^2) at h = h_max * exp(-s), s > 0.

    With K_h = N(0, h^2 I) and data N(0, I_d), relative to p(0) = (2 pi)^(-d/2):
      bias      B(h) = (1 + h^2)^(-d/2) - 1
      n * var   V(h) = (h^2 (2 + h^2))^(-d/2) - (1 + h^2)^(-d)
    h_max is where B^2 reaches the target; the slack target - B^2 is rewritten as
    (sqrt(target) - |B|)(sqrt(target) + |B|) with the first factor in expm1/log1p form, so
    it keeps its precision when h is within 1e-6 of h_max (where the optimum sits at large d).
    """
    h2 = h_max2 * math.exp(-2.0 * s)
    log_h2 = math.log(h_max2) - 2.0 * s
    # V: the second term over the first is [h^2 (2 + h^2) / (1 + h^2)^2]^(d/2) < 1.
    log_first = -d / 2.0 * (log_h2 + math.log(2.0 + h2))
    log_ratio = d / 2.0 * (log_h2 + math.log(2.0 + h2) - 2.0 * math.log1p(h2))
    log_v = log_first + math.log(-math.expm1(log_ratio))
    # sqrt(target) - |B| = (1 + h^2)^(-d/2) - c = c * expm1(g), with c = 1 - sqrt(target).
    g = d / 2.0 * math.log1p(-h_max2 * math.expm1(-2.0 * s) / (1.0 + h2))
    abs_b = -math.expm1(-d / 2.0 * math.log1p(h2))
    log_slack = log_c + math.log(math.expm1(g)) + math.log(math.sqrt(KDE_TARGET_REL_MSE) + abs_b)
    return log_v - log_slack


def kde_samples_needed(d: int) -> tuple[float, float, float]:
    """Samples a Gaussian KDE needs for relative MSE < 0.1 at the mode of N(0, I_d).

    Exact bias and variance of the estimator at the mode (no asymptotic expansion); for
    each bandwidth h the smallest n is V(h) / (0.1 - B(h)^2), minimised over h. Returns
    ``(n, log10 n, h)``: n is the smallest integer above the minimum while that is exact
    in a double, the minimum itself beyond that, and ``inf`` only past the double range,
    where log10 n (always finite) still says how far past.
    """
    import numpy as np
    from scipy import optimize

    c = 1.0 - math.sqrt(KDE_TARGET_REL_MSE)
    log_c = math.log(c)
    h_max2 = math.expm1(-2.0 / d * log_c)

    def objective(t: float) -> float:
        return _kde_log_n(math.exp(t), d, log_c, h_max2)

    # The optimum sits at s = log(h_max / h) ~ 1/(4d) .. 1/4: a coarse grid in log s
    # brackets it, then bounded Brent refines within the bracket.
    grid = np.linspace(math.log(1e-6 / d), math.log(30.0), 161)
    values = [objective(float(t)) for t in grid]
    best = int(np.argmin(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    result = optimize.minimize_scalar(
        objective, bounds=(float(lo), float(hi)), method="bounded", options={"xatol": 1e-12}
    )
    log_n = min(float(result.fun), values[best])
    t_best = float(result.x) if result.fun <= values[best] else float(grid[best])
    h = math.sqrt(h_max2) * math.exp(-math.exp(t_best))
    if log_n > LOG_LARGEST:
        return math.inf, log_n / LN10, h
    n = math.exp(log_n)
    if n < 2.0**52:
        n = float(math.floor(n) + 1)  # relMSE < 0.1 strictly needs n > n(h*)
    return n, math.log10(n), h
