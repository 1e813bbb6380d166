"""scikit-learn estimators over :func:`gencli.fit`, for notebooks, Pipelines and GridSearchCV.

Each estimator's constructor takes :func:`gencli.fit`'s keyword arguments (the flags of
``gencli fit``, with the same names and defaults), ``fit(X)`` calls :func:`gencli.fit` once
and keeps the :class:`~gencli.density.model.DensityModel` it returns as ``model_``, and
every score is a log-density in the data's own units. ``fit`` therefore gives the numbers
``gencli fit`` gives for the same rows, options and seed.

One default differs from the command line: ``validation=0``. A scikit-learn estimator
learns from every row it is given, and the rows a score is judged on are held out by
``cross_val_score`` or ``GridSearchCV`` (whose ``score`` is the mean log-likelihood of the
rows it held out); the command line's 20% hold-out would take rows from each fold's
training set a second time. ``validation=0.2`` gives the command line's behaviour.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from gencli.density.model import DensityModel
from gencli.density.modelinfo import bandwidth_in_data_units, component_variances
from gencli.fitting.fitter import fit as fit_density
from gencli.io.table import default_names

__all__ = ["AutoDensity", "GaussianMixtureDensity", "KernelDensity"]

#: Every attribute a fit learns, so that a refit leaves none of an earlier family's behind.
LEARNED = (
    "model_", "family_", "n_features_in_", "feature_names_in_", "weights_", "means_",
    "covariances_", "covariance_type_", "n_components_", "converged_", "bandwidth_",
    "kernel_", "column_bandwidths_", "transformed_columns_",
)  # fmt: skip


class _Density(DensityMixin, BaseEstimator):
    """What the three estimators share: fitting through :func:`gencli.fit`, scoring,
    sampling and the bridge to model files. ``_family`` is fit's ``model`` argument."""

    _family = "auto"

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit the density to the rows of ``X`` (an array or a DataFrame) with one call to
        :func:`gencli.fit`.

        Args:
            X: rows x columns of numbers; a DataFrame's column names are kept and its
                samples come back as a DataFrame.
            y: ignored (a density has no target), accepted so that Pipelines can pass it.
            sample_weight: one non-negative weight per row, as fit's ``weights``.

        Returns:
            The fitted estimator itself.
        """
        for name in LEARNED:
            self.__dict__.pop(name, None)
        rows = self._validate(X, reset=True)
        weights = self.weights
        if sample_weight is not None:
            if weights is not None:
                raise ValueError("give the weights once: as weights= or as sample_weight")
            weights = _check_sample_weight(sample_weight, rows, dtype=np.float64)
        names = getattr(self, "feature_names_in_", None)
        data: Any = rows
        if names is not None:
            import pandas as pd

            data = pd.DataFrame(rows, columns=list(names), copy=False)
        options = self.get_params(deep=False)
        options["weights"] = weights
        # Rows validate_data copied (from a list, other dtypes) are ours to standardize in place.
        options["overwrite_data"] = names is None and not np.may_share_memory(rows, X)
        self.model_ = fit_density(data, self._family, **options)
        column_names = default_names(rows.shape[1]) if names is None else list(names)
        # The columns modelled, by position (a weights column is not).
        dropped = self.weights if isinstance(self.weights, str) else None
        self._modelled = [j for j, c in enumerate(column_names) if c != dropped]
        self._learn(self.model_)
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Natural log of the density at each row of ``X``, in the data's own units (rows
        with empty cells are refused, as ``gencli score`` refuses them)."""
        check_is_fitted(self, "model_")
        rows = self._validate(X, reset=False)
        return np.asarray(self.model_.score_samples(rows[:, self._modelled]))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per row of ``X`` (nats): what GridSearchCV maximizes."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: Any = None) -> Any:
        """Draw ``n_samples`` rows in the data's own units: a DataFrame with the training
        columns when the estimator was fitted on a DataFrame, else an array.

        ``random_state``: an int (the same int gives the same rows as ``gencli sample
        --seed``), a NumPy generator, or None for fresh rows each call.
        """
        check_is_fitted(self, "model_")
        seed = _seed(random_state)
        return self.model_.sample(n_samples, seed=seed, as_frame=hasattr(self, "feature_names_in_"))

    def to_model(self) -> DensityModel:
        """The fitted :class:`~gencli.density.model.DensityModel` (what ``gencli fit``
        saves; it also has marginals, conditionals and imputation)."""
        check_is_fitted(self, "model_")
        return self.model_

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file, the same file ``gencli fit -o`` writes; read it back with
        :func:`gencli.load`, or use it with ``gencli score`` and ``gencli sample``."""
        self.to_model().save(path)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = getattr(self, "missing", None) == "em"
        return tags

    def _validate(self, X: Any, *, reset: bool) -> np.ndarray:
        """scikit-learn's checks (ValueError or TypeError with its usual messages), rows as
        float64; NaN cells only to fit with ``missing='em'``."""
        gaps = reset and getattr(self, "missing", None) == "em"
        finite: Any = "allow-nan" if gaps else True
        return np.asarray(
            validate_data(
                self, X, reset=reset, dtype=np.float64, ensure_all_finite=finite,
                ensure_min_samples=2 if reset else 1,
            )
        )  # fmt: skip

    def _learn(self, model: DensityModel) -> None:
        """The learned attributes, in the data's units, from the fitted model."""
        self.family_ = model.family
        params, scale = model.params, model.scale
        # Columns modelled through a log/logit transform (bounds): their spreads below are in
        # the transform's units; a mixture's means are still means in the data's units.
        self.transformed_columns_ = (
            [] if model.bounds is None else [model.columns[j] for j in model.bounds.columns]
        )
        if model.family == "gmm":
            kind = str(params["covariance_type"])
            weights = np.asarray(params["weights"], dtype=np.float64)
            covariances = np.asarray(params["covariances"], dtype=np.float64)
            self.weights_ = weights
            self.means_ = np.asarray(params["means"]) * scale + model.shift
            if model.bounds is not None:  # E[t^-1(y)] of each component, column by column
                variances = component_variances(params) * scale**2
                self.means_ = model.bounds.inverse_mean(
                    self.means_, np.sqrt(variances), range(len(model.columns))
                )
            self.covariance_type_ = kind
            self.n_components_ = len(weights)
            self.converged_ = bool(params.get("converged", True))
            if kind in ("full", "tied"):
                self.covariances_ = covariances * np.outer(scale, scale)
            elif kind == "diag":
                self.covariances_ = covariances * scale**2
            else:  # round in standardized units is axis-aligned, not round, in the data's
                self.covariances_ = covariances[:, None] * scale**2
            return
        self.bandwidth_ = float(params["bandwidth"])
        self.kernel_ = str(params["kernel"])
        per_column = bandwidth_in_data_units(model) or {}
        self.column_bandwidths_ = np.array([per_column[c] for c in model.columns])


