"""The quality benchmark's tables, as Markdown (printed, and written by --markdown)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from quality_data import Dataset
from quality_methods import Entry
from quality_stats import LOSS, TIE, WIN, Score, Summary, Verdict, summarize

DEFAULT = "gencli default"


@dataclass
class Outcome:
    """Everything measured on one data set."""

    data: Dataset
    n_train: int
    scores: dict[str, list[Score]]  # method name -> one Score per seed
    verdicts: dict[str, Verdict]  # every gencli method against the best plain alternative

    @property
    def verdict(self) -> Verdict:
        """The verdict that counts: gencli's default."""
        return self.verdicts[DEFAULT]

    def summary(self, method: str) -> Summary:
        return summarize(self.scores[method])


def number(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:.{digits}f}"


def cell(summary: Summary) -> str:
    if summary.status.startswith("failed"):
        return "failed"
    if not summary.usable:
        return summary.status
    return f"{number(summary.mean)} ± {number(summary.se)}"


def label(outcome: Outcome) -> str:
    return f"{outcome.data.name} ({outcome.n_train}, {outcome.data.frame.shape[1]})"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def verdict_rows(outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    for outcome in outcomes:
        mine, v = outcome.summary("gencli default"), outcome.verdict
        first = number(mine.mean) if mine.usable else cell(mine)
        if v.worst_row is not None:
            first += (
                f" (a row at {number(v.worst_row[0], 1)}; best alt. {number(v.worst_row[1], 1)})"
            )
        best = f"{number(v.best_mean)}: {v.best}" if v.best else "none worked"
        detail = v.verdict
        if math.isfinite(v.difference):
            detail += f" ({v.difference:+.2f}, paired SE {number(v.paired_se)})"
        rows.append([label(outcome), first, best, detail])
    return rows


def counts(outcomes: list[Outcome], method: str = DEFAULT) -> str:
    verdicts = [o.verdicts[method].verdict for o in outcomes]
    text = f"{verdicts.count(WIN)} wins, {verdicts.count(TIE)} ties, {verdicts.count(LOSS)} losses"
    return f"{text} of {len(outcomes)}"


def summary_line(outcomes: list[Outcome], method: str = DEFAULT) -> str:
    continuous = [o for o in outcomes if o.data.kind == "continuous"]
    discrete = [o for o in outcomes if o.data.kind == "discrete"]
    return (
        f"{method} — continuous data sets: {counts(continuous, method)}; "
        f"data sets with discrete columns: {counts(discrete, method)}"
    )


def variants_table(outcomes: list[Outcome], entries: list[Entry]) -> list[str]:
    """Every gencli column judged as the default is, so an option can be tried before it
    becomes the default (e.g. --gencli-args "--model auto")."""
    names = [e.name for e in entries if not e.plain]
    rows = []
    for o in outcomes:
        cells = []
        for name in names:
            v = o.verdicts[name]
            gap = f" {v.difference:+.2f}" if math.isfinite(v.difference) else ""
            cells.append(f"{v.verdict}{gap}")
        rows.append([f"{label(o)} {o.data.kind[:4]}.", *cells])
    header = ["data (n train, d)", *[e.short for e in entries if not e.plain]]
    lines = table(header, rows)
    return [*lines, "", *[f"- {summary_line(outcomes, name)}" for name in names]]


def render(outcomes: list[Outcome], entries: list[Entry], skipped: dict[str, str]) -> str:
    """Verdict tables (continuous, then discrete), every method's figure, times, data sets."""
    lines: list[str] = []
    header = ["data (n train, d)", "gencli default", "best plain alternative", "verdict"]
    for kind, title in (
        ("continuous", "Continuous data sets"),
        ("discrete", "Data sets with discrete columns"),
    ):
        chosen = [o for o in outcomes if o.data.kind == kind]
        if chosen:
            lines += [f"### {title}", "", *table(header, verdict_rows(chosen)), ""]

    lines += ["### Every method: mean held-out log-likelihood per row ± SE", ""]
    lines += table(
        ["data (n train, d)", *[e.short for e in entries]],
        [[label(o), *[cell(o.summary(e.name)) for e in entries]] for o in outcomes],
    )
    problems = [
        f"- {o.data.name}, {e.name}: {o.summary(e.name).status}"
        for o in outcomes
        for e in entries
        if o.summary(e.name).status != "ok"
    ]
    if problems:
        lines += ["", "Failures and -inf rows:", "", *problems]
    lines += ["", "### Every gencli column against the best plain alternative", ""]
    lines += [
        "Judged as the default is: verdict and mean difference (nats/row) per data set.",
        "",
        *variants_table(outcomes, entries),
    ]
    lines += ["", "### Fit + score time (seconds)", ""]
    time_rows = [
        [label(o), *[f"{o.summary(e.name).seconds:.2f}" for e in entries]] for o in outcomes
    ]
    totals = [f"{sum(o.summary(e.name).seconds for o in outcomes):.1f}" for e in entries]
    lines += table(
        ["data (n train, d)", *[e.short for e in entries]], [*time_rows, ["**total**", *totals]]
    )

    lines += ["", "### Data sets", ""]
    lines += table(
        ["data", "source", "rows × columns", "left out", "discrete columns"],
        [
            [
                o.data.name,
                f"`{o.data.source}`",
                f"{len(o.data.frame)} × {o.data.frame.shape[1]}",
                o.data.dropped or "—",
                discrete_text(o.data),
            ]
            for o in outcomes
        ],
    )
    if skipped:
        lines += ["", "Not used: " + "; ".join(f"{k} ({v})" for k, v in skipped.items())]
    lines += [
        "",
        "Method columns: "
        + "; ".join(f"{e.short} = {e.name}" for e in entries if e.short != e.name),
    ]
    lines += ["", f"**{summary_line(outcomes)}**", ""]
    return "\n".join(lines)


def discrete_text(data: Dataset) -> str:
    """The discrete columns; a '*' marks one with no repeated value (integer, few rows)."""
    names = []
    for column in data.discrete:
        unique = data.frame[column].nunique() == len(data.frame)
        names.append(f"{column}*" if unique else column)
    if not names:
        return "none (continuous)"
    return (
        ", ".join(names)
        if len(names) <= 8
        else f"{len(names)} columns: {', '.join(names[:6])}, ..."
    )
