"""The curse of dimensionality, in numbers: exact figures and Monte Carlo side by side.

Every figure is about x ~ N(0, I_d). Exact ones come from closed forms and scipy's
special functions evaluated in log space, so they stay finite and accurate at d = 1000
and beyond; Monte Carlo ones are drawn with one seed and sit beside their exact twins.
Functions here are pure: they return records (plain dicts) and never print.

The random stream of each dimension is derived from ``(seed, d)`` alone, so the figures
for d = 10 are the same whether d = 10 is run alone or inside a sweep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gencli.errors import GencliError, ResourceError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DIMS_FORMS",
    "KDE_TARGET_REL_MSE",
    "MAX_DIM",
    "ball_to_cube_log",
    "heldout_gap",
    "kde_samples_needed",
    "log_mass_within_unit_ball",
    "norm_moments",
    "parse_dims",
    "run_curse",
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

#: Draws per block in the Monte Carlo loops: memory stays flat however many samples are
#: asked for. Generators give the same numbers drawn in blocks as in one call, so blocks
#: change no draw; up to this many samples the figures are computed exactly as in one pass.
MC_BLOCK = 1 << 20

_LN10 = math.log(10.0)
#: Below this a double loses precision (subnormal): report the log alone.
_LOG_SMALLEST_NORMAL = math.log(2.2250738585072014e-308)
_LOG_LARGEST = math.log(1.7976931348623157e308)

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


def _check_dim(value: int, spec: str) -> int:
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
            dims.add(_check_dim(int(single.group(1)), spec))
        elif ranged:
            lo = _check_dim(int(ranged.group(1)), spec)
            hi = _check_dim(int(ranged.group(2)), spec)
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
    if log_n > _LOG_LARGEST:
        return math.inf, log_n / _LN10, h
    n = math.exp(log_n)
    if n < 2.0**52:
        n = float(math.floor(n) + 1)  # relMSE < 0.1 strictly needs n > n(h*)
    return n, math.log10(n), h


# --------------------------------------------------------------------------- Monte Carlo


class DensityLike(Protocol):
    """What the held-out gap needs from a fitted model: log-densities of new rows."""

    def score_samples(self, X: np.ndarray) -> np.ndarray: ...


#: ``fit(X_train, model, seed) -> DensityLike``; model is "kde" or "gmm".
Fitter = Callable[["np.ndarray", str, int], DensityLike]


def _gencli_fitter(X: np.ndarray, model: str, seed: int) -> DensityLike:
    """Fit with gencli's own public API, the way a user would."""
    import gencli

    if model == "kde":
        return gencli.fit(X, model="kde", bandwidth="scott", validation=0.0, seed=seed)
    return gencli.fit(X, model="gmm", components=1, covariance="full", validation=0.0, seed=seed)


def _mc_norms(d: int, samples: int, rng: np.random.Generator) -> dict[str, float]:
    """Norm figures from ||x||^2 ~ chi2(d) drawn directly: same law, no n x d matrix.

    Drawn in blocks of MC_BLOCK; the blocks' means and sums of squared deviations are
    merged exactly as in Chan et al.'s pairwise update, so memory stays flat.
    """
    import numpy as np

    count = 0
    mean = 0.0
    squares = 0.0  # sum of squared deviations from the mean
    inside = 0
    for start in range(0, samples, MC_BLOCK):
        r2 = rng.chisquare(d, size=min(MC_BLOCK, samples - start))
        r = np.sqrt(r2)
        block_mean = float(r.mean())
        block_squares = float(np.sum(np.square(r - block_mean)))
        inside += int(np.count_nonzero(r2 <= 1.0))
        if count == 0:
            mean, squares = block_mean, block_squares
        else:
            total = count + r.size
            delta = block_mean - mean
            mean += delta * r.size / total
            squares += block_squares + delta * delta * count * r.size / total
        count += r.size
    return {
        "norm_mean_mc": mean,
        "norm_std_mc": math.sqrt(squares / (count - 1)),
        "mass_within_unit_ball_mc": inside / count,
    }


