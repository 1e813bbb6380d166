"""Figures for reports: the fitted density against the data, the selection curve, and the
correlation matrices of real and generated rows.

Every figure is built on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot,
so no global state and no GUI backend), in the data's own units. matplotlib is imported
inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gencli.density.model import DensityModel

__all__ = [
    "CORNER_MAX_COLUMNS",
    "correlation_figure",
    "density_figure",
    "figure_png",
    "selection_figure",
]

#: A corner plot shows at most this many columns (the first ones), and says so.
CORNER_MAX_COLUMNS = 6
_MAX_POINTS = 2000
_GRID_1D = 400
_GRID_2D = 120


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _padded_range(values: np.ndarray, pad: float = 0.15) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    width = hi - lo
    if not width > 0:
        width = max(abs(lo), 1.0)
    return lo - pad * width, hi + pad * width


def _subsample(X: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if X.shape[0] <= limit:
        return X
    return X[np.sort(rng.choice(X.shape[0], size=limit, replace=False))]


def density_figure(
    model: DensityModel,
    X: np.ndarray,
    *,
    seed: int = 0,
    max_columns: int = CORNER_MAX_COLUMNS,
    title: str | None = None,
) -> Figure:
    """The fitted density against the rows ``X`` (model column order, data units).

    1 column: a histogram with the model's density curve. 2 columns: the rows over the
    density's filled contours. More: a corner plot of pairwise marginals, the rows against
    as many model samples (at most the first ``max_columns`` columns, named in the title).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    d = X.shape[1]
    if d != model.n_features:
        raise ValueError(f"expected {model.n_features} columns but got {d}")
    if d == 1:
        fig = _density_1d(model, X)
    elif d == 2:
        fig = _density_2d(model, X, seed)
    else:
        fig = _corner(model, X, seed, max_columns)
    if title:
        fig.suptitle(title)
    return fig


def _density_1d(model: DensityModel, X: np.ndarray) -> Figure:
    fig = _new_figure(6.4, 4.0)
    ax = fig.subplots()
    lo, hi = _padded_range(X[:, 0])
    grid = np.linspace(lo, hi, _GRID_1D)
    density = np.exp(model.score_samples(grid.reshape(-1, 1)))
    ax.hist(X[:, 0], bins="auto", density=True, alpha=0.45, color="C0", label="data")
    ax.plot(grid, density, color="C3", linewidth=2, label="model density")
    ax.set(xlabel=model.columns[0], ylabel="density", xlim=(lo, hi))
    ax.set_title(f"{model.columns[0]}: histogram of {X.shape[0]} rows and the fitted density")
    ax.legend(fontsize="small")
    return fig


def _density_2d(model: DensityModel, X: np.ndarray, seed: int) -> Figure:
    fig = _new_figure(6.4, 5.2)
    ax = fig.subplots()
    (x_lo, x_hi), (y_lo, y_hi) = _padded_range(X[:, 0]), _padded_range(X[:, 1])
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, _GRID_2D), np.linspace(y_lo, y_hi, _GRID_2D))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    density = np.exp(model.score_samples(grid)).reshape(gx.shape)
    filled = ax.contourf(gx, gy, density, levels=12, cmap="Blues")
    fig.colorbar(filled, ax=ax, label="density (data units)")
    # Lines through the density at rows' own quantiles: ~90% / 50% of rows lie inside.
    at_rows = np.exp(model.score_samples(X))
    quantiles = {float(np.quantile(at_rows, q)): f"{1 - q:.0%}" for q in (0.1, 0.5)}
    levels = sorted(v for v in quantiles if 0 < v < float(density.max()))
    if len(levels) == len(set(levels)) and levels:
        lines = ax.contour(gx, gy, density, levels=levels, colors="C3", linewidths=1.2)
        ax.clabel(lines, fmt={level: quantiles[level] for level in levels}, fontsize="small")
    shown = _subsample(X, _MAX_POINTS, np.random.default_rng(seed))
    ax.scatter(shown[:, 0], shown[:, 1], s=5, color="k", alpha=0.6, label="data")
    ax.set(xlabel=model.columns[0], ylabel=model.columns[1], xlim=(x_lo, x_hi), ylim=(y_lo, y_hi))
    ax.set_title(
        f"{X.shape[0]} rows over the fitted density\n"
        "(red lines enclose about 90% and 50% of the rows)",
        fontsize="medium",
    )
    ax.legend(fontsize="small", loc="upper right")
    return fig


