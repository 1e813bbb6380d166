"""Independent checks of the quality benchmark's own numbers (``quality.py --selfcheck``).

- The BIC-loop mixture's "data units" conversion: with K=1 on standardized columns plus the
  Jacobian, the log-density must equal ``scipy.stats.multivariate_normal`` with the mean and
  covariance computed directly from the raw training rows (EM for one component is the
  sample mean and the ddof-0 covariance, plus reg_covar on the standardized diagonal).
- scipy's ``gaussian_kde``: its held-out mean must equal a direct sum of Gaussian kernels
  written here in numpy (bandwidth matrix = sample covariance x Scott's factor squared).
- statsmodels' ``normal_reference`` KDE: equal to a product-Gaussian kernel sum with
  bandwidths 1.06 sd n^(-1/(4+d)).
- ``KernelDensity()``: the benchmark's direct kernel sum equals scikit-learn's
  ``score_samples`` where its tree is right (iris), and shows where it is not (digits,
  scikit-learn #7492): the benchmark judges the density the model defines.
- The split, the discrete-column rule and the verdict rule on small known cases.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from quality_data import discrete_columns, load, split
from quality_methods import (
    bic_loop_fit,
    bic_loop_score,
    parse_gencli_args,
    scipy_gaussian_kde,
    sklearn_kde_default,
    standardizer,
    statsmodels_kde,
)
from quality_stats import LOSS, TIE, WIN, Score, judge
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

REG_COVAR = 1e-6  # GaussianMixture's default, added to the standardized covariance


def check_bic_units(name: str) -> str:
    train, test = (part.to_numpy(float) for part in split(load(name).frame, 0))
    model, center, scale = bic_loop_fit(train, components=range(1, 2))
    ours = bic_loop_score(model, center, scale, test)
    mean = train.mean(axis=0)
    cov = np.cov(train, rowvar=False, bias=True) + REG_COVAR * np.diag(scale**2)
    reference = multivariate_normal(mean, cov).logpdf(test)
    gap = float(np.max(np.abs(ours - reference)))
    assert gap < 1e-8, f"{name}: BIC-loop K=1 differs from scipy by {gap:.3g}"
    return f"BIC loop K=1 in data units = scipy multivariate_normal on {name}: max gap {gap:.1e}"


def direct_gaussian_kde(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """log of (1/n) sum_j N(x; x_j, H), H = cov(train, ddof=1) * n^(-2/(d+4))."""
    n, d = train.shape
    h = np.atleast_2d(np.cov(train, rowvar=False)) * n ** (-2.0 / (d + 4))
    inverse = np.linalg.inv(h)
    diff = test[:, None, :] - train[None, :, :]
    squared = np.einsum("mni,ij,mnj->mn", diff, inverse, diff)
    _, logdet = np.linalg.slogdet(2 * np.pi * h)
    return logsumexp(-0.5 * squared, axis=1) - math.log(n) - 0.5 * logdet


def check_gaussian_kde(name: str) -> str:
    train, test = split(load(name).frame, 0)
    scipy_mean = float(np.mean(scipy_gaussian_kde(train, test)))
    direct = float(np.mean(direct_gaussian_kde(train.to_numpy(float), test.to_numpy(float))))
    assert abs(scipy_mean - direct) < 1e-8 * max(1.0, abs(direct)), (scipy_mean, direct)
    return f"scipy gaussian_kde mean {scipy_mean:.10f} = direct kernel sum {direct:.10f} on {name}"


def check_statsmodels_kde(name: str) -> str:
    train, test = split(load(name).frame, 0)
    x, y = train.to_numpy(float), test.to_numpy(float)
    n, d = x.shape
    bandwidth = 1.06 * x.std(axis=0) * n ** (-1.0 / (4 + d))
    z = (y[:, None, :] - x[None, :, :]) / bandwidth
    direct = (
        logsumexp(-0.5 * np.sum(z**2, axis=2), axis=1)
        - math.log(n)
        - np.sum(np.log(bandwidth))
        - 0.5 * d * math.log(2 * math.pi)
    )
    ours = statsmodels_kde(train, test)
    gap = float(np.max(np.abs(ours - direct)))
    assert gap < 1e-8, f"statsmodels KDE differs from the direct product kernel by {gap:.3g}"
    return (
        f"statsmodels normal_reference KDE = direct product-Gaussian sum on {name}: gap {gap:.1e}"
    )


def check_rules() -> str:
    frame = pd.DataFrame(
        {"ints": np.arange(30) % 5, "many": np.arange(30), "real": np.linspace(0, 1, 30)}
    )
    assert discrete_columns(frame) == ["ints"], discrete_columns(frame)
    train, test = split(frame, 0)
    assert len(train) == 24 and len(test) == 6
    assert sorted([*train.index, *test.index]) == list(range(30))
    assert split(frame, 0)[1].index.equals(test.index), "the split must be repeatable"
    assert not split(frame, 1)[1].index.equals(test.index), "seeds must give other splits"

    def scores(values: list[float]) -> list[Score]:
        return [Score(0, np.array(values, dtype=float), 0.0)]

    base = [-1.0, -2.0, -3.0, -4.0]
    assert judge(scores([-1.0, -2.0, -3.0, -3.9]), {"a": scores(base)}).verdict == WIN
    # 0.1 nats/row below; the per-row differences (-0.3, 0.1, -0.3, 0.1) have SE 0.115: a tie
    tie = judge(scores([-1.3, -1.9, -3.3, -3.9]), {"a": scores(base)})
    assert tie.verdict == TIE and math.isclose(tie.difference, -0.1), tie
    assert math.isclose(tie.paired_se, 0.4 / math.sqrt(3) / 2), tie
    assert judge(scores([-2.0, -3.0, -4.0, -5.1]), {"a": scores(base)}).verdict == LOSS
    inf = judge(scores([-1.0, -np.inf, -3.0, -4.0]), {"a": scores(base)})
    assert inf.verdict == LOSS
    failed = [Score(0, None, 0.0, "LinAlgError")]
    assert judge(scores(base), {"a": failed, "b": scores([-9.0] * 4)}).best == "b"
    expected = {"model": "kde", "bandwidth": "cv", "standardize": False, "components": "1..4"}
    assert parse_gencli_args("--model kde --bandwidth cv --no-standardize -k 1..4") == expected
    return "split, discrete-column rule, verdict rule and --gencli-args parsing"


def check_sklearn_kde() -> str:
    from sklearn.neighbors import KernelDensity

    gaps = {}
    for name in ("iris", "digits"):
        train, test = split(load(name).frame, 0)
        ours = sklearn_kde_default(train, test)
        theirs = KernelDensity().fit(train.to_numpy(float)).score_samples(test.to_numpy(float))
        gaps[name] = float(np.max(np.abs(ours - theirs)))
    assert gaps["iris"] < 1e-8, gaps
    return (
        f"KernelDensity() = direct kernel sum on iris (gap {gaps['iris']:.1e}); on digits "
        f"its score_samples is off by up to {gaps['digits']:.1f} nats (scikit-learn #7492)"
    )


def selfcheck() -> int:
    np.testing.assert_allclose(standardizer(np.array([[1.0], [1.0]]))[1], [1.0])
    for line in (
        check_bic_units("stackloss"),
        check_bic_units("wine"),
        check_gaussian_kde("copper"),
        check_gaussian_kde("iris"),
        check_statsmodels_kde("engel"),
        check_sklearn_kde(),
        check_rules(),
    ):
        print(f"ok  {line}")
    print("selfcheck passed")
    return 0
