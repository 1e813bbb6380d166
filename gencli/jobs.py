"""Whole jobs, file to file: what each command does, callable from Python too.

Each function checks its output path before the work starts (so a long fit does not end
in "cannot write"), does the work with the library, writes atomically and returns a
plain summary dictionary that the CLI renders.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np

from gencli.atomic import check_outputs
from gencli.data import Table, format_for, read_table
from gencli.errors import DataError, OutputError
from gencli.model import DensityModel
from gencli.modelfile import load
from gencli.sources import check_input
from gencli.streams import stream_table
from gencli.writers import TableWriter


def fit_file(
    data: str | os.PathLike[str],
    output: str | os.PathLike[str] = "model.pkl",
    *,
    model: str = "gmm",
    format: str | None = None,
    columns: Sequence[str] | None = None,
    dropna: bool = False,
    report: str | os.PathLike[str] | None = None,
    stdin: IO[bytes] | None = None,
    background_import: bool = False,
    header: bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Read ``data``, fit a density, save it to ``output`` (and a report); return the record.

    ``background_import`` imports scikit-learn while the data is read (the command line
    does; see :func:`_import_in_background`). ``header`` says whether a CSV's first row
    holds names (None: decide, and say so in ``record["notes"]`` when it is a guess).

    The record is what the report holds: the data, the candidates and their scores, the
    chosen model, train and held-out likelihood, repairs, time, versions and data hash.
    """
    check_input(data)  # first, so a bad data path is named as such
    if os.fspath(output) == "-":
        raise OutputError(
            "-o -: a model file does not go to stdout; give a file name such as -o model.pkl"
        )
    outputs: list[Any] = [(output, "the model file"), (report, "the report")]
    check_outputs(outputs, [data])
    if report is not None:
        from gencli.report import report_outputs

        check_outputs([outputs[0], *report_outputs(report)], [data])
    started = time.perf_counter()
    wanted = "sklearn.mixture" if model == "gmm" and background_import else None
    loader = _import_in_background(wanted, data, format)
    table = read_table(
        data, format=format, columns=columns, dropna=dropna, stdin=stdin, header=header
    )
    from gencli.fitting import fit  # not at the top: score and sample never need it

    fitted = fit(table, model, **options)  # its import of scikit-learn waits for the loader
    if loader is not None:
        loader.join()
    fitted.save(output)
    record = fit_record(fitted, table, output, time.perf_counter() - started)
    record["notes"] = list(table.notes)
    if report is not None:
        from gencli.report import write_report

        files = write_report(report, record, fitted, table.values)
        record["report_file"] = str(report)
        record["report_files"] = [str(f) for f in files]
    return record


