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
from pathlib import Path
from typing import IO, Any

import numpy as np

from gencli.data import Table, format_for, read_table
from gencli.errors import DataError, OutputError
from gencli.model import DensityModel
from gencli.modelfile import load
from gencli.streams import TableWriter, finite_chunks, stream_table


def check_output(
    output: str | os.PathLike[str] | None, *inputs: str | os.PathLike[str] | None
) -> None:
    """Refuse an output path that cannot be written or that is one of the inputs."""
    if output is None or str(output) == "-":
        return
    target = Path(output)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give a file name for the output")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{target}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: folder {folder} is not writable; choose another -o path")
    for source in inputs:
        if source is None or str(source) == "-":
            continue
        same = (
            target.exists() and Path(source).exists() and os.path.samefile(target, source)
        ) or target.resolve() == Path(source).resolve()
        if same:
            raise OutputError(
                f"{target}: is also an input; writing it would destroy it. Choose another -o path"
            )


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
    **options: Any,
) -> dict[str, Any]:
    """Read ``data``, fit a density, save it to ``output`` (and a report); return the record.

    ``background_import`` imports scikit-learn while the data is read (the command line
    does; see :func:`_import_in_background`).

    The record is what the report holds: the data, the candidates and their scores, the
    chosen model, train and held-out likelihood, repairs, time, versions and data hash.
    """
    check_output(output, data)
    check_output(report, data, output)
    if report is not None:
        from gencli.report import report_format

        report_format(report)
    started = time.perf_counter()
    wanted = "sklearn.mixture" if model == "gmm" and background_import else None
    loader = _import_in_background(wanted, data, format)
    table = read_table(data, format=format, columns=columns, dropna=dropna, stdin=stdin)
    from gencli.fitting import fit  # not at the top: score and sample never need it

    fitted = fit(table, model, **options)  # its import of scikit-learn waits for the loader
    if loader is not None:
        loader.join()
    fitted.save(output)
    record = fit_record(fitted, table, output, time.perf_counter() - started)
    if report is not None:
        from gencli.report import write_report

        write_report(report, record, fitted, table.values)
        record["report_file"] = str(report)
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
    flag_below: float | None = None,
    mode: str = "fast",
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score every row of ``data`` under the model; write ``log_density`` per row to ``output``.

    Works chunk by chunk, so memory stays flat however many rows there are. Columns are
    matched by name when both sides have names, else by position. With ``flag_below=Q``,
    rows whose log-density is below the Q-quantile of the held-out rows' (stored in the
    model file at fit time) get ``outlier = true``. ``mode`` is the KDE evaluation: 'fast'
    (relative error <= 1e-6), 'exact' or 'approx' (gridded; Gaussian kernel, 1-D and 2-D).
    """
    check_output(output, model_path, data)
    model = load(model_path)
    threshold = outlier_threshold(model, flag_below, str(model_path)) if flag_below else None
    stream = stream_table(data, format=format, stdin=stdin)
    header = Table(np.empty((0, len(stream.columns))), stream.columns, stream.named, stream.source)
    extra = model.extra_columns(header)
    picks = model.column_picks(header)
    flag_names = ["outlier"] if threshold is not None else []
    rows = 0
    total = 0.0
    outliers = 0
    with contextlib.ExitStack() as stack:
        writer = None
        if output is not None:
            writer = stack.enter_context(
                TableWriter(output, ["log_density"], flag_names, stdout=stdout)
            )
        for chunk in finite_chunks(stream):
            log_density = model.score_samples(chunk[:, picks], mode=mode)
            _require_representable(log_density, model, stream.source, rows)
            flags = None
            if threshold is not None:
                flags = {"outlier": log_density < threshold}
                outliers += int(flags["outlier"].sum())
            if writer is not None:
                writer.write(log_density.reshape(-1, 1), flags)
            rows += chunk.shape[0]
            total += float(np.sum(log_density))
            if progress is not None:
                progress(chunk.shape[0])
    if rows == 0:
        raise DataError(f"{stream.source}: has no data rows; nothing to score")
    mean = total / rows
    return {
        "outliers": None
        if threshold is None
        else {"quantile": flag_below, "threshold": threshold, "count": outliers},
        "model_file": str(model_path),
        "source": stream.source,
        "ignored_columns": extra,
        "matched_by": "name" if model.named_columns and stream.named else "position",
        "rows": rows,
        "mean_log_likelihood": mean,
        "total_log_likelihood": total,
        "bits_per_dimension": -mean / (model.n_features * math.log(2)),
        "mode": mode if model.family == "kde" else None,
        "output": None if output is None else str(output),
    }


def _require_representable(
    log_density: np.ndarray, model: DensityModel, source: str, offset: int
) -> None:
    """No NaN or infinity reaches a score, except -inf where a compact kernel's density is
    truly zero."""
    bad = ~np.isfinite(log_density)
    if model.family == "kde" and model.params["kernel"] in (
        "tophat",
        "epanechnikov",
        "linear",
        "cosine",
    ):
        bad &= ~np.isneginf(log_density)
    if np.any(bad):
        row = offset + int(np.flatnonzero(bad)[0]) + 1
        raise DataError(
            f"{source}: row {row} is so far from the training data that its log-density is "
            "beyond what a float can hold; check that row"
        )


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
    stdout: IO[bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Draw ``n`` rows from the model and write them, chunk by chunk, with the column names."""
    check_output(output, model_path)
    model: DensityModel = load(model_path)
    with TableWriter(output, model.columns, format=format, stdout=stdout) as writer:
        for chunk in model.iter_samples(n, seed=seed):
            if not np.all(np.isfinite(chunk)):
                raise OutputError("the model produced non-finite samples; refit it")
            writer.write(chunk)
            if progress is not None:
                progress(chunk.shape[0])
    return {"model_file": str(model_path), "rows": int(n), "output": str(output), "seed": seed}