def _corner(model: DensityModel, X: np.ndarray, seed: int, max_columns: int) -> Figure:
    d = X.shape[1]
    k = max(2, min(d, max_columns))
    rng = np.random.default_rng(seed)
    real = _subsample(X, _MAX_POINTS, rng)
    generated = model.sample(real.shape[0], seed=seed)
    names = model.columns[:k]
    size = 1.9 * k + 0.6
    fig = _new_figure(size, size)
    axes = fig.subplots(k, k, squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                both = np.concatenate([real[:, i], generated[:, i]])
                bins = int(np.clip(np.sqrt(real.shape[0]), 10, 40))
                edges = np.histogram_bin_edges(
                    both, bins=bins, range=_padded_range(real[:, i], 0.05)
                )
                ax.hist(real[:, i], bins=edges, density=True, histtype="stepfilled", alpha=0.4)
                ax.hist(generated[:, i], bins=edges, density=True, histtype="step", color="C1")
                ax.set_yticks([])
            else:
                ax.scatter(real[:, j], real[:, i], s=2, alpha=0.35, color="C0", rasterized=True)
                ax.scatter(
                    generated[:, j], generated[:, i], s=2, alpha=0.35, color="C1", rasterized=True
                )
                ax.set_xlim(_padded_range(real[:, j], 0.05))
                ax.set_ylim(_padded_range(real[:, i], 0.05))
            if i == k - 1:
                ax.set_xlabel(names[j], fontsize="small")
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize="small")
            elif j > 0:
                ax.set_yticklabels([])
            ax.tick_params(labelsize="x-small")
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color="C0", alpha=0.5, label=f"data ({real.shape[0]} rows)"),
            Patch(color="C1", alpha=0.8, label=f"model samples ({generated.shape[0]})"),
        ],
        loc="upper right",
        fontsize="small",
    )
    shown = "" if d <= k else f" (the first {k} of {d} columns: {', '.join(names)})"
    fig.suptitle(f"Pairwise marginals, data against model samples{shown}", fontsize="medium")
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


_GMM_SCORES = {
    "bic": ("bic", "BIC (lower is better)"),
    "aic": ("aic", "AIC (lower is better)"),
    "heldout": ("heldout_mean_log_likelihood", "held-out mean log-likelihood, nats/row"),
}
_GMM_SCORES["cv"] = ("cv_mean_log_likelihood", "cross-validated mean log-likelihood, nats/row")
_KDE_SCORES = ("cv_mean_log_likelihood", "heldout_mean_log_likelihood")


def selection_figure(selection: dict[str, Any] | None) -> Figure | None:
    """The score of every candidate tried, with the chosen one ringed; None if nothing to plot.

    GMM: the criterion against the number of components, one line per covariance type.
    KDE: the cross-validated (or held-out) log-likelihood against the bandwidth (log axis).
    """
    if not selection or not selection.get("candidates"):
        return None
    candidates: Sequence[dict[str, Any]] = selection["candidates"]
    if selection.get("parameter") == "model":
        return _auto_curve(candidates)
    if selection.get("parameter") == "bandwidth" or "bandwidth" in candidates[0]:
        return _bandwidth_curve(candidates, selection.get("criterion", "cv"))
    return _components_curve(candidates, str(selection.get("criterion", "bic")))


def _ring(ax: Any, x: float, y: float) -> None:
    ax.plot([x], [y], "o", markersize=14, markerfacecolor="none", color="k", zorder=5)
    ax.annotate("chosen", (x, y), xytext=(8, 10), textcoords="offset points", fontsize="small")


