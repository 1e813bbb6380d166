"""Short names for the candidates of a model search, shared by the summary and the report."""

from __future__ import annotations

from typing import Any


def candidate_name(candidate: dict[str, Any]) -> str:
    """'mixture K=3 full', 'Gaussian shrunk by 0.12 (OAS)', 'KDE per-column h=0.23' or
    'KDE correlated h=0.41'; ', log' after a candidate fitted with columns bounded at 0."""
    bounded = str(candidate.get("support", "")).startswith("bounded")
    return _name(candidate) + (", log" if bounded else "")


def _name(candidate: dict[str, Any]) -> str:
    if candidate.get("family") == "kde":
        shape = "correlated" if candidate.get("rotated") else "per-column"
        bandwidth = candidate.get("bandwidth")
        h = f" h={bandwidth:.3g}" if isinstance(bandwidth, float) else ""
        return f"KDE {shape}{h}"
    if candidate.get("covariance") == "shrunk":
        amount = candidate.get("shrinkage")
        return "Gaussian shrunk" + (f" by {amount:.2f} (OAS)" if isinstance(amount, float) else "")
    return f"mixture K={candidate.get('components')} {candidate.get('covariance')}"