def _mc_distance_contrast(d: int, samples: int, rng: np.random.Generator) -> float:
    """(max - min) / min of distances from one random point to ``samples`` others.

    The points are drawn in blocks of about a million numbers so memory stays flat.
    """
    import numpy as np

    query = rng.standard_normal(d)
    block = max(1, (1 << 20) // d)
    lo, hi, done = math.inf, 0.0, 0
    while done < samples:
        rows = min(block, samples - done)
        dist = np.linalg.norm(rng.standard_normal((rows, d)) - query, axis=1)
        lo, hi = min(lo, float(dist.min())), max(hi, float(dist.max()))
        done += rows
    return (hi - lo) / lo if lo > 0 else math.inf


def heldout_gap(
    d: int,
    train: int,
    test: int,
    rng: np.random.Generator,
    fit: Fitter,
    model: str,
    seed: int,
) -> float:
    """Held-out KL(p || q) per dimension, in nats, of a model fitted to ``train`` draws.

    Estimated as the mean over ``test`` fresh draws of log p(x) - log q(x). Its
    expectation, -E[log q] - entropy(p), is the held-out negative log-likelihood minus
    the true entropy; pairing log p with log q on the same points removes most of the
    noise that log q alone would carry.
    """
    import numpy as np

    from gencli.limits import check_memory

    check_memory(
        8.0 * train * d * 3,  # the draws, their standardized copy and the model's points
        f"fitting a {model} to {train} training draws x {d} dimensions",
        "use a smaller --train or --learn-max-dim",
    )
    X_train = rng.standard_normal((train, d))
    fitted = fit(X_train, model, seed)
    del X_train
    block = max(1, MC_BLOCK // d)  # test rows drawn and scored a block at a time
    total = 0.0
    for start in range(0, test, block):
        X_test = rng.standard_normal((min(block, test - start), d))
        log_p = -0.5 * np.einsum("ij,ij->i", X_test, X_test) - d / 2.0 * math.log(2.0 * math.pi)
        log_q = np.asarray(fitted.score_samples(X_test), dtype=float)
        gap = log_p - log_q
        if test <= block:
            return float(np.mean(gap)) / d  # one block: exactly the one-pass figure
        total += float(np.sum(gap))
    return total / test / d


# --------------------------------------------------------------------------- records


def _float_or_none(log_value: float) -> float | None:
    """exp(log_value) when a double holds it at full precision, else None (see the log)."""
    return math.exp(log_value) if log_value >= _LOG_SMALLEST_NORMAL else None


def _record(
    d: int,
    samples: int,
    train: int,
    learn_max_dim: int,
    seed: int,
    fit: Fitter,
) -> dict[str, Any]:
    import numpy as np
    from scipy import stats

    norm_rng, dist_rng, kde_rng, gmm_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, d]).spawn(4)
    )
    mean, std = norm_moments(d)
    lo, hi = (float(v) for v in stats.chi.ppf([0.05, 0.95], d))
    log_mass = log_mass_within_unit_ball(d)
    log_ratio = ball_to_cube_log(d)
    kde_n, kde_log10_n, kde_h = kde_samples_needed(d)
    mc = _mc_norms(d, samples, norm_rng)
    learn = d <= learn_max_dim
    return {
        "dim": d,
        "norm_mean_exact": mean,
        "norm_mean_mc": mc["norm_mean_mc"],
        "norm_std_exact": std,
        "norm_std_mc": mc["norm_std_mc"],
        "shell_90_exact": [lo, hi],
        "mass_within_unit_ball_exact": _float_or_none(log_mass),
        "log10_mass_within_unit_ball_exact": log_mass / _LN10,
        "mass_within_unit_ball_mc": mc["mass_within_unit_ball_mc"],
        "log_density_gap_mode_vs_typical_exact": d / 2.0,
        "ball_to_cube_volume_exact": _float_or_none(log_ratio),
        "log10_ball_to_cube_volume_exact": log_ratio / _LN10,
        "outer_shell_volume_fraction_exact": -math.expm1(d * math.log1p(-0.01)),
        "distance_contrast_mc": _mc_distance_contrast(d, samples, dist_rng),
        "kde_samples_needed_exact": kde_n,
        "log10_kde_samples_needed_exact": kde_log10_n,
        "kde_bandwidth_exact": kde_h,
        "kde_heldout_gap": (
            heldout_gap(d, train, samples, kde_rng, fit, "kde", seed) if learn else None
        ),
        "gmm_heldout_gap": (
            heldout_gap(d, train, samples, gmm_rng, fit, "gmm", seed) if learn else None
        ),
    }


def run_curse(
    dims: Sequence[int] | str,
    *,
    samples: int = 10_000,
    train: int = 1_000,
    learn_max_dim: int = 64,
    seed: int = 0,
    fit: Fitter | None = None,
    on_dim: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every experiment for each dimension and return one record per dimension.

    Parameters
    ----------
    dims
        Dimensions, or a spec string for :func:`parse_dims`.
    samples
        Monte Carlo draws per dimension (norms, unit-ball mass, distance contrast), and
        the fresh draws the fitted models are scored on.
    train
        Draws the KDE and GMM are fitted to.
    learn_max_dim
        Fit and score models only for d up to this; the gap keys are None above it.
    seed
        Seeds every random step; each dimension's stream depends on (seed, d) only.
    fit
        ``fit(X, model, seed)`` returning an object with ``score_samples``; defaults to
        ``gencli.fit`` (tests pass a known density here).
    on_dim
        Called with each dimension once its record is done (for a progress bar).

    Records whose value a double cannot hold carry None (tiny masses and volume ratios,
    see the ``log10_`` twin) or ``inf`` (a KDE sample count past 1.8e308).
    """
    dim_list = parse_dims(dims) if isinstance(dims, str) else list(dims)
    for d in dim_list:
        _check_dim(int(d), str(d))
    if samples < 2:
        raise GencliError(f"samples must be at least 2, got {samples}")
    if learn_max_dim > 0 and train < 2:
        raise GencliError(f"train must be at least 2, got {train}")
    if seed < 0:
        raise GencliError(f"seed must be a non-negative integer, got {seed}")
    from gencli import native

    # (gencli.fit checks the room for what it loads itself.)
    native.load(["scipy.special", "scipy.stats", "scipy.optimize"], "the curse figures")
    fitter = fit or _gencli_fitter
    records = []
    for d in dim_list:
        try:
            records.append(_record(int(d), samples, train, learn_max_dim, seed, fitter))
        except MemoryError:
            raise ResourceError(
                f"ran out of memory while computing the figures for d = {d}; try a smaller "
                "--train or --learn-max-dim"
            ) from None
        if on_dim is not None:
            on_dim(int(d))
    return records
