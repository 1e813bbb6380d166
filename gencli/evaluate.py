"""How well do a model's samples match real rows? Two-sample tests, per column and jointly.

:func:`evaluate` draws as many rows from the model as there are real rows (with the seed)
and compares the two samples four ways:

- per column, the two-sample Kolmogorov–Smirnov statistic and p-value (scipy);
- the difference between the two correlation matrices (largest absolute entry, Frobenius);
- the multivariate energy distance on standardized columns, with a permutation p-value;
- a classifier two-sample test: the cross-validated accuracy of a scikit-learn classifier
  asked to tell real from generated rows (0.5 means it cannot), with its standard error.

Real rows should be held out from training: on the training rows an overfitted model (a
KDE with a tiny bandwidth) looks perfect. ``training_rows_warning`` says when the rows are
the very rows the model was trained on (same SHA-256).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from gencli.errors import DataError, OutputError

if TYPE_CHECKING:
    from gencli.density.model import DensityModel

__all__ = ["evaluate", "summary_lines"]


def evaluate(
    model: DensityModel,
    X_real: Any,
    *,
    seed: int = 0,
    n_permutations: int = 200,
    folds: int = 5,
    max_energy_rows: int = 1000,
    max_classifier_rows: int = 10_000,
    classifier: Any = None,
) -> dict[str, Any]:
    """Compare ``X_real`` with as many rows drawn from ``model``; return the metrics.

    Args:
        model: a fitted :class:`~gencli.density.model.DensityModel`.
        X_real: real rows, an array with the model's columns in order, or a DataFrame /
            Table whose columns are matched by name.
        seed: seeds the generated rows, the subsamples, the permutations and the folds.
        n_permutations: permutations for the energy test's p-value (0: no p-value).
        folds: cross-validation folds for the classifier test (stratified, shuffled).
        max_energy_rows: rows per side the energy distance uses (it costs rows squared).
        max_classifier_rows: rows per side the classifier test uses.
        classifier: a scikit-learn classifier (default ``HistGradientBoostingClassifier``).

    Returns:
        A plain dictionary: ``columns`` (per column KS), ``correlation``, ``energy``,
        ``classifier``, the real rows' mean log-likelihood, ``training_rows_warning``.
    """
    from gencli.density.modelparts import data_sha256, log_likelihood_summary

    started = time.perf_counter()
    X = _as_rows(model, X_real)
    n, d = X.shape
    if n < max(folds, 2):
        raise DataError(
            f"evaluation needs at least {max(folds, 2)} rows (the classifier test uses "
            f"{folds}-fold cross-validation) but got {n}; give more rows"
        )
    generated = model.sample(n, seed=seed)
    if not np.all(np.isfinite(generated)):
        raise OutputError("the model produced non-finite samples; refit it")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    log_density = model.score_samples(X)
    likelihood = log_likelihood_summary(log_density, d)
    result: dict[str, Any] = {
        "kind": "evaluation",
        "family": model.family,
        "model": model.describe(),
        "standardized": bool(model.metadata.get("standardized", True)),
        "rows": int(n),
        "generated_rows": int(n),
        "seed": seed,
        "mean_log_likelihood": likelihood["mean_log_likelihood"],
        "bits_per_dimension": likelihood["bits_per_dimension"],
        "columns": list(model.columns),
        "per_column": per_column_tests(X, generated, model.columns),
        "correlation": correlation_difference(X, generated, model.columns),
        "energy": energy_test(
            X, generated, n_permutations=n_permutations, max_rows=max_energy_rows, rng=rng
        ),
        "classifier": classifier_test(
            X,
            generated,
            folds=folds,
            seed=seed,
            max_rows=max_classifier_rows,
            rng=rng,
            classifier=classifier,
        ),
        "data_sha256": data_sha256(X),
        "training_rows_warning": data_sha256(X) == model.metadata.get("data_sha256"),
        "versions": _versions(),
    }
    result["notes"] = _notes(result["per_column"], n)
    result["seconds"] = time.perf_counter() - started
    return result


def _as_rows(model: DensityModel, X_real: Any) -> np.ndarray:
    from gencli.io.data import Table, as_table

    if isinstance(X_real, Table) or (
        hasattr(X_real, "columns") and not isinstance(X_real, np.ndarray)
    ):
        X = model.align(as_table(X_real)).values
    else:
        X = model.check_width(X_real)
    if not np.all(np.isfinite(X)):
        raise DataError("the rows to evaluate hold missing or infinite values; remove them")
    return np.ascontiguousarray(X, dtype=np.float64)


def _notes(per_column: list[dict[str, Any]], n: int) -> list[str]:
    """Say when the data are rounded or discrete: a continuous model's samples are not, and
    a classifier can tell them apart by that alone."""
    coarse = [
        c["column"]
        for c in per_column
        if c["real_distinct"] <= n / 2 and c["generated_distinct"] > 2 * c["real_distinct"]
    ]
    if not coarse:
        return []
    shown = ", ".join(coarse[:5]) + (f" and {len(coarse) - 5} more" if len(coarse) > 5 else "")
    return [
        f"{shown} take{'s' if len(coarse) == 1 else ''} few distinct values in the data "
        "(rounded or discrete) while the model's samples are continuous; the classifier can "
        "tell real from generated rows by that alone, so weigh the KS and energy tests more"
    ]


def _versions() -> dict[str, str]:
    import sklearn

    from gencli._version import __version__

    return {
        "gencli": __version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def per_column_tests(
    real: np.ndarray, generated: np.ndarray, columns: list[str]
) -> list[dict[str, Any]]:
    """For each column: means, standard deviations and the two-sample KS test."""
    from scipy.stats import ks_2samp

    from gencli.density.preprocess import column_moments  # finite for values near 1e300

    real_mean, real_std = column_moments(real)
    generated_mean, generated_std = column_moments(generated)
    out = []
    for j, name in enumerate(columns):
        test = ks_2samp(real[:, j], generated[:, j])
        out.append(
            {
                "column": name,
                "real_mean": float(real_mean[j]),
                "generated_mean": float(generated_mean[j]),
                "real_std": float(real_std[j]),
                "generated_std": float(generated_std[j]),
                "ks_statistic": float(test.statistic),
                "ks_pvalue": float(test.pvalue),
                "real_distinct": int(np.unique(real[:, j]).size),
                "generated_distinct": int(np.unique(generated[:, j]).size),
            }
        )
    return out


def _correlation(X: np.ndarray) -> np.ndarray:
    from gencli.density.preprocess import column_magnitudes

    d = X.shape[1]
    if d == 1:
        return np.ones((1, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        # Correlations do not depend on each column's scale: dividing by its largest
        # magnitude keeps the products of values near 1e300 finite.
        return np.atleast_2d(np.corrcoef(X / column_magnitudes(X), rowvar=False))


def correlation_difference(
    real: np.ndarray, generated: np.ndarray, columns: list[str]
) -> dict[str, Any]:
    """How far the generated rows' correlation matrix is from the real rows' one.

    ``max_abs_difference`` is the largest |r_generated - r_real| over pairs of columns (and
    ``worst_pair`` names them); ``frobenius`` is the Frobenius norm of the whole difference.
    Both are None for a single column, or when a column is constant.
    """
    r_real, r_generated = _correlation(real), _correlation(generated)
    difference = r_generated - r_real
    result: dict[str, Any] = {
        "max_abs_difference": None,
        "frobenius": None,
        "worst_pair": None,
        "real": r_real.tolist(),
        "generated": r_generated.tolist(),
    }
    if len(columns) < 2 or not np.all(np.isfinite(difference)):
        return result
    off = np.abs(difference)
    i, j = np.unravel_index(int(np.argmax(off)), off.shape)
    result.update(
        max_abs_difference=float(off[i, j]),
        frobenius=float(np.linalg.norm(difference)),
        worst_pair=[columns[min(i, j)], columns[max(i, j)]],
    )
    return result


def _subsample(X: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if X.shape[0] <= limit:
        return X
    return X[rng.choice(X.shape[0], size=limit, replace=False)]


def energy_test(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    n_permutations: int = 200,
    max_rows: int = 1000,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """The energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| and its permutation p-value.

    Columns are standardized with the pooled sample's mean and spread (so the permutations
    see the same distances); each side is subsampled to ``max_rows``. The within-sample
    means leave out the zero self-distances (unbiased U-statistics), so the distance is
    about 0 when the two samples come from the same distribution. The p-value is
    (1 + #{permuted >= observed}) / (1 + n_permutations).
    """
    from scipy.spatial.distance import cdist

    rng = rng if rng is not None else np.random.default_rng(0)
    a, b = _subsample(real, max_rows, rng), _subsample(generated, max_rows, rng)
    na, nb = a.shape[0], b.shape[0]
    pooled = np.vstack([a, b])
    from gencli.density.preprocess import column_moments, standardize

    centre, spread = column_moments(pooled)  # finite for values near 1e300
    spread[~(spread > 0)] = 1.0
    Z = standardize(pooled, centre, spread)
    D = cdist(Z, Z)
    labels = np.zeros((na + nb, 1 + n_permutations))
    labels[:na, 0] = 1.0
    for p in range(1, 1 + n_permutations):
        labels[rng.permutation(na + nb)[:na], p] = 1.0
    row_sums = D.sum(axis=1)
    total = row_sums.sum()
    DA = D @ labels
    s_aa = np.einsum("ip,ip->p", labels, DA)
    s_bb = np.einsum("ip,ip->p", 1.0 - labels, row_sums[:, None] - DA)
    s_ab = (total - s_aa - s_bb) / 2.0
    stats = 2.0 * s_ab / (na * nb) - s_aa / (na * (na - 1)) - s_bb / (nb * (nb - 1))
    observed = float(stats[0])
    pvalue = None
    if n_permutations > 0:
        # A small tolerance: permutations that tie the observed value count as >= it.
        exceed = int(np.sum(stats[1:] >= observed - 1e-12 * max(1.0, abs(observed))))
        pvalue = (1 + exceed) / (1 + n_permutations)
    return {
        "statistic": observed,
        "pvalue": pvalue,
        "permutations": int(n_permutations),
        "rows_used": [int(na), int(nb)],
    }


def classifier_test(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    max_rows: int = 10_000,
    rng: np.random.Generator | None = None,
    classifier: Any = None,
) -> dict[str, Any]:
    """Cross-validated accuracy of a classifier telling real (1) from generated (0) rows.

    Stratified, shuffled ``folds``-fold cross-validation, seeded. The accuracy is over every
    out-of-fold prediction; its standard error is the binomial sqrt(acc (1 - acc) / N),
    and the p-value is the one-sided binomial test of accuracy > 0.5. 0.5 means the
    classifier cannot tell the two apart.
    """
    from scipy.stats import binomtest
    from sklearn.base import clone
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    rng = rng if rng is not None else np.random.default_rng(seed)
    a, b = _subsample(real, max_rows, rng), _subsample(generated, max_rows, rng)
    X = np.vstack([a, b])
    y = np.concatenate([np.ones(a.shape[0], dtype=int), np.zeros(b.shape[0], dtype=int)])
    estimator = classifier if classifier is not None else HistGradientBoostingClassifier()
    if "random_state" in estimator.get_params():
        estimator = clone(estimator).set_params(random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    correct = np.zeros(y.size, dtype=bool)
    fold_accuracies = []
    # One OpenMP thread: on a busy machine the gradient-boosting threads spin-wait for each
    # other and a fit of a few thousand rows goes from 0.1 s to 15 s; alone it is fast.
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in cv.split(X, y):
            fitted = clone(estimator).fit(X[train], y[train])
            hits = fitted.predict(X[test]) == y[test]
            correct[test] = hits
            fold_accuracies.append(float(np.mean(hits)))
    hits_total = int(correct.sum())
    accuracy = hits_total / y.size
    return {
        "classifier": type(estimator).__name__,
        "accuracy": accuracy,
        "standard_error": math.sqrt(accuracy * (1.0 - accuracy) / y.size),
        "pvalue": float(binomtest(hits_total, y.size, 0.5, alternative="greater").pvalue),
        "folds": int(folds),
        "fold_accuracies": fold_accuracies,
        "rows_used": [int(a.shape[0]), int(b.shape[0])],
    }


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few sentences that read the evaluation aloud."""
    lines = []
    clf = result["classifier"]
    acc, se = clf["accuracy"], clf["standard_error"]
    if clf["pvalue"] < 0.01:
        lines.append(
            f"A classifier tells generated rows from real ones {acc:.0%} of the time "
            f"(± {se:.1%}; 50% would mean it cannot): the samples are distinguishable."
        )
    else:
        lines.append(
            f"A classifier cannot reliably tell generated rows from real ones: accuracy "
            f"{acc:.1%} ± {se:.1%}, where 50% means indistinguishable."
        )
    energy = result["energy"]
    if energy["pvalue"] is not None:
        verdict = "differ" if energy["pvalue"] < 0.01 else "show no significant difference"
        lines.append(
            f"Jointly, the two samples {verdict} (energy distance {energy['statistic']:.3g}, "
            f"permutation p = {_p(energy['pvalue'])})."
        )
    worst = max(result["per_column"], key=lambda c: c["ks_statistic"])
    lines.append(
        f"The column that differs most is {worst['column']} (KS statistic "
        f"{worst['ks_statistic']:.3f}, p = {_p(worst['ks_pvalue'])})."
    )
    corr = result["correlation"]
    if corr["max_abs_difference"] is not None:
        a, b = corr["worst_pair"]
        lines.append(
            f"Correlations are off by at most {corr['max_abs_difference']:.2f} ({a} with {b})."
        )
    lines += [f"Note: {note}." for note in result.get("notes", [])]
    if result["training_rows_warning"]:
        lines.append(
            "These are the rows the model was trained on, so the comparison flatters it; "
            "evaluate on held-out rows."
        )
    return lines
