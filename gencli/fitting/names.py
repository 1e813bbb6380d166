"""Short names for the candidates of a model search, shared by the summary and the report."""

from __future__ import annotations

from typing import Any


def candidate_name(candidate: dict[str, Any]) -> str:
    """'mixture K=3 full' or 'KDE per-column h=0.23' / 'KDE correlated h=0.41'."""
    if candidate.get("family") == "kde":
        shape = "correlated" if candidate.get("rotated") else "per-column"
        bandwidth = candidate.get("bandwidth")
        h = f" h={bandwidth:.3g}" if isinstance(bandwidth, float) else ""
        return f"KDE {shape}{h}"
    return f"mixture K={candidate.get('components')} {candidate.get('covariance')}"
