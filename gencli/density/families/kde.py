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

from gencli.density.families.kernels import KERNELS, kernel_factor
from gencli.errors import FitError, ModelFileError

RULES = ("scott", "silverman")
# Bandwidths gencli fits, scores and stores (in the estimator's units, standardized unless
# --no-standardize): model files hold the same range. Beyond it h^2 and (x / h)^2 leave
# the double range for ordinary data and the density is a row of spikes or flat.
MIN_BANDWIDTH = 1e-100
MAX_BANDWIDTH = 1e100


def effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of weighted rows: n when the weights
    are equal, unchanged when they are all scaled. Rules that depend on n use it."""
    top = float(weights.max())
    unit = weights / top  # no overflow or underflow in the squares
    return float(np.sum(unit) ** 2 / np.sum(unit * unit))


def rule_of_thumb(
    Z: np.ndarray, rule: str, kernel: str = "gaussian", weights: np.ndarray | None = None
) -> float:
    """Scott's or Silverman's bandwidth for the data's own scale, converted to ``kernel``.

    The spread is the root mean of the column variances, which is 1 on standardized data
    (where this agrees with scikit-learn's rule for the Gaussian kernel). With row
    ``weights`` the variances are weighted and n is the effective sample size
    (:func:`effective_size`): for frequency weights this is not the rule on the repeated
    rows, whose n would be the summed weight.
    """
    d = Z.shape[1]
    n = Z.shape[0] if weights is None else effective_size(weights)
    if rule == "scott":
        factor = n ** (-1.0 / (d + 4))
    elif rule == "silverman":
        factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise ValueError(f"unknown bandwidth rule {rule!r}")
    spread = _spread(Z, weights)
    if not spread > 0:
        raise FitError("every column is constant, so no bandwidth fits; the data has no spread")
    return factor * spread * kernel_factor(kernel, d)


def _spread(Z: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Root mean of the (weighted) column variances, without squaring values near 1e+-300."""
    from gencli.density.preprocess import column_magnitudes, column_moments

    if weights is None:
        _, std = column_moments(Z)
    else:  # each column in units of its largest magnitude, as column_moments does
        magnitude = column_magnitudes(Z)
        unit, share = Z / magnitude, weights / weights.sum()
        std = np.sqrt(share @ (unit - share @ unit) ** 2) * magnitude
    largest = float(std.max()) if std.size else 0.0
    if not largest > 0:
        return 0.0
    return largest * float(np.sqrt(np.mean((std / largest) ** 2)))


def choose_bandwidth(
    Z: np.ndarray, bandwidth: float | str, kernel: str, weights: np.ndarray | None = None
) -> tuple[float, str | None]:
    """The bandwidth to use and the rule that chose it (None when given as a number); a
    rule sees the rows' ``weights``."""
    if kernel not in KERNELS:
        raise FitError(f"unknown kernel '{kernel}'; use one of {', '.join(KERNELS)}")
    if Z.shape[0] < 2:
        raise FitError(f"a kernel density needs at least 2 rows but the data has {Z.shape[0]}")
    if isinstance(bandwidth, str):
        if bandwidth not in RULES:
            raise FitError(
                f"unknown bandwidth '{bandwidth}'; give a positive number or one of "
                f"{', '.join(RULES)}"
            )
        value = rule_of_thumb(Z, bandwidth, kernel, weights)
        if not MIN_BANDWIDTH < value < MAX_BANDWIDTH:
            raise FitError(
                f"the {bandwidth} bandwidth for this data, {value:.3g}, is outside the range "
                f"{MIN_BANDWIDTH:g} to {MAX_BANDWIDTH:g} that gencli computes with; fit with "
                "standardizing on (drop --no-standardize) or rescale the data"
            )
        return value, bandwidth
    try:
        value = float(bandwidth)
    except (TypeError, ValueError):
        raise FitError(f"--bandwidth must be a positive number but got {bandwidth!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise FitError(f"--bandwidth must be a positive number but got {bandwidth}")
    if not MIN_BANDWIDTH < value < MAX_BANDWIDTH:
        scott = rule_of_thumb(Z, "scott", kernel, weights)
        raise FitError(
            f"--bandwidth {value:g} is outside the range {MIN_BANDWIDTH:g} to "
            f"{MAX_BANDWIDTH:g} that gencli computes with (beyond it h^2 over- or "
            f"underflows); a sensible bandwidth is near Scott's rule, {scott:.3g} for this "
            "data (in standardized units unless --no-standardize)"
        )
    return value, None


def fit(
    Z: np.ndarray,
    *,
    bandwidth: float | str = "scott",
    kernel: str = "gaussian",
    rotation: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """A kernel density is its training points, kernel and bandwidth: return those.

    With a ``rotation`` W (see :func:`whitening`) the kernels are round in y = z W rather
    than in z: a full bandwidth matrix that follows the data's correlations, as scipy's
    ``gaussian_kde`` does. The bandwidth (and its rule) is then in y's units.

    Row ``weights`` (> 0) weight the kernels (stored normalized to sum 1): the density is
    sum_i w_i K_h(x - x_i) / sum_i w_i, for integer weights that of the rows repeated w_i
    times at the same bandwidth (a rule of thumb differs: see :func:`rule_of_thumb`).
    """
    if np.abs(Z).max() > 1e100:
        raise FitError(
            "values beyond 1e100 in the fitting space; fit with standardizing on "
            "(drop --no-standardize) or rescale the data"
        )
    space = Z if rotation is None else Z @ rotation
    value, rule = choose_bandwidth(space, bandwidth, kernel, weights)
    params: dict[str, Any] = {
        "kernel": kernel,
        "bandwidth": value,
        "bandwidth_rule": rule,
        "points": np.ascontiguousarray(Z, dtype=np.float64),
    }
    if rotation is not None:
        params["rotation"] = np.ascontiguousarray(rotation, dtype=np.float64)
    if weights is not None:
        params["weights"] = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    return params


#: Largest condition number of the rows' covariance that a rotation is made from: beyond it
#: the columns are (nearly) collinear and the rotated kernels would be needles.
MAX_CONDITION = 1e10


def whitening(Z: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | None:
    """W with cov(Z W) = I (W = L^-T for cov(Z) = L L^T), or None where the covariance is
    too close to singular (or there is one column, where a rotation adds nothing). With row
    ``weights`` the covariance is weighted (numpy's ``aweights``: unchanged by scaling them)."""
    n, d = Z.shape
    if d < 2 or n <= d:
        return None
    covariance = np.cov(Z, rowvar=False, aweights=weights)
    eigenvalues = np.linalg.eigvalsh(covariance)
    if not (eigenvalues[0] > 0 and eigenvalues[-1] / eigenvalues[0] < MAX_CONDITION):
        return None
    lower = np.linalg.cholesky(covariance)
    return np.ascontiguousarray(np.linalg.inv(lower).T)


def log_abs_det(rotation: np.ndarray) -> float:
    """log |det W|: the Jacobian a rotation adds to every log-density."""
    return float(np.linalg.slogdet(rotation)[1])


def _rotated_points(params: dict[str, Any], cache: dict | None) -> np.ndarray:
    if cache is not None and "rotated_points" in cache:
        return cache["rotated_points"]
    rotated = np.ascontiguousarray(np.asarray(params["points"]) @ params["rotation"])
    if cache is not None:
        cache["rotated_points"] = rotated
    return rotated


def log_density(
    params: dict[str, Any], Z: np.ndarray, *, mode: str = "fast", cache: dict | None = None
) -> np.ndarray:
    """log-density of each row of Z (estimator space); see
    :mod:`gencli.density.families.kde_scoring`."""
    from gencli.density.families.kde_scoring import log_density as evaluate

    rotation = params.get("rotation")
    if rotation is None:
        points, rows, jacobian = np.asarray(params["points"]), Z, 0.0
    else:
        points, rows = _rotated_points(params, cache), Z @ rotation
        jacobian = log_abs_det(rotation)
    kernel, bandwidth = params["kernel"], float(params["bandwidth"])
    weights = params.get("weights")
    return (
        evaluate(points, rows, kernel, bandwidth, mode=mode, cache=cache, point_weights=weights)
        + jacobian
    )


def check_params(params: dict[str, Any], n_features: int | None = None) -> None:
    """Refuse parameters that cannot describe a kernel density over ``n_features`` columns
    (without scikit-learn): the points' shape is checked before their values."""
    kernel = params.get("kernel")
    if type(kernel) is not str or kernel not in KERNELS:
        shown = kernel[:40] if type(kernel) is str else type(kernel).__name__
        raise ModelFileError(f"unknown kernel {shown!r} in the model file")
    bandwidth = params.get("bandwidth")
    if type(bandwidth) is not float or not (1e-100 < bandwidth < 1e100):
        shown_bandwidth = bandwidth if type(bandwidth) in (int, float) else type(bandwidth).__name__
        raise ModelFileError(
            "the bandwidth in the model file is not a positive number of sensible size: "
            f"{shown_bandwidth}"
        )
    rule = params.get("bandwidth_rule")
    if "bandwidth_rule" not in params or not (rule is None or type(rule) is str):
        raise ModelFileError("the model file does not say how its bandwidth was chosen")
    points = params.get("points")
    if not isinstance(points, np.ndarray) or points.dtype.kind not in "iuf":
        raise ModelFileError("the training points in the model file are not an array of numbers")
    width = points.shape[1] if n_features is None and points.ndim == 2 else n_features
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] != width or not width:
        wanted = f"(points, {width}) for its {width} columns" if width else "(points, columns)"
        raise ModelFileError(
            f"the training points in the model file have shape {points.shape}, not {wanted}"
        )
    # The extremes say it all (NaN propagates through min and max), without temporaries.
    low, high = float(points.min()), float(points.max())
    if not (math.isfinite(low) and math.isfinite(high)) or max(high, -low) > 1e100:
        raise ModelFileError(
            "the training points in the model file are not finite numbers of sensible size"
        )
    if "rotation" in params:
        _check_rotation(params["rotation"], points.shape[1])
    if "weights" in params:
        _check_weights(params["weights"], points.shape[0])


def _check_weights(weights: Any, n: int) -> None:
    """Point weights must be n finite numbers >= 0, not all zero."""
    if not isinstance(weights, np.ndarray) or weights.dtype.kind != "f" or weights.shape != (n,):
        raise ModelFileError(f"the point weights in the model file are not {n} numbers")
    if not (np.all(np.isfinite(weights)) and weights.min() >= 0 and weights.max() > 0):
        raise ModelFileError("the point weights in the model file are not finite and >= 0")


def _check_rotation(rotation: Any, d: int) -> None:
    """A rotation must be a finite, invertible d x d matrix of floats."""
    if not isinstance(rotation, np.ndarray) or rotation.dtype.kind != "f":
        raise ModelFileError("the rotation in the model file is not an array of numbers")
    if rotation.shape != (d, d):
        raise ModelFileError(
            f"the rotation in the model file has shape {rotation.shape}, not ({d}, {d})"
        )
    if not np.all(np.isfinite(rotation)):
        raise ModelFileError("the rotation in the model file holds non-finite numbers")
    sign, log_det = np.linalg.slogdet(rotation)
    if sign == 0 or not math.isfinite(log_det) or abs(log_det) > 700:
        raise ModelFileError("the rotation in the model file is singular or of absurd scale")


def from_params(params: dict[str, Any]) -> Any:
    """scikit-learn's KernelDensity on the training points, for Python users who want it.

    gencli itself never scores with it (see :mod:`gencli.density.families.kde_scoring`).
    """
    from sklearn.neighbors import KernelDensity

    check_params(params)
    points = np.asarray(params["points"], dtype=np.float64)
    if "rotation" in params:  # scikit-learn's kernels are round: fit it in the rotated space
        points = points @ params["rotation"]
    estimator = KernelDensity(bandwidth=float(params["bandwidth"]), kernel=params["kernel"])
    return estimator.fit(points, sample_weight=params.get("weights"))


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
    weights = params.get("weights")
    if weights is None:
        picks = rng.integers(0, points.shape[0], size=n)
    else:  # a weighted (or conditioned) density: a point in proportion to its weight
        picks = rng.choice(points.shape[0], size=n, p=weights / weights.sum())
    noise = kernel_noise(params["kernel"], n, points.shape[1], rng)
    if "rotation" in params:  # round in y = z W: back to z through W^-1
        noise = noise @ np.linalg.inv(params["rotation"])
    return points[picks] + params["bandwidth"] * noise


def bandwidth_matrix(params: dict[str, Any], scale: np.ndarray) -> np.ndarray:
    """The kernels' covariance in the data's units, H = h^2 A^T A with A = W^-1 diag(scale)
    (W the rotation, identity when there is none): a Gaussian kernel is N(x_i, H)."""
    h = float(params["bandwidth"])
    scale = np.asarray(scale, dtype=np.float64)
    if "rotation" not in params:
        return np.diag((h * scale) ** 2)
    a = np.linalg.inv(params["rotation"]) * scale[None, :]
    return h * h * (a.T @ a)


def describe(params: dict[str, Any]) -> dict[str, Any]:
    """A short, printable summary of the kernel density."""
    return {
        "kernel": params["kernel"],
        "bandwidth": params["bandwidth"],
        "bandwidth_rule": params["bandwidth_rule"],
        "training_points": int(np.asarray(params["points"]).shape[0]),
        "rotated": "rotation" in params,
        "weighted": "weights" in params,
    }