def _import_in_background(
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


def fit_record(
    fitted: DensityModel, table: Table, output: str | os.PathLike[str], seconds: float
) -> dict[str, Any]:
    """Everything worth knowing about a fit, as plain data (see :func:`fit_file`)."""
    from gencli.fitting import bandwidth_in_data_units
    from gencli.preprocess import column_moments

    meta = fitted.metadata
    X = table.values
    return {
        "model_file": str(output),
        "family": fitted.family,
        "parameters": fitted.describe(),
        "source": table.source,
        "rows": table.n_rows,
        "dropped_rows": table.dropped_rows,
        "columns": fitted.columns,
        "standardized": meta["standardized"],
        "mean_log_likelihood": meta["train_mean_log_likelihood"],
        "bits_per_dimension": meta["train_bits_per_dimension"],
        "validation": meta.get("validation"),
        "selection": meta.get("selection"),
        "fixes": list(meta.get("fixes", [])),
        "warnings": list(meta.get("warnings", [])),
        "data_summary": [
            {
                "name": name,
                "mean": float(mean),
                "std": float(std),
                "min": float(low),
                "max": float(high),
            }
            for name, mean, std, low, high in zip(
                table.columns,
                *column_moments(X),  # finite for values near 1e308, whose sum overflows
                X.min(axis=0),
                X.max(axis=0),
                strict=True,
            )
        ],
        "seconds": seconds,
        "data_sha256": meta["data_sha256"],
        "versions": {
            "gencli": meta["gencli_version"],
            "sklearn": meta["sklearn_version"],
            "numpy": meta["numpy_version"],
            "python": meta["python_version"],
        },
        "bandwidth_data_units": bandwidth_in_data_units(fitted),
    }


def score_file(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    format: str | None = None,
    output_format: str | None = None,
    precision: int | None = None,
    flag_below: float | None = None,
    mode: str = "fast",
    dropna: bool = False,
    allow_underflow: bool = False,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    progress: Callable[[int], None] | None = None,
    header: bool | None = None,
) -> dict[str, Any]:
    """Score every row of ``data`` under the model; write ``log_density`` per row to ``output``
    ('-' is stdout; None writes nothing and only summarises).

    Works chunk by chunk, so memory stays flat however many rows there are. Columns are
    matched by name when both sides have names, else by position. With ``flag_below=Q``,
    rows whose log-density is below the Q-quantile of the held-out rows' (stored in the
    model file at fit time) get ``outlier = true``. ``mode`` is the KDE evaluation: 'fast'
    (relative error <= 1e-6), 'exact' or 'approx' (gridded; Gaussian kernel, 1-D and 2-D).

    ``dropna`` skips rows with a missing or infinite value in a column the model uses; they
    are counted, and the output gets a first column ``row`` (the data row, counting from 1)
    so the scores can be joined back. ``allow_underflow`` scores a row whose density is
    below the smallest positive float as -inf (counted) instead of stopping the run.
    ``header`` is as for :func:`fit_file`; notes on guesses are in ``result["notes"]``.
    """
    from gencli.writers import output_format as format_of_output

    check_input(data)  # first, so a bad data path is named as such
    check_outputs([output], [model_path, data])
    if output is not None:
        format_of_output(output, output_format)  # a contradiction is refused before any work
    model = load(model_path)
    threshold = outlier_threshold(model, flag_below, str(model_path)) if flag_below else None

    def model_columns(columns: list[str], named: bool) -> list[int]:
        return model.column_picks(Table(np.empty((0, len(columns))), columns, named, str(data)))

    stream = stream_table(data, format=format, stdin=stdin, header=header, usecols=model_columns)
    names = Table(np.empty((0, len(stream.columns))), stream.columns, stream.named, stream.source)
    extra = model.extra_columns(names)
    picks = model.column_picks(names)
    flag_names = ["outlier"] if threshold is not None else []
    number_names = ["row", "log_density"] if dropna else ["log_density"]
    counts = {"rows": 0, "skipped": 0, "underflow": 0, "outliers": 0}
    total = 0.0
    offset = 0  # data rows read so far, scored or skipped
    with contextlib.ExitStack() as stack:
        writer = None
        if output is not None:
            writer = stack.enter_context(
                TableWriter(
                    output,
                    number_names,
                    flag_names,
                    format=output_format,
                    precision=precision,
                    whole=1 if dropna else 0,
                    stdout=stdout,
                )
            )
        for chunk in stream.chunks:
            X = chunk[:, picks]
            row_numbers = np.arange(offset + 1, offset + 1 + X.shape[0], dtype=np.float64)
            offset += X.shape[0]
            finite = np.isfinite(X).all(axis=1)
            if not finite.all():
                if not dropna:
                    _refuse_missing(X, model.columns, stream, offset - X.shape[0])
                counts["skipped"] += int((~finite).sum())
                X, row_numbers = X[finite], row_numbers[finite]
            log_density = model.score_samples(X, mode=mode)
            underflow = _check_representable(
                log_density, model, stream.source, row_numbers, allow_underflow
            )
            counts["underflow"] += underflow
            flags = None
            if threshold is not None:
                flags = {"outlier": log_density < threshold}
                counts["outliers"] += int(flags["outlier"].sum())
            if writer is not None:
                columns = [row_numbers, log_density] if dropna else [log_density]
                writer.write(np.column_stack(columns), flags)
            counts["rows"] += X.shape[0]
            total += float(np.sum(log_density))
            if progress is not None:
                progress(chunk.shape[0])
        if counts["rows"] == 0:  # inside: an output file must not be published
            if counts["skipped"]:
                raise DataError(
                    f"{stream.source}: every row has a missing or infinite value; nothing to score"
                )
            raise DataError(f"{stream.source}: has no data rows; nothing to score")
    rows = counts["rows"]
    mean = total / rows
    return {
        "outliers": None
        if threshold is None
        else {"quantile": flag_below, "threshold": threshold, "count": counts["outliers"]},
        "model_file": str(model_path),
        "source": stream.source,
        "ignored_columns": extra,
        "matched_by": "name" if model.named_columns and stream.named else "position",
        "rows": rows,
        "skipped_rows": counts["skipped"],
        "underflow_rows": counts["underflow"],
        "mean_log_likelihood": mean,
        "total_log_likelihood": total,
        "bits_per_dimension": -mean / (model.n_features * math.log(2)),
        "mode": mode if model.family == "kde" else None,
        "output": None if output is None else str(output),
        "notes": list(stream.notes),
    }


def _refuse_missing(X: np.ndarray, columns: list[str], stream: Any, offset: int) -> None:
    """The one-line refusal of missing or infinite values, rows counted from the file's start."""
    from gencli.data import require_finite
    from gencli.streams import _shift_rows

    try:
        require_finite(Table(X, columns, stream.named, stream.source), hint="pass --dropna")
    except DataError as exc:
        raise DataError(_shift_rows(str(exc), offset)) from None


def _check_representable(
    log_density: np.ndarray,
    model: DensityModel,
    source: str,
    row_numbers: np.ndarray,
    allow_underflow: bool,
) -> int:
    """No NaN or +inf reaches a score; -inf only where a compact kernel's density is truly
    zero or, with ``allow_underflow``, where the density is below the smallest float.
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
    if np.any(bad):
        row = int(row_numbers[int(np.flatnonzero(bad)[0])])
        raise DataError(
            f"{source}: row {row} is so far from the training data that its log-density is "
            "beyond what a float can hold; check that row, or pass --allow-underflow to score "
            "such rows -inf and go on"
        )
    return int(negative_infinity.sum())


def outlier_threshold(model: DensityModel, quantile: float, name: str) -> float:
    """The log-density below which a row is an outlier: the held-out rows' ``quantile``."""
    if not 0.0 < quantile < 1.0:
        raise DataError(f"--flag-below must be a quantile between 0 and 1, got {quantile}")
    stored = model.metadata.get("heldout_log_density_quantiles")
    if not stored:
        raise DataError(
            f"{name}: holds no held-out log-densities to compare with; refit it with "
            "--validation 0.2 (say) to use --flag-below"
        )
    return float(np.interp(quantile, stored["levels"], stored["values"]))


def sample_file(
    model_path: str | os.PathLike[str],
    n: int,
    output: str | os.PathLike[str] = "-",
    *,
    seed: int | None = None,
    format: str | None = None,
    precision: int | None = None,
    stdout: IO[bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Draw ``n`` rows from the model and write them, chunk by chunk, with the column names.

    ``precision`` rounds CSV/TSV numbers to that many significant digits."""
    from gencli.writers import output_format

    check_outputs([output], [model_path])
    output_format(output, format)  # a contradiction is refused before any work
    model: DensityModel = load(model_path)
    with TableWriter(
        output, model.columns, format=format, precision=precision, rows=n, stdout=stdout
    ) as writer:
        for chunk in model.iter_samples(n, seed=seed):
            if not np.all(np.isfinite(chunk)):
                raise OutputError("the model produced non-finite samples; refit it")
            writer.write(chunk)
            if progress is not None:
                progress(chunk.shape[0])
    return {"model_file": str(model_path), "rows": int(n), "output": str(output), "seed": seed}
