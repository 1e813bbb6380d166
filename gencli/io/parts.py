"""Data in many files: a file, several files, a glob or a folder of part files, cut into
parts that can be read on their own (one file, or a run of a Parquet file's row groups).

A part is plain data (path, format, row groups), so it can be sent to a Dask worker and read
there: the rows never pass through the process that plans the work. Parts keep file order,
so "row i" means the same row however the parts are cut.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gencli.errors import DataError
from gencli.io.data import (
    FORMATS,
    format_for,
    parse_columns,
    read_table,
    require_finite,
    select_columns,
)
from gencli.io.remote import expand_url, is_url
from gencli.io.streams import stream_table
from gencli.io.table import Table, default_names, unique_names

# Rows per part when a Parquet file's row groups are gathered: enough that a task's fixed
# costs (tens of milliseconds) are small, few enough that a part is ~100 MB at 10 columns.
PART_ROWS = 1_000_000
_DATA_SUFFIXES = {".csv", ".txt", ".tsv", ".tab", ".npy", ".parquet", ".pq"}


@dataclass(frozen=True)
class Part:
    """Rows that one task reads: a whole file, or row groups ``groups`` of a Parquet file."""

    path: str
    format: str
    groups: tuple[int, ...] | None = None
    rows: int | None = None  # known without reading (Parquet footers), else None
    start: int = 0  # rows of its file before it (row groups before ``groups``)


@dataclass(frozen=True)
class PartPlan:
    """The parts of a data set, in order, and the columns every part is read with."""

    source: str
    parts: tuple[Part, ...]
    columns: tuple[str, ...]
    named: bool
    header: bool | None
    dropna: bool
    width: int = 0  # columns of the first file (files without names match by position)
    notes: tuple[str, ...] = ()  # what reading the first file guessed

    def read(self, index: int) -> Table:
        """Part ``index``'s rows (``dropped_rows`` counts those --dropna dropped)."""
        return read_part(self, self.parts[index])


def expand(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The data files ``data`` names, in order: files as given, a glob's matches and a
    folder's data files sorted by name (Parquet datasets' ``_metadata`` and hidden files left
    out). A pattern that matches nothing and an empty folder are refused."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not items:
        raise DataError("no data given; name a file, several files, a glob or a folder")
    paths: list[str] = []
    for item in items:
        text = os.fspath(item)
        if is_url(text):
            paths.extend(expand_url(text))
        elif text != "-" and os.path.isdir(text):
            found = [
                str(p)
                for p in sorted(Path(text).rglob("*"))
                if p.is_file()
                and p.suffix.lower() in _DATA_SUFFIXES
                and not any(part.startswith(("_", ".")) for part in p.relative_to(text).parts)
            ]
            if not found:
                raise DataError(
                    f"{text}: is a folder with no data files (.csv, .tsv, .npy, .parquet) in it"
                )
            paths.extend(found)
        elif glob.has_magic(text) and not os.path.exists(text):
            found = [
                p
                for p in sorted(glob.glob(text, recursive=True))
                if os.path.isfile(p) and not os.path.basename(p).startswith(("_", "."))
            ]
            if not found:
                raise DataError(f"{text}: no data file matches this pattern; check it")
            paths.extend(found)
        else:
            paths.append(text)
    return paths


def plan_parts(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
    header: bool | None = None,
    dropna: bool = False,
    part_rows: int = PART_ROWS,
) -> PartPlan:
    """Cut ``data`` into parts; the first file's columns (or ``columns``) are every part's."""
    paths = expand(data)
    if "-" in paths:
        raise DataError(
            "standard input cannot be read with other files or on a cluster; give files"
        )
    fmt = format
    if fmt is not None and fmt not in FORMATS:
        format_for(paths[0], fmt)  # the one-line refusal of an unknown format
    parts: list[Part] = []
    for path in paths:
        kind = format_for(path, fmt)
        parts.extend(_parquet_parts(path, part_rows) if kind == "parquet" else [Part(path, kind)])
    first = parts[0]
    head = stream_table(first.path, format=first.format, header=header)  # names only
    chosen = parse_columns(columns) or list(head.columns)
    empty = Table(np.empty((0, len(head.columns))), list(head.columns), head.named, first.path)
    select_columns(empty, chosen)  # an unknown name is refused before any work
    source = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more files)"
    return PartPlan(
        source,
        tuple(parts),
        tuple(chosen),
        head.named,
        head.named,
        dropna,
        width=len(head.columns),
        notes=tuple(head.notes),
    )


