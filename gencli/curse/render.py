"""Turn ``gencli curse`` records into a rich table with plain sentences, CSV or JSON.

Numbers are formatted for reading: tiny and huge values keep their exponent (1.2e-1285,
never 0.0), using the ``log10_`` twin of a figure when a double cannot hold it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = ["explain", "fmt_log10", "fmt_num", "to_csv", "to_json", "to_table"]

Record = dict[str, Any]

#: CSV columns: the JSON keys with the shell split in two.
CSV_COLUMNS = [
    "dim",
    "norm_mean_exact",
    "norm_mean_mc",
    "norm_std_exact",
    "norm_std_mc",
    "shell_90_lo_exact",
    "shell_90_hi_exact",
    "mass_within_unit_ball_exact",
    "log10_mass_within_unit_ball_exact",
    "mass_within_unit_ball_mc",
    "log_density_gap_mode_vs_typical_exact",
    "ball_to_cube_volume_exact",
    "log10_ball_to_cube_volume_exact",
    "outer_shell_volume_fraction_exact",
    "distance_contrast_mc",
    "kde_samples_needed_exact",
    "log10_kde_samples_needed_exact",
    "kde_bandwidth_exact",
    "kde_heldout_gap",
    "gmm_heldout_gap",
]

DASH = "—"


# --------------------------------------------------------------------------- numbers


def fmt_log10(log10_value: float, digits: int = 2) -> str:
    """Format 10**log10_value with ``digits`` significant digits, whatever its size."""
    if not math.isfinite(log10_value):
        return "0" if log10_value < 0 else "inf"
    exponent = math.floor(log10_value)
    mantissa = round(10 ** (log10_value - exponent), digits - 1)
    if mantissa >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    if -3 <= exponent < 5:
        return fmt_num(10.0**log10_value, digits)
    return f"{mantissa:.{digits - 1}f}e{exponent:+d}"


def fmt_num(value: float | None, digits: int = 4) -> str:
    """A number for people: fixed notation between 1e-3 and 1e5, scientific outside."""
    if value is None:
        return DASH
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        if value == round(value) and magnitude >= 1:
            return f"{value:.0f}"
        decimals = max(digits - 1 - math.floor(math.log10(magnitude)), 0)
        return f"{value:.{decimals}f}"
    return f"{value:.{max(digits - 3, 1)}e}".replace("e+0", "e+").replace("e-0", "e-")


def _pair(exact: float | None, mc: float | None, digits: int = 4) -> str:
    return f"{fmt_num(exact, digits)} / {fmt_num(mc, digits)}"


def _mass(record: Record) -> str:
    return fmt_log10(record["log10_mass_within_unit_ball_exact"])


def _kde_n(record: Record) -> str:
    n = record["kde_samples_needed_exact"]
    if math.isfinite(n) and n < 1e5:
        return fmt_num(n)
    return fmt_log10(record["log10_kde_samples_needed_exact"])


# --------------------------------------------------------------------------- table


def _shell(r: Record) -> str:
    lo, hi = r["shell_90_exact"]
    return f"{lo:.2f}–{hi:.2f}"


#: (header, cell) for each column; the first block is about where the mass is, the second
#: about space and learning. A narrow terminal gets them as two tables.
_MASS_COLUMNS: list[tuple[str, Callable[[Record], str]]] = [
    ("E‖x‖\nexact / MC", lambda r: _pair(r["norm_mean_exact"], r["norm_mean_mc"])),
    ("sd ‖x‖\nexact / MC", lambda r: _pair(r["norm_std_exact"], r["norm_std_mc"], 3)),
    ("90% of mass\nat radius", _shell),
    (
        "P(‖x‖≤1)\nexact / MC",
        lambda r: f"{_mass(r)} / {fmt_num(r['mass_within_unit_ball_mc'], 2)}",
    ),
    ("log p(0) −\nE log p(x)", lambda r: f"{r['log_density_gap_mode_vs_typical_exact']:g}"),
]
_SPACE_COLUMNS: list[tuple[str, Callable[[Record], str]]] = [
    ("ball /\ncube", lambda r: fmt_log10(r["log10_ball_to_cube_volume_exact"])),
    ("ball in\nouter 1%", lambda r: _outer_share(r["dim"])),
    ("distance\ncontrast", lambda r: fmt_num(r["distance_contrast_mc"], 3)),
    ("KDE n for\nrelMSE<0.1", _kde_n),
    ("KDE\ngap", lambda r: fmt_num(r["kde_heldout_gap"], 3)),
    ("GMM\ngap", lambda r: fmt_num(r["gmm_heldout_gap"], 3)),
]
_TITLE = "x ~ N(0, I_d): where the mass is, and what learning it costs"
_CAPTION = "exact / MC: closed form / Monte Carlo.  gaps: held-out KL, nats per dimension"


def _build(
    records: Sequence[Record],
    columns: Sequence[tuple[str, Callable[[Record], str]]],
    title: str | None,
    caption: str | None,
    compact: bool = False,
) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        caption=caption,
        header_style="bold",
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
        collapse_padding=compact,
    )
    width = max(len(str(r["dim"])) for r in records) if records else 1
    table.add_column("d", justify="right", min_width=width, no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", overflow="fold")
    for r in records:
        table.add_row(str(r["dim"]), *(cell(r) for _, cell in columns))
    return table


def to_table(records: Sequence[Record], width: int | None = None) -> RenderableType:
    """A rich table with one row per dimension, exact and Monte Carlo figures side by side.

    When the whole table is wider than ``width`` (the terminal's), it is split in two
    tables stacked one above the other, so no number is cut.
    """
    from rich.console import Console, Group

    full = _build(records, _MASS_COLUMNS + _SPACE_COLUMNS, _TITLE, _CAPTION)
    if width is None:
        return full
    measure = Console(width=10_000, file=io.StringIO()).measure(full)
    if measure.maximum <= width:
        return full
    return Group(
        _build(records, _MASS_COLUMNS, _TITLE, None, compact=True),
        _build(records, _SPACE_COLUMNS, None, _CAPTION, compact=True),
    )


def _outer_share(dim: int) -> str:
    """Share of the ball within 1% of its surface, 1 - 0.99^d, as a percentage that
    never rounds 99.996% up to 100%: past six decimals it says 100% minus the rest."""
    rest_log10 = dim * math.log10(0.99) + 2  # log10 of 100 * 0.99^d, in percent
    if rest_log10 < -6:
        return f"100% − {fmt_log10(rest_log10)}%"
    rest = 10.0**rest_log10
    if rest < 0.1:
        return f"{100 - rest:.{1 - math.floor(rest_log10)}f}%"
    return f"{100 - rest:.3g}%"


# --------------------------------------------------------------------------- sentences


def _at(
    first: Record,
    last: Record,
    value: Callable[[Record], str],
    but: str = "but",
    again: Callable[[Record], str] | None = None,
) -> str:
    """``A at d = a, <but> B at d = b``, or ``A at d = b`` when the run has one dimension.

    ``again`` words the second value when repeating the first wording would be clumsy.
    """
    if first["dim"] == last["dim"]:
        return f"{value(last)} at d = {last['dim']}"
    second = (again or value)(last)
    return f"{value(first)} at d = {first['dim']}, {but} {second} at d = {last['dim']}"


def _share_of_mass(r: Record) -> str:
    mass = r["mass_within_unit_ball_exact"]
    if mass is not None and mass >= 0.01:
        return f"{100 * mass:.0f}%"
    return _mass(r)


def explain(records: Sequence[Record], *, samples: int, train: int) -> list[str]:
    """Plain sentences that read the table aloud, quoting numbers from this run."""
    if not records:
        return []
    first, last = records[0], records[-1]
    d = last["dim"]
    lo, hi = last["shell_90_exact"]
    lo1, hi1 = first["shell_90_exact"]
    shell = (
        f"The mass sits in a thin shell: at d = {d}, 90% of it lies between radius "
        f"{lo:.1f} and {hi:.1f}, around √d = {math.sqrt(d):.1f}"
    )
    if first is not last:
        shell += (
            f"; the shell's width barely changes ({hi1 - lo1:.2f} at d = {first['dim']}, "
            f"{hi - lo:.2f} at d = {d}) while its radius grows like √d"
        )
    hits = round(last["mass_within_unit_ball_mc"] * samples)
    sentences = [
        shell + ".",
        "The mode's neighbourhood is empty: the unit ball around the mode, where the "
        "density is highest, holds "
        + _at(
            first,
            last,
            lambda r: f"{_share_of_mass(r)} of the mass",
            "but only",
            lambda r: f"{_share_of_mass(r)} of it",
        )
        + f" ({hits} of {samples} Monte Carlo draws landed in it at d = {d}), and a "
        f"typical point's log-density is d/2 = {d / 2:g} nats below the mode's.",
        f"Volumes concentrate: at d = {d} the unit ball fills "
        f"{fmt_log10(last['log10_ball_to_cube_volume_exact'])} of the cube [−1, 1]^d "
        f"around it, and {_outer_share(d)} of the ball's own volume lies within 1% of its "
        "surface.",
        f"Distances concentrate: seen from a random point, the farthest of {samples} "
        "samples is "
        + _at(
            first,
            last,
            lambda r: f"{fmt_num(1 + r['distance_contrast_mc'], 3)} times as far as the nearest",
            "but only",
            lambda r: f"{fmt_num(1 + r['distance_contrast_mc'], 3)} times as far",
        )
        + ", so 'near' and 'far' stop meaning much.",
    ]
    kde = (
        "The data a kernel density estimate needs explodes: to bring its relative mean "
        "squared error at the mode below 0.1, even at its best bandwidth, it needs "
        + _at(first, last, lambda r: f"{_kde_n(r)} samples", again=_kde_n)
    )
    if last["log10_kde_samples_needed_exact"] > 80:
        kde += ", more than the ~1e+80 atoms in the observable universe"
    sentences.append(kde + ".")
    learned = [r for r in records if r["kde_heldout_gap"] is not None]
    if learned:
        a, b = learned[0], learned[-1]
        sentences.append(
            f"Learning in practice: fitted to {train} draws and scored on {samples} fresh "
            "ones, gencli's KDE loses "
            + _at(
                a,
                b,
                lambda r: f"{fmt_num(r['kde_heldout_gap'], 3)} nats per dimension",
                "and",
                lambda r: fmt_num(r["kde_heldout_gap"], 3),
            )
            + " (held-out KL), while a one-component Gaussian mixture, the right family "
            "here, loses " + _at(a, b, lambda r: fmt_num(r["gmm_heldout_gap"], 3), "and") + "."
        )
    return sentences


# --------------------------------------------------------------------------- files


def _plain(value: Any) -> Any:
    """JSON has no infinity: a count past the double range becomes null (see its log10)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(records: Sequence[Record]) -> str:
    """Records as a strict JSON list (no NaN or Infinity tokens)."""
    plain = [{key: _plain(value) for key, value in r.items()} for r in records]
    return json.dumps(plain, indent=2, allow_nan=False) + "\n"


def to_csv(records: Sequence[Record]) -> str:
    """Records as CSV, one row per dimension; empty cells where a value is missing."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {k: v for k, v in r.items() if k != "shell_90_exact"}
        row["shell_90_lo_exact"], row["shell_90_hi_exact"] = r["shell_90_exact"]
        writer.writerow({k: "" if row.get(k) is None else repr(row[k]) for k in CSV_COLUMNS})
    return out.getvalue()