def _seed(random_state: Any) -> int | None:
    """An int seed for :meth:`DensityModel.sample` from scikit-learn's random_state forms."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return None if random_state is None else int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31))
    raise ValueError(
        f"random_state must be None, an int or a NumPy generator, not {type(random_state).__name__}"
    )


class GaussianMixtureDensity(_Density):
    """A Gaussian mixture fitted by EM, as ``gencli fit --model gmm`` fits it.

    Args:
        components: a number, a range '1..12', a list, or 'auto' (1..10), chosen by
            ``select``; GridSearchCV can search it too.
        covariance: 'full', 'diag', 'tied', 'spherical', or 'auto' (all four, by ``select``).
        select: how candidates are compared: 'bic', 'aic' or 'heldout'.
        max_iter: EM steps at most.
        n_init: EM runs from different starts; the best is kept.
        tol: stop EM when the lower bound gains less than this.
        reg_covar: added to covariance diagonals (standardized units); raised when a fit
            breaks.
        discrete: columns of whole numbers modelled as discrete ('auto', 'warn', 'none' or
            names), as for :func:`gencli.fit`.
        bounds: the support of bounded columns ('income=0:,share=0:1', 'auto'), as for
            :func:`gencli.fit`.
        missing: 'em' to fit rows with empty cells (NaN), their cells latent.
        weights: row weights: a column name of ``X`` or one weight per row (or pass
            ``sample_weight`` to :meth:`fit`).
        validation: fraction of rows held out to measure the chosen model; 0 (not the
            command line's 0.2) fits every row, as scikit-learn estimators do.
        refit: refit the chosen model on every row after measuring it.
        seed: seeds every random step of the fit.
        standardize: fit on standardized columns (scores are in the data's units anyway).
        jobs: threads for the candidate search (None: one per core).

    Attributes:
        model_: the fitted :class:`~gencli.density.model.DensityModel`.
        n_features_in_: columns of ``X`` at fit.
        feature_names_in_: their names, when ``X`` was a DataFrame with string names.
        weights_: the components' weights.
        means_: the components' means in the data's units (on a column with ``bounds``, the
            mean of the component's log- or logit-normal, E[t^-1(y)]).
        covariances_: their covariances, of scikit-learn's shape for ``covariance_type_``,
            except 'spherical' (round in standardized units, not in the data's): per-column
            variances, n_components x n_features; in the data's units, and on the columns
            in ``transformed_columns_`` in the transform's units (a component is Gaussian
            there, not in the data's units).
        transformed_columns_: the columns modelled through a log or logit transform.
        n_components_: the number of components chosen.
        covariance_type_: the covariance type chosen.
        converged_: whether EM converged.

    Example:
        >>> from sklearn.model_selection import GridSearchCV
        >>> search = GridSearchCV(GaussianMixtureDensity(), {"components": [1, 2, 3]})
    """

    _family = "gmm"

    def __init__(
        self,
        components: Any = "auto",
        covariance: str = "full",
        select: str = "bic",
        max_iter: int = 100,
        n_init: int = 1,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        discrete: Any = None,
        bounds: Any = None,
        missing: str | None = None,
        weights: Any = None,
        validation: float = 0.0,
        refit: bool = True,
        seed: int | None = 0,
        standardize: bool = True,
        jobs: int | None = None,
    ) -> None:
        self.components = components
        self.covariance = covariance
        self.select = select
        self.max_iter = max_iter
        self.n_init = n_init
        self.tol = tol
        self.reg_covar = reg_covar
        self.discrete = discrete
        self.bounds = bounds
        self.missing = missing
        self.weights = weights
        self.validation = validation
        self.refit = refit
        self.seed = seed
        self.standardize = standardize
        self.jobs = jobs


class KernelDensity(_Density):
    """A kernel density, as ``gencli fit --model kde`` fits it: scored fast, sampled from
    every kernel, with densities in the data's units.

    Args:
        bandwidth: a positive number (standardized units when ``standardize``), a rule
            ('scott', 'silverman') computed at the data's scale, or 'cv' (``folds``-fold
            cross-validated likelihood); GridSearchCV can search it too.
        kernel: one of scikit-learn's six kernels.
        folds: folds for ``bandwidth='cv'``.
        discrete: columns of whole numbers modelled as discrete ('auto', 'warn', 'none' or
            names), as for :func:`gencli.fit`.
        bounds: the support of bounded columns ('income=0:,share=0:1', 'auto'), as for
            :func:`gencli.fit`.
        weights: row weights: a column name of ``X`` or one weight per row (or pass
            ``sample_weight`` to :meth:`fit`).
        validation: fraction of rows held out to measure the model; 0 (not the command
            line's 0.2) fits every row, as scikit-learn estimators do.
        refit: refit on every row after measuring on the held-out ones.
        seed: seeds every random step of the fit.
        standardize: fit on standardized columns (scores are in the data's units anyway).

    Attributes:
        model_: the fitted :class:`~gencli.density.model.DensityModel`.
        n_features_in_: columns of ``X`` at fit.
        feature_names_in_: their names, when ``X`` was a DataFrame with string names.
        bandwidth_: the bandwidth used, in ``bandwidth``'s units.
        column_bandwidths_: the bandwidth per column in the data's units (on the columns in
            ``transformed_columns_``, in the log or logit transform's units).
        transformed_columns_: the columns modelled through a log or logit transform.
        kernel_: the kernel.

    Example:
        >>> from sklearn.model_selection import GridSearchCV
        >>> search = GridSearchCV(KernelDensity(), {"bandwidth": [0.2, 0.4, 0.8]})
    """

    _family = "kde"

    def __init__(
        self,
        bandwidth: Any = "scott",
        kernel: str = "gaussian",
        folds: int = 5,
        discrete: Any = None,
        bounds: Any = None,
        weights: Any = None,
        validation: float = 0.0,
        refit: bool = True,
        seed: int | None = 0,
        standardize: bool = True,
    ) -> None:
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.folds = folds
        self.discrete = discrete
        self.bounds = bounds
        self.weights = weights
        self.validation = validation
        self.refit = refit
        self.seed = seed
        self.standardize = standardize


class AutoDensity(_Density):
    """The best of mixtures (every K and covariance type) and kernel densities by
    ``folds``-fold cross-validated likelihood, refitted: ``gencli fit`` (``--model auto``).

    Args:
        folds: folds of the cross-validation that compares the candidates.
        discrete: columns of whole numbers modelled as discrete; None is 'auto' here.
        bounds: the support of bounded columns ('income=0:,share=0:1', 'auto'), as for
            :func:`gencli.fit`.
        missing: 'em' to fit rows with empty cells (NaN) by a mixture, their cells latent.
        weights: row weights: a column name of ``X`` or one weight per row (or pass
            ``sample_weight`` to :meth:`fit`).
        validation: fraction of rows held out to measure the chosen model; 0 (not the
            command line's 0.2) fits every row, as scikit-learn estimators do.
        refit: refit the chosen model on every row after measuring it.
        seed: seeds every random step of the fit.
        standardize: fit on standardized columns (scores are in the data's units anyway).
        jobs: threads for the candidate search (None: one per core).

    Attributes:
        model_: the fitted :class:`~gencli.density.model.DensityModel`.
        family_: the family chosen, 'gmm' or 'kde'; the learned attributes are those of
            :class:`GaussianMixtureDensity` or :class:`KernelDensity` accordingly.
        n_features_in_: columns of ``X`` at fit.
        feature_names_in_: their names, when ``X`` was a DataFrame with string names.
    """

    def __init__(
        self,
        folds: int = 5,
        discrete: Any = None,
        bounds: Any = None,
        missing: str | None = None,
        weights: Any = None,
        validation: float = 0.0,
        refit: bool = True,
        seed: int | None = 0,
        standardize: bool = True,
        jobs: int | None = None,
    ) -> None:
        self.folds = folds
        self.discrete = discrete
        self.bounds = bounds
        self.missing = missing
        self.weights = weights
        self.validation = validation
        self.refit = refit
        self.seed = seed
        self.standardize = standardize
        self.jobs = jobs
