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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gencli.errors import FitError

#: Above this many columns the d x d covariance and its O(d^3) factorization per fold cost
#: more than the candidate is worth next to the diagonal mixtures.
MAX_COLUMNS = 500


def shrunk_covariance(Z: np.ndarray) -> tuple[np.ndarray, float]:
    """The OAS covariance of the rows ``Z`` (about their mean) and the shrinkage in [0, 1]."""
    from sklearn.covariance import oas

    covariance, shrinkage = oas(Z, assume_centered=False)
    return np.asarray(covariance, dtype=np.float64), float(shrinkage)


def fit(Z: np.ndarray, reg_covar: float = 1e-6) -> tuple[Any, float]:
    """A fitted one-component GaussianMixture whose covariance is the OAS estimate (plus
    ``reg_covar`` on the diagonal, as every mixture gets), and the shrinkage applied."""
    from gencli.density.families import gmm
    from gencli.errors import ModelFileError

    if Z.shape[0] < 2:
        raise FitError("a shrunk covariance needs at least 2 rows")
    covariance, shrinkage = shrunk_covariance(Z)
    covariance = covariance + reg_covar * np.eye(Z.shape[1])
    params = {
        "covariance_type": "full",
        "weights": np.ones(1),
        "means": Z.mean(axis=0, keepdims=True),
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
