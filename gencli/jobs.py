"""Whole jobs, file to file: what each command does, callable from Python too.

Each function checks its output path before the work starts (so a long fit does not end
in "cannot write"), does the work with the library, writes atomically and returns a
plain summary dictionary that the CLI renders.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np

from gencli.density.given import for_scoring
from gencli.density.model import DensityModel
from gencli.density.modelfile import load
from gencli.engines.local import (
    import_in_background,
    sample_chunks,
    score_chunks,
    score_summary,
)
from gencli.errors import DataError
from gencli.fitting.records import data_summary, fit_record
from gencli.io.atomic import check_outputs
from gencli.io.data import Table, read_table
from gencli.io.sources import check_input
from gencli.io.streams import stream_table
from gencli.io.writers import TableWriter
from gencli.job_paths import check_fit_outputs, input_paths, is_many


def fit_file(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] = "model.pkl",
    *,
    model: str = "gmm",
    engine: str = "local",
    cluster: Any = None,
    say: Callable[[str], None] | None = None,
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
    does; see :func:`gencli.engines.local.import_in_background`). ``header`` says whether a
    CSV's first row holds names (None: decide, and say so in ``record["notes"]`` when it is
    a guess).

    The record is what the report holds: the data, the candidates and their scores, the
    chosen model, train and held-out likelihood, repairs, time, versions and data hash.

    ``data`` may also be several files, a glob or a folder of part files (read one after
    the other). ``engine='dask'`` fits on a Dask cluster (``cluster``: a
    :class:`gencli.engines.dask_jobs.Cluster`; see :mod:`gencli.engines.dask_fit`), which
    takes ``max_rows`` for a kernel density; ``say`` gets its one-line notes.
    """
    many = is_many(data) or engine == "dask"
    inputs = input_paths(data, many)
    check_fit_outputs(output, report, inputs)
    if engine == "dask":
        from gencli.engines.dask_jobs import fit_job

        return fit_job(
            data,
            output,
            model,
            cluster,
            say,
            format=format,
            columns=columns,
            dropna=dropna,
            report=report,
            header=header,
            **options,
        )
    options.pop("max_rows", None)
    weight_column = options.get("weights")
    if isinstance(weight_column, str) and columns is not None and weight_column not in columns:
        columns = [*columns, weight_column]  # read, then taken out of the table by the fit
    keep_missing = options.get("missing") == "em"
    if keep_missing and (dropna or many):
        raise DataError(
            "--missing em keeps rows with gaps: it reads one file, and --dropna (which drops "
            "them) contradicts it; drop one of the two"
        )
    if many:
        from gencli.io.parts import read_parts

        table = read_parts(data, format=format, columns=columns, dropna=dropna, header=header)
        return fit_table(table, data, output, model, report, **options)
    assert isinstance(data, (str, os.PathLike))
    started = time.perf_counter()
    wanted = "sklearn.mixture" if model in ("gmm", "auto") and background_import else None
    loader = import_in_background(wanted, data, format)
    table = read_table(
        data, format=format, columns=columns, dropna=dropna, stdin=stdin, header=header,
        keep_missing=keep_missing,
    )  # fmt: skip
    return fit_table(table, data, output, model, report, loader=loader, started=started, **options)


