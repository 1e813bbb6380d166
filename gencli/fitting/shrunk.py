"""One Gaussian with a shrunk covariance: the candidate for few rows in many columns.

With n rows in d columns a full covariance has d(d+1)/2 free numbers; when n is not much
larger than d its maximum-likelihood estimate is too confident in its smallest directions,
and a held-out row pays for it (elnino, 49 rows x 13 columns: one full Gaussian scores 2 nats/row
worse on 39-row folds than on 49 rows). The Oracle Approximating Shrinkage estimate (Chen,
Wiesel, Eldar & Hero 2010, scikit-learn's ``oas``) pulls the sample covariance towards a
multiple of the identity by an amount computed from the data alone, so it costs one fit, not
a search. On standardized columns the target is the identity's multiple trace(S)/d = 1-ish,
i.e. independent columns of the observed spread.

The result is an ordinary one-component full-covariance mixture: the model file, scoring,
sampling and inspect need nothing new.

With row weights the mean and the sample covariance are weighted (the covariance divided by
the summed weight, as the unweighted one is by n) and n in the shrinkage is the effective
sample size (sum w)^2 / sum w^2: for frequency weights that is the one difference from the
rows repeated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gencli.errors import FitError

#: Above this many columns the d x d covariance and its O(d^3) factorization per fold cost
#: more than the candidate is worth next to the diagonal mixtures.
MAX_COLUMNS = 500


def shrunk_covariance(Z: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The OAS covariance of the rows ``Z`` (about their mean) and the shrinkage in [0, 1]."""
    from sklearn.covariance import oas

    if weights is None:
        covariance, shrinkage = oas(Z, assume_centered=False)
        return np.asarray(covariance, dtype=np.float64), float(shrinkage)
    return _weighted_oas(Z, weights)


def _weighted_oas(Z: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """scikit-learn's OAS formula (its ``_oas``) on the weighted covariance, with n_eff."""
    from gencli.density.families.kde import effective_size

    share = weights / weights.sum()
    centred = Z - share @ Z
    if Z.shape[1] == 1:  # one column: the same whatever the shrinkage
        return np.atleast_2d(share @ centred[:, 0] ** 2), 0.0
    emp_cov = (centred * share[:, None]).T @ centred
    d = Z.shape[1]
    alpha = float(np.mean(emp_cov**2))
    mu = float(np.trace(emp_cov)) / d
    num = alpha + mu**2
    den = (effective_size(weights) + 1) * (alpha - mu**2 / d)
    shrinkage = 1.0 if den == 0 else min(num / den, 1.0)
    covariance = (1.0 - shrinkage) * emp_cov
    covariance.flat[:: d + 1] += shrinkage * mu
    return covariance, float(shrinkage)


def fit(
    Z: np.ndarray, reg_covar: float = 1e-6, weights: np.ndarray | None = None
) -> tuple[Any, float]:
    """A fitted one-component GaussianMixture whose covariance is the OAS estimate (plus
    ``reg_covar`` on the diagonal, as every mixture gets), and the shrinkage applied; with
    row ``weights``, of the weighted mean and covariance (see the module's docstring)."""
    from gencli.density.families import gmm
    from gencli.errors import ModelFileError

    if Z.shape[0] < 2:
        raise FitError("a shrunk covariance needs at least 2 rows")
    covariance, shrinkage = shrunk_covariance(Z, weights)
    covariance = covariance + reg_covar * np.eye(Z.shape[1])
    mean = Z.mean(axis=0, keepdims=True) if weights is None else (weights / weights.sum()) @ Z
    params = {
        "covariance_type": "full",
        "weights": np.ones(1),
        "means": np.atleast_2d(mean),
        "covariances": covariance[np.newaxis],
        "converged": True,
        "n_iter": 0,
        "lower_bound": float("nan"),
        "max_iter": 100,
        "n_init": 1,
        "tol": 1e-3,
        "reg_covar": float(reg_covar),
    }
    try:
        estimator = gmm.from_params(params)
    except ModelFileError as exc:  # a covariance no Cholesky accepts
        raise FitError(f"the shrunk covariance could not be factorized ({exc})") from exc
    return estimator, shrinkage
