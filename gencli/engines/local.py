"""The local engine: work in this process, a chunk at a time, so memory stays flat whatever
the row count. A job (:mod:`gencli.jobs`) reads and writes; an engine turns chunks of rows
into scores and draws chunks of samples, checking every number it hands back.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.density.model import DensityModel
from gencli.errors import DataError, OutputError
from gencli.io.data import Table, format_for, require_finite
from gencli.io.streams import TableStream, shift_rows


@dataclass
class ScoredChunk:
    """One chunk's scores: the data rows scored (counted from 1), their log-densities, and
    how many rows the chunk read, skipped (missing values) and scored -inf (underflow)."""

    row_numbers: np.ndarray
    log_density: np.ndarray
    rows_read: int
    skipped: int
    underflow: int


def score_chunks(
    model: DensityModel,
    stream: TableStream,
    picks: list[int],
    *,
    mode: str = "fast",
    dropna: bool = False,
    allow_underflow: bool = False,
) -> Iterator[ScoredChunk]:
    """Score each chunk of ``stream`` (columns ``picks``, in the model's order).

    A row with a missing or infinite value stops the run naming it, or with ``dropna`` is
    skipped and counted; a density below the smallest float stops it, or with
    ``allow_underflow`` scores -inf and is counted.
    """
    offset = 0  # data rows read so far, scored or skipped
    for chunk in stream.chunks:
        X = chunk[:, picks]
        row_numbers = np.arange(offset + 1, offset + 1 + X.shape[0], dtype=np.float64)
        offset += X.shape[0]
        finite = np.isfinite(X).all(axis=1)
        skipped = 0
        if not finite.all():
            if not dropna:
                _refuse_missing(X, model.columns, stream, offset - X.shape[0])
            skipped = int((~finite).sum())
            X, row_numbers = X[finite], row_numbers[finite]
        log_density = model.score_samples(X, mode=mode)
        off_support = None if model.bounds is None else ~model.bounds.inside(X)
        underflow = _check_representable(
            log_density, model, stream.source, row_numbers, allow_underflow, off_support
        )
        yield ScoredChunk(row_numbers, log_density, chunk.shape[0], skipped, underflow)


def sample_chunks(model: DensityModel, n: int, *, seed: int | None = None) -> Iterator[np.ndarray]:
    """``n`` rows drawn from the model, a chunk at a time; no NaN or infinity gets out."""
    for chunk in model.iter_samples(n, seed=seed):
        if not np.all(np.isfinite(chunk)):
            raise OutputError("the model produced non-finite samples; refit it")
        yield chunk


def _refuse_missing(X: np.ndarray, columns: list[str], stream: TableStream, offset: int) -> None:
    """The one-line refusal of missing or infinite values, rows counted from the file's start."""
    try:
        require_finite(Table(X, columns, stream.named, stream.source), hint="pass --dropna")
    except DataError as exc:
        raise DataError(shift_rows(str(exc), offset)) from None


def _check_representable(
    log_density: np.ndarray,
    model: DensityModel,
    source: str,
    row_numbers: np.ndarray,
    allow_underflow: bool,
    off_support: np.ndarray | None = None,
) -> int:
    """No NaN or +inf reaches a score; -inf only where the density is truly zero (a compact
    kernel's, or a row outside a bounded model's support: ``off_support``) or, with
    ``allow_underflow``, where the density is below the smallest float.
    Returns how many rows scored -inf."""
    negative_infinity = np.isneginf(log_density)
    compact = model.family == "kde" and model.params["kernel"] in (
        "tophat",
        "epanechnikov",
        "linear",
        "cosine",
    )
    bad = ~np.isfinite(log_density)
    if compact or allow_underflow:
        bad &= ~negative_infinity
    if off_support is not None:
        bad &= ~off_support
    if np.any(bad):
        row = int(row_numbers[int(np.flatnonzero(bad)[0])])
        raise DataError(
            f"{source}: row {row} is so far from the training data that its log-density is "
            "beyond what a float can hold; check that row, or pass --allow-underflow to score "
            "such rows -inf and go on"
        )
    return int(negative_infinity.sum())


def import_in_background(
    module: str | None, data: str | os.PathLike[str], format: str | None
) -> threading.Thread | None:
    """Start importing ``module`` while the main thread reads the data (the CLI's ``fit``).

    scikit-learn takes 0.5-0.9 s to import, and reading, standardizing and splitting the
    rows need none of it (arrow releases the GIL while it parses), so they overlap. The
    reader's own modules are imported first, and the main thread imports nothing at module
    level until it needs scikit-learn, where Python's import lock makes it wait for this
    thread: neither thread ever holds a lock the other is waiting on. If reading fails,
    the thread is left to finish or to end with the process, so the error is not delayed.

    On this thread only, pandas cannot be imported: scikit-learn imports it if it can
    (0.2 s) for data frames gencli never passes (its ``fixes.pd`` stays None in this
    process). Any other thread imports pandas as usual.
    """
    from gencli.native import address_space_limited

    if module is None or module in sys.modules or address_space_limited():
        return None  # under ulimit -v the fit loads it in turn, after checking the room
    reader = "pyarrow.csv"  # the reader's imports, done before the thread starts
    with contextlib.suppress(DataError):
        if format_for(data, format) == "parquet":
            reader = "pyarrow.parquet"
    importlib.import_module(reader)
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _SKIP_PANDAS)  # once, before any other thread imports

    def load() -> None:
        _SKIP_PANDAS.thread = threading.get_ident()
        try:
            importlib.import_module(module)
        except Exception:  # the main thread imports it again and reports
            pass
        finally:
            _SKIP_PANDAS.thread = None

    thread = threading.Thread(target=load, name="gencli-import", daemon=True)
    thread.start()
    return thread


class _SkipOnOneThread:
    """A meta-path finder that refuses some top-level packages to one thread's imports.

    It stays in ``sys.meta_path`` once inserted (removing it while another thread walks
    the list could make that thread skip a finder) and does nothing when ``thread`` is None.
    """

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)
        self.thread: int | None = None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if self.thread == threading.get_ident() and fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not imported here", name=fullname)
        return None


_SKIP_PANDAS = _SkipOnOneThread("pandas")


def score_summary(
    model: DensityModel,
    model_path: Any,
    flag_below: float | None,
    threshold: float | None,
    counts: dict[str, Any],
    output: Any,
    source: str,
    extra: list[str],
    named: bool,
    notes: list[str],
    mode: str,
) -> dict[str, Any]:
    """What :func:`gencli.jobs.score_file` returns, from its counts (either engine)."""
    rows = counts["rows"]
    total = float(counts["total"])
    mean = total / rows
    return {
        "outliers": None
        if threshold is None
        else {"quantile": flag_below, "threshold": threshold, "count": counts["outliers"]},
        "model_file": str(model_path),
        "source": source,
        "ignored_columns": extra,
        "matched_by": "name" if model.named_columns and named else "position",
        "rows": rows,
        "skipped_rows": counts["skipped"],
        "underflow_rows": counts["underflow"],
        "mean_log_likelihood": mean,
        "total_log_likelihood": total,
        "bits_per_dimension": -mean / (model.density_dimensions * math.log(2)),
        "mode": mode if model.family == "kde" else None,
        "output": None if output is None else str(output),
        "notes": notes,
    }
