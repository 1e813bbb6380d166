"""The curse of dimensionality, in numbers: exact figures and Monte Carlo side by side.

Every figure is about x ~ N(0, I_d). Exact ones come from :mod:`gencli.curse.figures`;
Monte Carlo ones are drawn here with one seed and sit beside their exact twins, and a
density learned from samples (gencli's own fit) is measured on held-out rows. Functions
here are pure: they return records (plain dicts) and never print.

The random stream of each dimension is derived from ``(seed, d)`` alone, so the figures
for d = 10 are the same whether d = 10 is run alone or inside a sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gencli.curse.figures import (
    LN10,
    LOG_SMALLEST_NORMAL,
    ball_to_cube_log,
    check_dim,
    kde_samples_needed,
    log_mass_within_unit_ball,
    norm_moments,
    parse_dims,
)
from gencli.errors import GencliError, ResourceError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["heldout_gap", "run_curse"]

#: Draws per block in the Monte Carlo loops: memory stays flat however many samples are
#: asked for. Generators give the same numbers drawn in blocks as in one call, so blocks
#: change no draw; up to this many samples the figures are computed exactly as in one pass.
MC_BLOCK = 1 << 20


# --------------------------------------------------------------------------- Monte Carlo


class DensityLike(Protocol):
    """What the held-out gap needs from a fitted model: log-densities of new rows."""

    def score_samples(self, X: np.ndarray) -> np.ndarray: ...


#: ``fit(X_train, model, seed) -> DensityLike``; model is "kde" or "gmm".
Fitter = Callable[["np.ndarray", str, int], DensityLike]


def _gencli_fitter(X: np.ndarray, model: str, seed: int) -> DensityLike:
    """Fit with gencli's own fitting code, as ``gencli.fit`` (the public API) does."""
    from gencli.fitting.fitter import fit

    if model == "kde":
        return fit(X, model="kde", bandwidth="scott", validation=0.0, seed=seed)
    return fit(X, model="gmm", components=1, covariance="full", validation=0.0, seed=seed)


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
    return math.exp(log_value) if log_value >= LOG_SMALLEST_NORMAL else None


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
        "log10_mass_within_unit_ball_exact": log_mass / LN10,
        "mass_within_unit_ball_mc": mc["mass_within_unit_ball_mc"],
        "log_density_gap_mode_vs_typical_exact": d / 2.0,
        "ball_to_cube_volume_exact": _float_or_none(log_ratio),
        "log10_ball_to_cube_volume_exact": log_ratio / LN10,
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
        check_dim(int(d), str(d))
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