def _components_curve(candidates: Sequence[dict[str, Any]], criterion: str) -> Figure | None:
    from matplotlib.ticker import MaxNLocator

    key, label = _GMM_SCORES.get(criterion, _GMM_SCORES["bic"])
    covariances = list(dict.fromkeys(str(c.get("covariance", "")) for c in candidates))
    fig = _new_figure(6.4, 4.2)
    ax = fig.subplots()
    plotted = False
    for covariance in covariances:
        points = sorted(
            (int(c["components"]), float(c[key]))
            for c in candidates
            if c.get("covariance") == covariance and _finite(c.get(key))
        )
        if points:
            ks, values = zip(*points, strict=True)
            ax.plot(ks, values, "o-", markersize=4, label=covariance or "candidates")
            plotted = True
    if not plotted:
        return None
    for c in candidates:
        if c.get("chosen") and _finite(c.get(key)):
            _ring(ax, int(c["components"]), float(c[key]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="components K", ylabel=label)
    ax.set_title(f"Model selection by {criterion}")
    ax.legend(title="covariance", fontsize="small")
    return fig


def _auto_curve(candidates: Sequence[dict[str, Any]]) -> Figure | None:
    """--model auto: the mixtures' CV score against K per covariance type, and each kernel
    density's as a horizontal line; the winner ringed."""
    mixtures = [c for c in candidates if c.get("family") == "gmm"]
    fig = _components_curve(mixtures, "cv") if mixtures else None
    if fig is None:
        fig = _new_figure(6.4, 4.2)
        fig.subplots()
    ax = fig.axes[0]
    styles = iter(["--", ":"])
    for c in candidates:
        if c.get("family") == "kde" and _finite(c.get("cv_mean_log_likelihood")):
            value = float(c["cv_mean_log_likelihood"])
            shape = "correlated" if c.get("rotated") else "per-column"
            ax.axhline(value, linestyle=next(styles, "-."), color="grey", label=f"KDE {shape}")
            if c.get("chosen"):
                ax.annotate("chosen", (0.02, value), xycoords=("axes fraction", "data"))
    ax.set_title("Model selection by cross-validated log-likelihood")
    ax.legend(fontsize="small")
    return fig


def _bandwidth_curve(candidates: Sequence[dict[str, Any]], criterion: str) -> Figure | None:
    key = next((k for k in _KDE_SCORES if any(_finite(c.get(k)) for c in candidates)), None)
    if key is None:
        return None
    points = sorted(
        (float(c["bandwidth"]), float(c[key]))
        for c in candidates
        if _finite(c.get("bandwidth")) and _finite(c.get(key))
    )
    fig = _new_figure(6.4, 4.2)
    ax = fig.subplots()
    bandwidths, values = zip(*points, strict=True)
    ax.plot(bandwidths, values, "o-", markersize=4)
    for c in candidates:
        if c.get("chosen") and _finite(c.get(key)):
            _ring(ax, float(c["bandwidth"]), float(c[key]))
    what = "cross-validated" if key.startswith("cv") else "held-out"
    ax.set(xscale="log", xlabel="bandwidth (standardized units)")
    ax.set_ylabel(f"{what} mean log-likelihood, nats/row")
    ax.set_title(f"Bandwidth selection by {criterion}")
    return fig


def correlation_figure(real: np.ndarray, generated: np.ndarray, columns: Sequence[str]) -> Figure:
    """The correlation matrices of the real and generated rows, and their difference."""
    fig = _new_figure(12.0, 4.0)
    axes = fig.subplots(1, 3)
    panels = [
        (real, "data"),
        (generated, "model samples"),
        (generated - real, "samples − data"),
    ]
    labels = len(columns) <= 15
    images = []
    for ax, (matrix, title) in zip(axes, panels, strict=True):
        images.append(ax.imshow(np.nan_to_num(matrix), cmap="RdBu_r", vmin=-1, vmax=1))
        ax.set_title(f"correlation: {title}", fontsize="medium")
        if labels:
            ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize="x-small")
            ax.set_yticks(range(len(columns)), columns, fontsize="x-small")
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    if len(columns) <= 8:
        difference = np.nan_to_num(generated - real)
        for (i, j), value in np.ndenumerate(difference):
            axes[2].text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize="x-small")
    fig.colorbar(images[0], ax=list(axes), shrink=0.8)
    return fig
