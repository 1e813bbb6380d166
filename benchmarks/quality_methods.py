"""The density estimators the quality benchmark compares, one small function each.

Each method takes the training and test rows (DataFrames with the same columns), fits on
the training rows only and returns the natural log of the fitted density at every test row,
**in the data's own units**: a method that works on standardized columns adds the Jacobian
of the standardization, ``-sum(log scale)``, so every number is comparable.

The plain alternatives are what a user would write by hand with scikit-learn, scipy or
statsmodels; the gencli methods call the library as a user would.
"""

from __future__ import annotations

import math
import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

Method = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
BIC_COMPONENTS = range(1, 11)


@dataclass(frozen=True)
class Entry:
    """A method under a display name; ``plain`` marks the alternatives gencli is judged against."""

    name: str
    short: str  # column header in the wide tables
    run: Method
    plain: bool
    dequantizes: str = ""  # the plain method this one runs on dequantized rows (see below)


# --- gencli ---------------------------------------------------------------------------------


def gencli_method(**options: Any) -> Method:
    """``gencli.fit(train, seed=0, **options)``, scored with ``model.score_samples(test)``.

    The warnings gencli records in the model's metadata (whole-number columns, ...) are
    re-issued as Python warnings, so the benchmark keeps them with the scores (--json).
    """

    def run(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        import gencli

        model = gencli.fit(train, seed=0, **options)
        for note in model.metadata.get("warnings", []):
            warnings.warn(f"gencli: {note}", UserWarning, stacklevel=1)
        return np.asarray(model.score_samples(test), dtype=float)

    return run


def parse_gencli_args(text: str) -> dict[str, Any]:
    """CLI-style options as ``gencli.fit`` keywords: ``"--model kde --bandwidth cv -k 1..4"``.

    ``--name value`` becomes ``name=value`` (dashes to underscores; numbers parsed),
    ``--no-name`` becomes ``name=False``, a flag with no value ``name=True``; ``-k`` is
    ``components``.
    """
    tokens = shlex.split(text)
    options: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-k":
            token = "--components"
        if not token.startswith("--"):
            raise ValueError(f"expected an option like --model, got {token!r} in {text!r}")
        key = token[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
            options[key] = _value(value)
        elif key.startswith("no_"):
            options[key[3:]] = False
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            options[key] = _value(tokens[i + 1])
            i += 1
        else:
            options[key] = True
        i += 1
    return options


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# --- plain alternatives ---------------------------------------------------------------------


def sklearn_gmm_default(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """``GaussianMixture()`` on the raw data (one full-covariance component)."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(random_state=0).fit(train.to_numpy(float))
    return model.score_samples(test.to_numpy(float))


def standardizer(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training mean and standard deviation (ddof 0; 1 for a constant column)."""
    center = train.mean(axis=0)
    scale = train.std(axis=0)
    return center, np.where(scale > 0, scale, 1.0)


def bic_loop_fit(train: np.ndarray, components: range = BIC_COMPONENTS) -> tuple[Any, Any, Any]:
    """GaussianMixture(K, full, random_state=0) on standardized columns, K with the least BIC.

    Returns (model, center, scale). A K that cannot be fitted (more components than rows,
    a singular covariance) is skipped.
    """
    from sklearn.mixture import GaussianMixture

    center, scale = standardizer(train)
    z = (train - center) / scale
    best, best_bic = None, np.inf
    for k in components:
        if k > len(z):
            break
        try:
            model = GaussianMixture(k, covariance_type="full", random_state=0).fit(z)
            bic = model.bic(z)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if bic < best_bic:
            best, best_bic = model, bic
    if best is None:
        raise ValueError("no K in the BIC loop could be fitted")
    return best, center, scale


def bic_loop_score(model: Any, center: np.ndarray, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Log-density in data units: the standardized density plus the Jacobian -sum(log scale)."""
    return model.score_samples((x - center) / scale) - np.sum(np.log(scale))


def sklearn_gmm_bic(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """GaussianMixture with K in 1..10 chosen by BIC on standardized data, in data units."""
    model, center, scale = bic_loop_fit(train.to_numpy(float))
    return bic_loop_score(model, center, scale, test.to_numpy(float))


def sklearn_kde_default(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """``KernelDensity()`` on the raw data: Gaussian kernel, bandwidth 1.0 in data units.

    The figure is that model's density, summed directly over every kernel
    (:func:`gaussian_kernel_sum`), not ``KernelDensity.score_samples``: its tree's bounds
    are wrong in many dimensions (scikit-learn issue #7492, open since 2016, found on the
    same digits): on this benchmark's digits split it scored held-out rows up to 48 nats
    above the density it defines (mean -94 against the true -130). ``--selfcheck`` shows
    both agree where the tree is right."""
    from sklearn.neighbors import KernelDensity

    x = train.to_numpy(float)
    KernelDensity().fit(x)  # what the user runs; its parameters are the defaults used below
    return gaussian_kernel_sum(x, test.to_numpy(float), bandwidth=1.0)


def gaussian_kernel_sum(points: np.ndarray, rows: np.ndarray, bandwidth: float) -> np.ndarray:
    """log of (1/n) sum_i N(row; point_i, bandwidth^2 I), by a log-sum-exp over every
    point (squared distances from the differences, in blocks of rows)."""
    from scipy.special import logsumexp

    n, d = points.shape
    out = np.empty(rows.shape[0])
    block = max(1, 2_000_000 // max(1, n * d))
    for start in range(0, rows.shape[0], block):
        diff = rows[start : start + block, None, :] - points[None]
        squared = np.einsum("rnd,rnd->rn", diff, diff)
        out[start : start + block] = logsumexp(-0.5 * squared / bandwidth**2, axis=1)
    return out - math.log(n) - d * (math.log(bandwidth) + 0.5 * math.log(2 * math.pi))


def scipy_gaussian_kde(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """``scipy.stats.gaussian_kde`` on the raw data: full bandwidth matrix, Scott's rule."""
    from scipy.stats import gaussian_kde

    return gaussian_kde(train.to_numpy(float).T).logpdf(test.to_numpy(float).T)


def statsmodels_kde(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """``KDEMultivariate(var_type='c'*d, bw='normal_reference')``: per-column bandwidths.

    statsmodels gives densities, not log-densities: a row whose density underflows to 0
    scores -inf. (``rng`` only seeds its cross-validated bandwidths, unused here; passing it
    silences a deprecation warning.)
    """
    from statsmodels.nonparametric.kernel_density import KDEMultivariate

    x = train.to_numpy(float)
    model = KDEMultivariate(x, var_type="c" * x.shape[1], bw="normal_reference", rng=0)
    density = np.atleast_1d(model.pdf(test.to_numpy(float)))
    with np.errstate(divide="ignore"):
        return np.log(density)


#: Uniform draws per test row with which a dequantized method's box probability is estimated
#: (fewer, at least 4, when the test rows times the draws would pass BOX_POINTS: statsmodels
#: scores a point at a time, and randhie's 3,230 test rows x 32 took over ten minutes).
BOX_DRAWS = 32
BOX_POINTS = 20_000


def dequantized(method: Method) -> Method:
    """``method`` made comparable with gencli on whole-number columns: fitted to the training
    rows with U[0, 1) added to those columns (a seeded draw), and scoring each test row by
    the log of its integer box's probability times the density of the other columns,
    estimated as the mean density at ``BOX_DRAWS`` uniform points of the box (the same
    quantity gencli reports exactly). A data set without such columns is scored as is."""

    def run(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        from quality_data import discrete_columns
        from scipy.special import logsumexp

        columns = discrete_columns(train)
        if not columns:
            return method(train, test)
        rng = np.random.default_rng(0)
        spread = train.copy()
        spread[columns] = spread[columns] + rng.random((len(spread), len(columns)))
        draws = max(4, min(BOX_DRAWS, BOX_POINTS // max(1, len(test))))
        points = test.loc[test.index.repeat(draws)].reset_index(drop=True)
        points[columns] = np.floor(points[columns]) + rng.random((len(points), len(columns)))
        scores = np.asarray(method(spread, points), dtype=float).reshape(len(test), draws)
        with np.errstate(divide="ignore"):
            return logsumexp(scores, axis=1) - np.log(draws)

    return run


def methods(extra_gencli: list[str] | None = None) -> list[Entry]:
    """Every method in table order: gencli's default first, then its references, the plain ones."""
    entries = [
        Entry("gencli default", "gencli default", gencli_method(), plain=False),
        Entry("gencli gmm", "gencli gmm", gencli_method(model="gmm"), plain=False),
        Entry("gencli kde", "gencli kde", gencli_method(model="kde"), plain=False),
    ]
    for text in extra_gencli or []:
        options = parse_gencli_args(text)
        entries.append(Entry(f"gencli {text}", f"gencli {text}", gencli_method(**options), False))
    entries += [
        Entry("sklearn GaussianMixture()", "GM()", sklearn_gmm_default, plain=True),
        Entry(
            "sklearn GaussianMixture, K by BIC 1..10, standardized",
            "GM BIC",
            sklearn_gmm_bic,
            plain=True,
        ),
        Entry("sklearn KernelDensity()", "KD()", sklearn_kde_default, plain=True),
        Entry("scipy gaussian_kde", "gaussian_kde", scipy_gaussian_kde, plain=True),
        Entry(
            "statsmodels KDEMultivariate normal_reference",
            "KDEMultivariate",
            statsmodels_kde,
            plain=True,
        ),
    ]
    for plain in [e for e in entries if e.plain]:
        entries.append(
            Entry(f"{plain.name}, dequantized", f"{plain.short} deq.", dequantized(plain.run),
                  plain=True, dequantizes=plain.name)
        )  # fmt: skip
    return entries