def _parquet_parts(path: str, part_rows: int) -> list[Part]:
    """Runs of row groups of about ``part_rows`` rows each."""
    import pyarrow.parquet as pq

    from gencli.io.binread import open_parquet
    from gencli.io.sources import open_input

    handle = open_parquet(open_input(path))
    metadata: pq.FileMetaData = handle.metadata
    out: list[Part] = []
    run: list[int] = []
    rows = start = 0
    for group in range(metadata.num_row_groups):
        run.append(group)
        rows += metadata.row_group(group).num_rows
        if rows >= part_rows:
            out.append(Part(path, "parquet", tuple(run), rows, start))
            run, start, rows = [], start + rows, 0
    if run or not out:
        out.append(Part(path, "parquet", tuple(run), rows, start))
    return out


def read_part(plan: PartPlan, part: Part) -> Table:
    """The part's rows, the plan's columns, as finite float64 (missing values refused, or
    dropped with the plan's ``dropna`` and counted)."""
    if part.format == "parquet" and part.groups is not None:
        return _read_groups(plan, part)
    table = read_table(part.path, format=part.format, header=plan.header, dropna=plan.dropna)
    return _match_columns(plan, table)


def _read_groups(plan: PartPlan, part: Part) -> Table:
    values, columns = read_groups(plan, part)
    try:
        return require_finite(Table(values, columns, True, part.path), dropna=plan.dropna)
    except DataError as exc:  # rows counted from the file's first, not the part's
        from gencli.io.streams import shift_rows

        raise DataError(shift_rows(str(exc), part.start)) from None


def read_groups(plan: PartPlan, part: Part) -> tuple[np.ndarray, list[str]]:
    """A Parquet part's values (missing values kept as NaN) and column names: the plan's
    columns, or every column when the plan names none."""
    from gencli.io.binread import open_parquet, parquet_names
    from gencli.io.sources import open_input
    from gencli.io.table import from_arrow

    handle = open_parquet(open_input(part.path))
    names = unique_names(parquet_names(handle))
    wanted = list(plan.columns) or names
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"{part.path}: has no column '{missing[0]}' (the first file has it); "
            "give files with the same columns"
        )
    arrow = handle.read_row_groups(list(part.groups or ()), columns=wanted)
    raw = from_arrow(arrow, part.path, named=True)
    if raw.non_numeric:
        column = next(iter(raw.non_numeric))
        raise DataError(
            f"{part.path}: column '{column}' is not numbers; leave it out with --columns"
        )
    return raw.values, list(raw.columns)


def _match_columns(plan: PartPlan, table: Table) -> Table:
    """The plan's columns of a part read whole: by name when the files have names, else
    by position (x0, x1, ... of a file with as many columns as the first)."""
    if plan.named and table.named:
        missing = [c for c in plan.columns if c not in table.columns]
        if missing:
            raise DataError(
                f"{table.source}: has no column '{missing[0]}' (the first file has it); "
                "give files with the same columns"
            )
        return select_columns(table, list(plan.columns))
    if table.named != plan.named or table.n_columns != plan.width:
        raise DataError(
            f"{table.source}: has {table.n_columns} columns"
            + (" and no header" if plan.named else "")
            + f" but the first file has {plan.width}"
            + (" with names" if plan.named else "")
            + "; give files with the same columns"
        )
    table = replace(table, columns=default_names(plan.width), named=False)
    return select_columns(table, list(plan.columns))


def read_parts(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
    dropna: bool = False,
    header: bool | None = None,
) -> Table:
    """Every part of ``data`` in one table, in order (the local engine's read of many files)."""
    plan = plan_parts(data, format=format, columns=columns, header=header, dropna=dropna)
    tables = [plan.read(i) for i in range(len(plan.parts))]
    values = np.concatenate([t.values for t in tables])
    dropped = sum(t.dropped_rows for t in tables)
    return Table(values, list(plan.columns), plan.named, plan.source, dropped, plan.notes)
