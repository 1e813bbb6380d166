"""Columns with a bounded support: positive amounts, proportions, counts.

A column bounded below (``income=0:``), above (``x=:100``) or on both sides (``share=0:1``)
is modelled through a transform that maps its support onto the whole real line, applied
before standardizing: y = log(x - lo) for a lower bound, y = -log(hi - x) for an upper one,
y = logit((x - lo) / (hi - lo)) for both. The density is fitted to y; in the data's own
units it is p_x(x) = p_y(t(x)) |t'(x)|, so every score adds the log-Jacobian
log |t'(x)| (:meth:`Bounds.log_jacobian`) and the model integrates to 1 over the support.
Samples are drawn in y and mapped back with the inverse, so they always lie strictly
inside the bounds; a row outside them (or on a bound) has density 0 and scores -inf.

A discrete (whole-number) column is modelled by its boxes [k, k + 1): bounds LO:HI say k
runs from LO to HI, so its dequantized values lie in [LO, HI + 1) and the transform maps
that interval (:attr:`Bounds.upper` holds HI + 1 for such a column). A box's probability is
the same in either unit (no Jacobian); the box at LO maps to (-inf, t(LO + 1)), so no mass
is left below the bound, and samples are t^-1 of a draw, rounded down: LO..HI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.errors import FitError

INF = math.inf


@dataclass(frozen=True)
class Bounds:
    """Per column the lower and upper edge of the support (-inf / inf where open), in the
    data's units; for a ``discrete`` column the edges of its dequantized values, LO and
    HI + 1."""

    lower: np.ndarray
    upper: np.ndarray
    discrete: tuple[int, ...] = ()

    @property
    def columns(self) -> np.ndarray:
        """Indices of the bounded columns."""
        return np.flatnonzero(np.isfinite(self.lower) | np.isfinite(self.upper))

    def inside(self, X: np.ndarray) -> np.ndarray:
        """Rows strictly inside every bound, a discrete column's value k in LO..HI (NaN
        cells count as inside: nothing is known)."""
        cols = self.columns
        with np.errstate(invalid="ignore"):
            cells = X[:, cols]
            ok = (cells > self.lower[cols]) & (cells < self.upper[cols])
            for position, j in enumerate(cols):
                if j in self.discrete:  # the box [floor x, floor x + 1) within [LO, HI + 1)
                    k = np.floor(cells[:, position])
                    ok[:, position] = (k >= self.lower[j]) & (k + 1 <= self.upper[j])
        return np.all(ok | np.isnan(cells), axis=1)

    def inner_point(self) -> np.ndarray:
        """A value inside each bounded column's support (stands in for a row off it)."""
        lo, hi = self.lower[self.columns], self.upper[self.columns]
        return np.where(
            np.isfinite(lo) & np.isfinite(hi),
            (lo + hi) / 2,
            np.where(np.isfinite(lo), lo + 1.0, hi - 1.0),
        )

    def forward(self, X: np.ndarray) -> np.ndarray:
        """t(x) on the bounded columns (a copy; other columns as they are). Cells outside the
        support give NaN or +-inf: check :meth:`inside` first."""
        Y = np.array(X, dtype=np.float64, copy=True)
        for j in self.columns:
            Y[:, j] = self.transform(X[:, j], j)
        return Y

    def transform(self, x: np.ndarray, j: int) -> np.ndarray:
        """t(x) for values of column ``j``."""
        lo, hi = self.lower[j], self.upper[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            if math.isfinite(lo) and math.isfinite(hi):
                return np.log(x - lo) - np.log(hi - x)
            if math.isfinite(lo):
                return np.log(x - lo)
            return -np.log(hi - x)

    def inverse(self, Y: np.ndarray, which: Sequence[int] | None = None) -> np.ndarray:
        """x = t^-1(y) on the bounded columns, in place, kept strictly inside the bounds
        (a tail past what a double resolves is put on the nearest representable value).
        ``which``: the model columns Y's columns are (default: all, in order)."""
        lo, hi = self.lower, self.upper
        which = list(range(Y.shape[1])) if which is None else list(which)
        with np.errstate(over="ignore", under="ignore"):
            for position, j in enumerate(which):
                if not (math.isfinite(lo[j]) or math.isfinite(hi[j])):
                    continue
                y = Y[..., position]
                if math.isfinite(lo[j]) and math.isfinite(hi[j]):
                    width = hi[j] - lo[j]
                    # lo + width * expit(y) for y <= 0, hi - width * expit(-y) above: each
                    # side keeps its digits near its own bound.
                    low_side = lo[j] + width / (1.0 + np.exp(-np.minimum(y, 0.0)))
                    high_side = hi[j] - width / (1.0 + np.exp(np.maximum(y, 0.0)))
                    x = np.where(y <= 0, low_side, high_side)
                elif math.isfinite(lo[j]):
                    x = lo[j] + np.exp(y)
                else:
                    x = hi[j] - np.exp(-y)
                if math.isfinite(lo[j]):
                    x = np.maximum(x, np.nextafter(lo[j], INF))
                if math.isfinite(hi[j]):
                    x = np.minimum(x, np.nextafter(hi[j], -INF))
                Y[..., position] = x
        return Y

    def inverse_mean(self, mean: np.ndarray, sd: np.ndarray, which: Sequence[int]) -> np.ndarray:
        """E[t^-1(Y)] for Y ~ N(mean, sd^2), per cell (mean: (..., len(which)), sd
        broadcasting to it): the mean in data units of a Gaussian in transformed units.
        Closed form for a log transform (lo + exp(mean + sd^2 / 2)); Gauss-Hermite
        quadrature (80 nodes) for the logit. Unbounded columns: the mean itself."""
        out = np.array(mean, dtype=np.float64, copy=True)
        sd = np.broadcast_to(sd, out.shape)
        nodes, weights = np.polynomial.hermite_e.hermegauss(80)
        weights = weights / weights.sum()
        for position, j in enumerate(which):
            lo, hi = self.lower[j], self.upper[j]
            mu, sigma = out[..., position], sd[..., position]
            with np.errstate(over="ignore"):
                if math.isfinite(lo) and math.isfinite(hi):
                    y = mu[..., None] + sigma[..., None] * nodes
                    x = self.inverse(y.reshape(-1, 1), [j]).reshape(y.shape)
                    out[..., position] = x @ weights
                elif math.isfinite(lo):
                    out[..., position] = lo + np.exp(mu + sigma**2 / 2)
                elif math.isfinite(hi):
                    out[..., position] = hi - np.exp(-mu + sigma**2 / 2)
        return out

    def expected_floor(self, mean: np.ndarray, sd: np.ndarray, j: int) -> np.ndarray:
        """E[floor(t^-1(Y))] for Y ~ N(mean, sd^2), per cell, for a bounded discrete column
        ``j``: the sum over its values k of k P(t(k) <= Y < t(k + 1)), over the k that
        Y's mean +- 9 sd reach (the rest has mass below 1e-18). A cell whose reach spans
        more than 65,536 values takes E[t^-1(Y)] - 1/2 instead (within 1/2 of the sum)."""
        from gencli.density.families.boxes import log_interval_mass

        mean, sd = np.broadcast_arrays(np.asarray(mean, float), np.asarray(sd, float))
        shape, mean, sd = mean.shape, mean.ravel(), sd.ravel()
        lo, top = self.lower[j], self.upper[j] - 1.0  # the least and largest value
        reach = np.column_stack([mean - 9.0 * sd, mean + 9.0 * sd])
        ends = np.floor(self.inverse(reach.reshape(-1, 1), [j]).reshape(-1, 2))
        first = np.maximum(ends[:, 0], lo)
        span = np.minimum(ends[:, 1], top) - first + 1
        out = np.empty(mean.size)
        wide = span > 65_536
        out[wide] = self.inverse_mean(mean[wide, None], sd[wide, None], [j])[:, 0] - 0.5
        cells = np.flatnonzero(~wide)
        width = int(span[cells].max(initial=1))
        step = max(1, (1 << 22) // width)
        for start in range(0, cells.size, step):
            at = cells[start : start + step]
            k = first[at, None] + np.arange(width)[None]
            m, s = mean[at, None], sd[at, None]
            lower = (self.transform(k, j) - m) / s
            upper = (self.transform(k + 1, j) - m) / s
            with np.errstate(invalid="ignore"):
                mass = np.exp(log_interval_mass(lower, upper))
            mass[k > np.minimum(ends[at, 1], top)[:, None]] = 0.0
            out[at] = np.sum(np.nan_to_num(k * mass), axis=1)
        return out.reshape(shape)

    def log_jacobian(self, X: np.ndarray, discrete_too: bool = False) -> np.ndarray:
        """Per row, sum over the bounded continuous columns of log |t'(x)| (rows inside; a
        discrete column's box has the same probability in either unit). ``discrete_too``
        counts the discrete columns too, for dequantized values x + U (the fit's densities
        of t(x + U), before they become box probabilities)."""
        lo, hi = self.lower, self.upper
        out = np.zeros(X.shape[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            for j in self.columns:
                if j in self.discrete and not discrete_too:
                    continue
                x = X[:, j]
                if math.isfinite(lo[j]) and math.isfinite(hi[j]):
                    out += math.log(hi[j] - lo[j]) - np.log(x - lo[j]) - np.log(hi[j] - x)
                elif math.isfinite(lo[j]):
                    out -= np.log(x - lo[j])
                else:
                    out -= np.log(hi[j] - x)
        return out

    def pick(self, keep: Sequence[int]) -> Bounds | None:
        """The bounds of columns ``keep`` (a marginal's or conditional's), or None."""
        keep = list(keep)
        discrete = tuple(keep.index(j) for j in self.discrete if j in keep)
        picked = Bounds(self.lower[keep].copy(), self.upper[keep].copy(), discrete)
        return picked if picked.columns.size else None

    def describe(self, columns: Sequence[str]) -> list[dict[str, Any]]:
        """One record per bounded column: name, lower, upper (None where open), transform."""
        out = []
        for j in self.columns:
            lo, hi = float(self.lower[j]), float(self.upper[j])
            both = math.isfinite(lo) and math.isfinite(hi)
            if j in self.discrete:
                hi -= 1.0  # the largest whole number, not the edge of its box
            out.append(
                {
                    "column": columns[j],
                    "lower": lo if math.isfinite(lo) else None,
                    "upper": hi if math.isfinite(hi) else None,
                    "transform": "logit" if both else "log",
                }
            )
        return out

    def to_plain(self, columns: Sequence[str]) -> dict[str, list[Any]]:
        """What a model file holds: {column: [lower or None, upper or None]} for bounded ones."""
        return {r["column"]: [r["lower"], r["upper"]] for r in self.describe(columns)}


def text(record: dict[str, Any]) -> str:
    """``name=LO:HI`` as a user writes it (an open side left empty)."""
    lo = "" if record["lower"] is None else f"{record['lower']:g}"
    hi = "" if record["upper"] is None else f"{record['upper']:g}"
    return f"{record['column']}={lo}:{hi}"


def from_plain(plain: Any, columns: Sequence[str], discrete: Sequence[int] = ()) -> Bounds | None:
    """Bounds from a model file's ``bounds`` entry (already checked to be plain data)."""
    if not plain:
        return None
    lower, upper = np.full(len(columns), -INF), np.full(len(columns), INF)
    for name, (lo, hi) in plain.items():
        j = list(columns).index(name)
        lower[j] = -INF if lo is None else float(lo)
        upper[j] = INF if hi is None else float(hi) + (1.0 if j in discrete else 0.0)
    return Bounds(lower, upper, tuple(discrete))


def parse(spec: str | Sequence[str] | dict[str, Any] | None) -> tuple[bool, dict[str, tuple]]:
    """``--bounds`` as given: ('auto' or not, {column: (lo, hi)}). Accepts
    'income=0:,share=0:1', a list of such items, or a dict {column: (lo, hi)} (None = open)."""
    if spec is None:
        return False, {}
    if isinstance(spec, dict):
        return False, {str(k): _pair(str(k), v) for k, v in spec.items()}
    items = [spec] if isinstance(spec, str) else list(spec)
    pieces = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if pieces == ["none"]:  # no bounds (and no search over supports under --model auto)
        return False, {}
    auto = "auto" in pieces
    out: dict[str, tuple] = {}
    for piece in pieces:
        if piece == "auto":
            continue
        name, sep, span = piece.partition("=")
        if not sep or ":" not in span or not name.strip():
            raise FitError(
                f"--bounds: '{piece}' is not COLUMN=LO:HI; write e.g. income=0: or share=0:1"
            )
        lo_text, _, hi_text = span.partition(":")
        out[name.strip()] = (_number(piece, lo_text), _number(piece, hi_text))
    return auto, {k: _pair(k, v) for k, v in out.items()}


def _number(piece: str, text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise FitError(f"--bounds: '{text}' in '{piece}' is not a number") from None
    return value


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise FitError(f"--bounds: {name} needs (lower, upper), not {value!r}") from None
    lo = -INF if lo is None else float(lo)
    hi = INF if hi is None else float(hi)
    if math.isnan(lo) or math.isnan(hi) or lo == INF or hi == -INF:
        raise FitError(f"--bounds: {name}={lo:g}:{hi:g} is not a usable interval")
    if not lo < hi:
        raise FitError(f"--bounds: {name}: the lower bound {lo:g} is not below the upper {hi:g}")
    if not (math.isfinite(lo) or math.isfinite(hi)):
        raise FitError(f"--bounds: {name}=: gives no bound; write {name}=0: or {name}=0:1")
    return lo, hi


def resolve(
    spec: Any, X: np.ndarray, columns: Sequence[str], discrete: Sequence[int], source: str
) -> tuple[Bounds | None, list[str]]:
    """The fit's bounds from ``--bounds`` and the training rows, with notes for the user.

    'auto' bounds below at 0 every column of positive values and every discrete one of
    values >= 0; a column of whole numbers >= 0 modelled as continuous (counts with many
    values) below at -1, the log(x + 1) transform, since a count of 0 in new rows must not
    score -inf. Other columns holding 0 are left unbounded and named in a note. Every
    training value must lie strictly inside a continuous column's bounds (on a bound its
    density would be 0 or infinite) and within a discrete one's."""
    auto, given = parse(spec)
    names = list(columns)
    for name in given:
        if name not in names:
            raise FitError(
                f"--bounds: no column '{name}' in {source}; its columns are {', '.join(names)}"
            )
    lower, upper = np.full(len(names), -INF), np.full(len(names), INF)
    notes: list[str] = []
    if auto:
        zeros = []
        for j, name in enumerate(names):
            if name in given:
                continue
            column = X[:, j]
            smallest = float(np.nanmin(column))
            if smallest < 0:
                continue
            if j in discrete:  # boxes [k, k + 1) from 0 up: 0 stays a value
                lower[j] = 0.0
            elif _whole(column):  # counts: log(x + 1), so a 0 in new rows stays inside
                lower[j] = -1.0
            elif smallest > 0:
                lower[j] = 0.0
            else:
                zeros.append(name)
        if zeros:
            notes.append(
                f"--bounds auto: {_listed(zeros)} take{'s' if len(zeros) == 1 else ''} the "
                "value 0, so left unbounded (a density on (0, inf) gives 0 no density)"
            )
    for name, (lo, hi) in given.items():
        j = names.index(name)
        if j in discrete:
            if not all(not math.isfinite(v) or v == math.floor(v) for v in (lo, hi)):
                raise FitError(
                    f"--bounds: column '{name}' of {source} holds whole numbers (modelled as "
                    f"discrete); give whole-number bounds, not {name}={lo:g}:{hi:g}"
                )
            hi += 1.0  # its values k are boxes [k, k + 1): the support ends at HI + 1
        lower[j], upper[j] = lo, hi
    bounds = Bounds(lower, upper, tuple(discrete))
    if not bounds.columns.size:
        return None, notes
    _refuse_outside(bounds, X, names, source)
    _refuse_lost_resolution(bounds, X, names, source)
    return bounds, notes


def _refuse_lost_resolution(bounds: Bounds, X: np.ndarray, names: list[str], source: str) -> None:
    """A bound so far from the values that t(x) no longer tells them apart (x = 0.1 and 2
    with lo = -1e17) would leave the column constant after the transform: refused."""
    for j in bounds.columns:
        x = X[:, j][~np.isnan(X[:, j])]
        if np.unique(x).size < 2:
            continue
        y = bounds.transform(x, j)
        if np.unique(y).size < min(np.unique(x).size, 3):
            span = text(bounds.describe(names)[list(bounds.columns).index(j)])
            raise FitError(
                f"{source}: --bounds {span}: the bound is so far from column '{names[j]}'s "
                "values that its log transform can no longer tell them apart; put the bound "
                "nearer the data, or leave the column unbounded"
            )


def _whole(column: np.ndarray) -> bool:
    values = column[~np.isnan(column)]
    return bool(np.all(values == np.floor(values)))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")


def _refuse_outside(bounds: Bounds, X: np.ndarray, names: list[str], source: str) -> None:
    lo, hi = bounds.lower, bounds.upper
    for j in bounds.columns:
        x = X[:, j]
        with np.errstate(invalid="ignore"):
            if j in bounds.discrete:
                bad = (x < lo[j]) | (x + 1 > hi[j])
            else:
                bad = (x <= lo[j]) | (x >= hi[j])
        if np.any(bad):
            row = int(np.argmax(bad))
            span = text(bounds.describe(names)[list(bounds.columns).index(j)])
            on_bound = x[row] in (lo[j], hi[j]) and j not in bounds.discrete
            where = "on the bound" if on_bound else "outside the bounds"
            raise FitError(
                f"{source}: row {row + 1}, column '{names[j]}': {x[row]:g} lies {where} "
                f"(--bounds {span}, {int(np.sum(bad))} rows in all); "
                + (
                    "a density on an open interval gives its edge no density: move the "
                    "bound past the data (e.g. a little below the smallest value)"
                    if on_bound
                    else "widen the bounds or leave the column unbounded"
                )
            )