def fit_table(
    table: Table,
    data: Any,
    output: str | os.PathLike[str],
    model: str,
    report: str | os.PathLike[str] | None,
    *,
    loader: Any = None,
    started: float | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The rest of :func:`fit_file` once the rows are read."""
    from gencli.fitting.fitter import fit  # not at the top: score and sample never need it

    started = time.perf_counter() if started is None else started

    # The columns modelled (a --weights column is not).
    modelled = [j for j, c in enumerate(table.columns) if c != options.get("weights")]
    every_column = data_summary(table)  # before the fit, which may standardize in place
    summary = [every_column[j] for j in modelled]
    # With no report to draw the rows, they are the fit's to overwrite (a copy fewer).
    options["overwrite_data"] = report is None
    fitted = fit(table, model, **options)  # its import of scikit-learn waits for the loader
    if loader is not None:
        loader.join()
    fitted.save(output)
    record = fit_record(
        fitted,
        table.source,
        table.n_rows,
        table.dropped_rows,
        output,
        time.perf_counter() - started,
        summary,
    )
    record["notes"] = list(table.notes)
    if report is not None:
        from gencli.reports.files import write_report

        shown = table.values[:, modelled]
        shown = shown[~np.isnan(shown).any(axis=1)]  # --missing em: figures show whole rows
        files = write_report(report, record, fitted, shown)
        record["report_file"] = str(report)
        record["report_files"] = [str(f) for f in files]
    return record


def score_file(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
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
    engine: str = "local",
    cluster: Any = None,
    say: Callable[[str], None] | None = None,
    columns: Sequence[str] | None = None,
    given: Sequence[str] | None = None,
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
    ``data`` may be several files, a glob or a folder (scored in name order, as one table);
    ``engine='dask'`` scores the parts on a cluster's workers (``cluster`` as for
    :func:`fit_file`), with the same numbers. ``columns`` scores by the marginal density of
    those columns; ``given`` by the density of the others given these, row by row.
    """
    from gencli.engines.dask_score import check_folder_output, is_folder_output
    from gencli.io.writers import output_format as format_of_output

    folder = is_folder_output(output)
    many = is_many(data) or engine == "dask" or folder
    inputs = input_paths(data, many)
    if folder:
        check_folder_output(output, output_format, precision)
    else:
        check_outputs([output], [model_path, *inputs])
    if output is not None and not folder:
        format_of_output(output, output_format)  # a contradiction is refused before any work
    model = for_scoring(load(model_path), columns, given)
    threshold = outlier_threshold(model, flag_below, str(model_path)) if flag_below else None
    options: dict[str, Any] = {"mode": mode, "dropna": dropna, "allow_underflow": allow_underflow}
    if folder:
        from gencli.engines.dask_score import score_to_folder

        plan, counts, cluster_record = score_to_folder(
            model,
            data,
            output,
            engine=engine,
            cluster=cluster,
            say=say,
            format=format,
            header=header,
            options=options,
            threshold=threshold,
            progress=progress,
        )
        names = Table(np.empty((0, len(plan.columns))), list(plan.columns), plan.named, "")
        summary = score_summary(
            model, model_path, flag_below, threshold, counts, output, plan.source,
            model.extra_columns(names), plan.named, list(plan.notes), mode,
        )  # fmt: skip
        return _with_engine(summary, cluster_record)
    stack = contextlib.ExitStack()  # a cluster, then the writer: closed in turn
    try:
        if many:
            from gencli.engines.dask_score import many_scored

            stream, scored, cluster_record = many_scored(
                stack, model, data, engine, cluster, say, format, header, options
            )
        else:
            usecols = model.usecols(str(data))
            stream = stream_table(
                inputs[0], format=format, stdin=stdin, header=header, usecols=usecols
            )
            scored, cluster_record = None, {}
        names = Table(
            np.empty((0, len(stream.columns))), stream.columns, stream.named, stream.source
        )
        extra = model.extra_columns(names)
        picks = model.column_picks(names)
    except BaseException:
        stack.close()
        raise
    if scored is None:
        scored = score_chunks(model, stream, picks, **options)
    flag_names = ["outlier"] if threshold is not None else []
    number_names = ["row", "log_density"] if dropna else ["log_density"]
    counts = {"rows": 0, "skipped": 0, "underflow": 0, "outliers": 0}
    total = 0.0
    with stack:
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
        for part in scored:
            log_density = part.log_density
            counts["skipped"] += part.skipped
            counts["underflow"] += part.underflow
            flags = None
            if threshold is not None:
                flags = {"outlier": log_density < threshold}
                counts["outliers"] += int(flags["outlier"].sum())
            if writer is not None:
                out = np.column_stack([part.row_numbers, log_density]) if dropna else log_density
                writer.write(out, flags)
            counts["rows"] += log_density.size
            total += float(np.sum(log_density))
            if progress is not None:
                progress(part.rows_read)
        if counts["rows"] == 0:  # inside: an output file must not be published
            if counts["skipped"]:
                raise DataError(
                    f"{stream.source}: every row has a missing or infinite value; nothing to score"
                )
            raise DataError(f"{stream.source}: has no data rows; nothing to score")
    counts["total"] = total
    summary = score_summary(
        model, model_path, flag_below, threshold, counts, output, stream.source, extra,
        stream.named, list(stream.notes), mode,
    )  # fmt: skip
    return _with_engine(summary, cluster_record)


def _with_engine(summary: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A score summary with what a cluster did (workers, parts, seconds scoring), if any."""
    if record:
        summary["engine"] = record
    return summary


def outlier_threshold(model: DensityModel, quantile: float, name: str) -> float:
    """The log-density below which a row is an outlier: the held-out rows' ``quantile``."""
    if not 0.0 < quantile < 1.0:
        raise DataError(f"--flag-below must be a quantile between 0 and 1, got {quantile}")
    stored = model.metadata.get("heldout_log_density_quantiles")
    if not stored:
        raise DataError(
            f"{name}: holds no held-out log-densities to compare with; "
            + ("--flag-below needs the model as fitted, not a marginal or conditional density"
               if model.metadata.get("derived") else "refit it with --validation 0.2 (say) "
               "to use --flag-below")
        )  # fmt: skip
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
    engine: str = "local",
    cluster: Any = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Draw ``n`` rows from the model and write them, chunk by chunk, with the column names.

    ``precision`` rounds CSV/TSV numbers to that many significant digits. ``engine='dask'``
    draws the blocks on a cluster's workers: the same rows for a seed as the local engine."""
    from gencli.io.writers import output_format

    check_outputs([output], [model_path])
    output_format(output, format)  # a contradiction is refused before any work
    model: DensityModel = load(model_path)
    # A cluster (if any) outside the writer: the local engine's write is as it always was.
    with contextlib.ExitStack() as stack:
        chunks = sample_chunks(model, n, seed=seed)
        if engine == "dask":
            from gencli.engines.dask_jobs import enter_cluster, sampled_chunks

            chunks = sampled_chunks(enter_cluster(stack, cluster, say), model, n, seed)
        with TableWriter(
            output, model.columns, format=format, precision=precision, rows=n, stdout=stdout
        ) as writer:
            for chunk in chunks:
                writer.write(chunk)
                if progress is not None:
                    progress(chunk.shape[0])
    return {"model_file": str(model_path), "rows": int(n), "output": str(output), "seed": seed}


def evaluate_file(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    report: str | os.PathLike[str] | None = None,
    *,
    format: str | None = None,
    dropna: bool = False,
    seed: int = 0,
    n_permutations: int = 200,
    stdin: IO[bytes] | None = None,
    header: bool | None = None,
) -> dict[str, Any]:
    """Load a model, read ``data``, evaluate, and optionally write a report; return the result.

    The report path is checked (extension, folder, not an input) before any work starts.
    ``header`` says whether a CSV's first row holds names (None: decide); notes on what
    the reader guessed come first in ``result["notes"]``.
    """
    from gencli.evaluate import evaluate
    from gencli.io.data import require_finite

    check_input(data)  # first, so a bad data path is named as such
    if report is not None:
        from gencli.reports.files import report_outputs

        check_outputs([report], [model_path, data])
        check_outputs(report_outputs(report), [model_path, data])
    model = load(model_path)
    seen: dict[str, Any] = {}

    def model_columns(columns: list[str], named: bool) -> list[int]:
        seen["header"] = Table(np.empty((0, len(columns))), columns, named, str(data))
        return model.column_picks(seen["header"])

    table = read_table(
        data,
        format=format,
        dropna=dropna,
        stdin=stdin,
        header=header,
        non_numeric_hint="remove that column from the file",
        usecols=model_columns,
    )
    extra = model.extra_columns(seen["header"])
    aligned = require_finite(model.align(table), hint="pass --dropna")
    result = evaluate(model, aligned.values, seed=seed, n_permutations=n_permutations)
    result = {
        "kind": result.pop("kind"),
        "model_file": str(model_path),
        "source": table.source,
        "dropped_rows": table.dropped_rows,
        "matched_by": "name" if model.named_columns and table.named else "position",
        "ignored_columns": extra,
        **result,
        "data_notes": list(table.notes),
        "report_file": None if report is None else str(report),
    }
    if report is not None:
        from gencli.reports.files import write_report

        files = write_report(report, result, model, aligned.values)
        result["report_files"] = [str(f) for f in files]
    return result
