"""Held-out scores, their standard errors, and the win / tie / loss verdict.

A method's figure on one split is the mean over the test rows of the log-density per row
(natural log, data units), with the standard error of that mean, ``sd(ddof=1)/sqrt(m)``.
Over several seeds the figure is the mean of the per-seed means and the standard error the
mean of the per-seed standard errors: the seeds' test sets share rows, so the seeds are not
independent and this is the conservative choice (the standard error of an average of
correlated estimates is at most the average of their standard errors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WIN, TIE, LOSS, NONE = "win", "tie", "loss", "n/a"
# A gencli default row this many nats below the best alternative on the same row is shown.
WORST_ROW_GAP = 20.0


@dataclass
class Score:
    """One method on one split: the log-density of every test row, or why there is none."""

    seed: int
    values: np.ndarray | None
    seconds: float
    error: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.values is None

    @property
    def bad_rows(self) -> int:
        return 0 if self.values is None else int(np.sum(~np.isfinite(self.values)))

    @property
    def mean(self) -> float:
        if self.values is None:
            return math.nan
        if self.bad_rows:
            return -math.inf
        return float(np.mean(self.values))

    @property
    def se(self) -> float:
        if self.values is None or self.bad_rows or len(self.values) < 2:
            return math.nan
        return float(np.std(self.values, ddof=1) / np.sqrt(len(self.values)))


@dataclass
class Summary:
    """One method on one data set over every seed."""

    mean: float
    se: float
    seconds: float
    status: str  # "ok", "failed: ...", "-inf on k of m rows"

    @property
    def usable(self) -> bool:
        return math.isfinite(self.mean)


def summarize(scores: list[Score]) -> Summary:
    """Mean over seeds (failed if any seed failed, -inf if any seed had a -inf/NaN row)."""
    seconds = float(np.mean([s.seconds for s in scores]))
    failed = [s for s in scores if s.failed]
    if failed:
        seeds = ", ".join(str(s.seed) for s in failed)
        where = f" (seed {seeds} of {len(scores)})" if len(scores) > 1 else ""
        return Summary(math.nan, math.nan, seconds, f"failed{where}: {failed[0].error}")
    bad = [s for s in scores if s.bad_rows]
    if bad:
        first = bad[0]
        rows = len(first.values) if first.values is not None else 0
        nan = bool(np.any(np.isnan(first.values))) if first.values is not None else False
        what = "NaN/-inf" if nan else "-inf"
        where = f" (seed {first.seed})" if len(scores) > 1 else ""
        return Summary(
            -math.inf, math.nan, seconds, f"{what} on {first.bad_rows} of {rows} rows{where}"
        )
    means = [s.mean for s in scores]
    ses = [s.se for s in scores]
    return Summary(float(np.mean(means)), float(np.mean(ses)), seconds, "ok")


@dataclass
class Verdict:
    """gencli's default against the best plain alternative on one data set."""

    verdict: str
    best: str  # the best plain alternative's name ("" when none worked)
    best_mean: float
    difference: float  # gencli default minus best, mean over seeds
    paired_se: float  # standard error of the per-row difference, mean over seeds
    worst_row: tuple[float, float] | None  # (gencli, best) on the row where gencli trails most


def judge(
    default: list[Score], alternatives: dict[str, list[Score]], gap: float = WORST_ROW_GAP
) -> Verdict:
    """Win (default >= best), tie (below by at most one paired SE) or loss.

    The best alternative is the plain method with the highest finite mean over seeds.
    gencli's default loses outright when it failed or scored -inf on any row.
    """
    summaries = {name: summarize(scores) for name, scores in alternatives.items()}
    usable = {name: s for name, s in summaries.items() if s.usable}
    mine = summarize(default)
    if not usable:
        verdict = WIN if mine.usable else NONE
        return Verdict(verdict, "", math.nan, math.nan, math.nan, None)
    best = max(usable, key=lambda name: usable[name].mean)
    best_mean = usable[best].mean
    if not mine.usable:
        return Verdict(LOSS, best, best_mean, -math.inf, math.nan, None)
    differences, ses, worst = [], [], None
    for a, b in zip(default, alternatives[best], strict=True):
        assert a.values is not None and b.values is not None
        row_gap = a.values - b.values
        differences.append(float(np.mean(row_gap)))
        ses.append(
            float(np.std(row_gap, ddof=1) / np.sqrt(len(row_gap))) if len(row_gap) > 1 else 0.0
        )
        i = int(np.argmin(row_gap))
        if row_gap[i] < -gap and (worst is None or row_gap[i] < worst[0] - worst[1]):
            worst = (float(a.values[i]), float(b.values[i]))
    difference, paired_se = float(np.mean(differences)), float(np.mean(ses))
    if difference >= 0:
        verdict = WIN
    elif difference >= -paired_se:
        verdict = TIE
    else:
        verdict = LOSS
    return Verdict(verdict, best, best_mean, difference, paired_se, worst)
