"""The ``gencli curse`` figure: one panel per idea, drawn with matplotlib's Agg canvas.

The figure is built on a bare ``Figure`` (no pyplot, so no global state and no GUI
backend) and written atomically: a temporary file in the target folder, then a rename.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gencli.errors import GencliError

__all__ = ["PLOT_FORMATS", "plot_format", "write_plot"]

#: Extensions ``--plot`` accepts, and the matplotlib format each one means.
PLOT_FORMATS = {".png": "png", ".svg": "svg"}


def plot_format(path: str | os.PathLike[str]) -> str:
    """The matplotlib format for ``path``'s extension; GencliError naming the accepted ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        accepted = ", ".join(PLOT_FORMATS)
        found = f"'{suffix}'" if suffix else "no extension"
        raise GencliError(f"{path}: cannot tell the figure format from {found}; use {accepted}")
    return PLOT_FORMATS[suffix]


def _column(records: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [math.nan if r[key] is None else float(r[key]) for r in records]


def write_plot(
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    samples: int,
    train: int,
    seed: int,
) -> Path:
    """Draw the six panels for ``records`` and write them to ``path`` (PNG or SVG).

    Returns the path written. The file appears complete or not at all.
    """
    fmt = plot_format(path)
    if not records:
        raise GencliError("no dimensions to plot")

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gencli.io.atomic import atomic_write

    dims = np.array([r["dim"] for r in records], dtype=float)
    fig = Figure(figsize=(15, 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    fig.suptitle(
        f"The curse of dimensionality for x ~ N(0, I_d)  "
        f"(seed {seed}, {samples} Monte Carlo draws per d, models fitted to {train})"
    )
    style = {"marker": "o", "markersize": 3}

    ax = axes[0, 0]
    lo = np.array([r["shell_90_exact"][0] for r in records])
    hi = np.array([r["shell_90_exact"][1] for r in records])
    ax.fill_between(dims, lo, hi, alpha=0.3, label="90% of the mass (exact)")
    ax.plot(dims, _column(records, "norm_mean_exact"), label="E‖x‖ (exact)", **style)
    ax.plot(dims, _column(records, "norm_mean_mc"), "x", label="mean ‖x‖ (Monte Carlo)")
    ax.plot(dims, np.sqrt(dims), "k--", linewidth=1, label="√d")
    ax.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="radius ‖x‖")
    ax.set_title("The mass lives in a thin shell near √d")
    ax.legend(fontsize="small")

    ax = axes[0, 1]
    ax.plot(
        dims,
        _column(records, "log10_mass_within_unit_ball_exact"),
        label="exact",
        **style,
    )
    mc = np.array(_column(records, "mass_within_unit_ball_mc"))
    seen = mc > 0
    ax.plot(dims[seen], np.log10(mc[seen]), "x", label="Monte Carlo (where any draw landed)")
    ax.set(xscale="log", xlabel="dimension d", ylabel="log10 P(‖x‖ ≤ 1)")
    ax.set_title("The mode's neighbourhood is empty")
    ax.legend(fontsize="small")

    ax = axes[0, 2]
    ax.plot(
        dims,
        _column(records, "log10_ball_to_cube_volume_exact"),
        color="C0",
        label="log10 ball / cube",
        **style,
    )
    ax.set(xscale="log", xlabel="dimension d", ylabel="log10 vol(unit ball) / vol([−1, 1]^d)")
    ax.set_title("Volumes concentrate")
    twin = ax.twinx()
    twin.plot(
        dims,
        _column(records, "outer_shell_volume_fraction_exact"),
        color="C1",
        label="share of the ball within 1% of its surface",
        **style,
    )
    twin.set(ylabel="share of the ball in its outer 1%", ylim=(0, 1.05))
    ax.legend(
        ax.get_lines() + twin.get_lines(),
        [line.get_label() for line in ax.get_lines() + twin.get_lines()],
        fontsize="small",
        loc="center left",
    )

    ax = axes[1, 0]
    ax.plot(dims, _column(records, "distance_contrast_mc"), **style)
    ax.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="(max − min) / min distance")
    ax.set_title("Distances concentrate (Monte Carlo)")

    ax = axes[1, 1]
    ax.plot(dims, _column(records, "log10_kde_samples_needed_exact"), **style)
    ax.axhline(80, color="grey", linestyle=":", label="~atoms in the observable universe")
    ax.set(xscale="log", xlabel="dimension d", ylabel="log10 samples")
    ax.set_title("Samples a KDE needs for relative MSE < 0.1 at the mode")
    ax.legend(fontsize="small")

    ax = axes[1, 2]
    learned = [r for r in records if r["kde_heldout_gap"] is not None]
    if learned:
        ld = [r["dim"] for r in learned]
        ax.plot(ld, _column(learned, "kde_heldout_gap"), label="gencli KDE (Scott)", **style)
        ax.plot(ld, _column(learned, "gmm_heldout_gap"), label="GMM, 1 component", **style)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "not computed:\nno d ≤ --learn-max-dim", ha="center", va="center")
    ax.set(xscale="log", xlabel="dimension d", ylabel="held-out KL per dimension (nats)")
    ax.set_title(f"Learning from {train} draws")

    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=fmt, dpi=100)
    return Path(path)
