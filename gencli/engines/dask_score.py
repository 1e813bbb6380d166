"""The Dask engine's ``score``: every part scored on a worker by the local engine's own
chunked code (:func:`gencli.engines.local.score_chunks`), the chunks sent back packed and
handed to the client's writer in input order, or written by the workers as the part files
of a new folder published whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gencli.density.model import DensityModel
from gencli.engines.dask_jobs import Cluster, enter_cluster, in_order
from gencli.engines.local import ScoredChunk, score_chunks
from gencli.errors import DataError, OutputError
from gencli.io.parts import PartPlan
from gencli.io.streams import TableStream, shift_rows, stream_table
from gencli.io.table import Table

# ----------------------------------------------------------------------------- score


def score_part(
    model: DensityModel, plan: PartPlan, index: int, options: dict[str, Any]
) -> list[ScoredChunk]:
    """Score one part (on a worker, or here), through the local engine's chunked scoring;
    a Parquet part streams a batch at a time, as the local engine reads a file, so a
    worker's memory holds a batch rather than the part (and its caches the batch)."""
    part = plan.parts[index]
    stream = stream_table(
        part.path,
        format=part.format,
        header=plan.header,
        usecols=model.usecols(part.path),
        row_groups=part.groups,
    )
    names = Table(np.empty((0, len(stream.columns))), stream.columns, stream.named, part.path)
    picks = model.column_picks(names)
    try:
        scored = list(score_chunks(model, stream, picks, **options))
    except DataError as exc:  # rows counted from the file's first, not the part's
        raise DataError(shift_rows(str(exc), part.start)) from None
    if not options.get("dropna"):  # only --dropna writes them: half the bytes sent back
        scored = [replace(chunk, row_numbers=_NO_ROWS) for chunk in scored]
    return scored


_NO_ROWS = np.zeros(0)


def _on_worker(
    model: DensityModel, plan: PartPlan, index: int, options: dict[str, Any]
) -> PackedChunks:
    """:func:`score_part` on a Dask worker, whose process keeps freed memory for reuse
    (never changed in a process that only calls the library), packed for the trip back."""
    from gencli.engines.dask_tasks import set_up_process

    set_up_process()
    return PackedChunks.of(score_part(model, plan, index, options))


@dataclass(frozen=True)
class PackedChunks:
    """A part's scored chunks as a worker sends them back: every chunk's row numbers and
    scores in one array each, and per chunk (rows scored, rows read, skipped, underflow).
    Two arrays pickle and travel far quicker than ~150 chunk objects of two arrays each,
    and :meth:`chunks` gives the client the very same chunks (views), so its sums and its
    writes, a chunk at a time, are the local engine's."""

    row_numbers: np.ndarray
    log_density: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, chunks: list[ScoredChunk]) -> PackedChunks:
        """Pack ``chunks`` (emptying the list)."""
        counts = np.array(
            [(c.log_density.size, c.rows_read, c.skipped, c.underflow) for c in chunks],
            dtype=np.int64,
        ).reshape(-1, 4)
        with_rows = any(c.row_numbers.size for c in chunks)
        scores = np.empty(int(counts[:, 0].sum()))
        rows = np.empty(scores.size if with_rows else 0)
        at = 0
        chunks.reverse()
        while chunks:  # each chunk let go once copied: the part is held once, not twice
            chunk = chunks.pop()
            size = chunk.log_density.size
            scores[at : at + size] = chunk.log_density
            if with_rows:
                rows[at : at + size] = chunk.row_numbers
            at += size
        return cls(rows, scores, counts)

    def chunks(self) -> list[ScoredChunk]:
        """The chunks as they were scored."""
        out = []
        at = 0
        for size, read, skipped, underflow in self.counts.tolist():
            rows = self.row_numbers[at : at + size] if self.row_numbers.size else _NO_ROWS
            out.append(
                ScoredChunk(rows, self.log_density[at : at + size], read, skipped, underflow)
            )
            at += size
        return out


def scored_chunks(
    client: Any,
    model: DensityModel,
    plan: PartPlan,
    options: dict[str, Any],
    record: dict[str, Any] | None = None,
) -> Iterator[ScoredChunk]:
    """Every part's scored chunks in input order, row numbers counted from the data set's
    first row: on the workers (the model sent to each once), or here if ``client`` is None.
    ``record`` gets the cluster's share: workers, parts and the seconds from the model sent
    to the last part consumed (the scoring itself, without starting up or the final sync)."""
    started = time.perf_counter()
    if client is None:
        results: Iterator[list[ScoredChunk]] = (
            score_part(model, plan, i, options) for i in range(len(plan.parts))
        )
    else:
        if record is not None:
            record.update(_cluster_record(client, plan))
        shared = client.scatter(model, broadcast=True)
        calls = ((_on_worker, (shared, plan, i, options)) for i in range(len(plan.parts)))
        results = (packed.chunks() for packed in in_order(client, calls))
    offset = 0
    for chunks in results:
        for chunk in chunks:
            yield replace(chunk, row_numbers=chunk.row_numbers + offset)
        offset += sum(chunk.rows_read for chunk in chunks)
    if record is not None and client is not None:
        record["scoring_seconds"] = time.perf_counter() - started


def _cluster_record(client: Any, plan: PartPlan) -> dict[str, Any]:
    """What a score summary says of the cluster, before its seconds are known."""
    from gencli.engines.cluster import worker_count

    return {"name": "dask", "workers": worker_count(client), "parts": len(plan.parts)}


def many_scored(
    stack: Any,
    model: DensityModel,
    data: Any,
    engine: str,
    cluster: Cluster | None,
    say: Callable[[str], None] | None,
    format: str | None,
    header: bool | None,
    options: dict[str, Any],
) -> tuple[TableStream, Iterator[ScoredChunk], dict[str, Any]]:
    """The column names and the scored chunks of data in parts, on ``engine``, and what a
    cluster did (filled in as the chunks are consumed; empty on the local engine); a cluster
    is entered on ``stack`` (closed when the caller's writing is done)."""
    from gencli.io.parts import plan_parts

    plan = plan_parts(data, format=format, header=header)
    names = TableStream(list(plan.columns), plan.named, plan.source, iter(()))
    model.column_picks(
        Table(np.empty((0, len(plan.columns))), list(plan.columns), plan.named, plan.source)
    )  # before any cluster
    client = enter_cluster(stack, cluster, say) if engine == "dask" else None
    record: dict[str, Any] = {}
    return names, scored_chunks(client, model, plan, options, record), record


# ----------------------------------------------------------------------------- score to a folder


def is_folder_output(output: Any) -> bool:
    """``-o NAME/``: the scores as a Parquet dataset, one part file per input part."""
    import os

    return output is not None and os.fspath(output).endswith(("/", os.sep))


def check_folder_output(output: Any, output_format: str | None, precision: int | None) -> None:
    """``-o NAME/`` writes Parquet part files: other formats and --precision contradict it."""
    if output_format not in (None, "parquet"):
        raise OutputError(
            f"-o {output}: a folder of scores is Parquet part files; drop --output-format "
            f"{output_format} or give a file name"
        )
    if precision is not None:
        raise OutputError(
            "--precision applies to CSV and TSV; a folder of scores is Parquet, which keeps "
            "every bit of each number, so drop --precision"
        )


def score_part_to_file(
    model: DensityModel,
    plan: PartPlan,
    index: int,
    options: dict[str, Any],
    folder: str,
    threshold: float | None,
) -> dict[str, Any]:
    """Score part ``index`` and write its scores to ``folder/part-NNNNN.parquet`` (atomically);
    with --dropna the ``row`` column is the row in its input file, counted from 1."""
    from pathlib import Path

    from gencli.io.writers import TableWriter

    part = plan.parts[index]
    counts = {"rows": 0, "read": 0, "skipped": 0, "underflow": 0, "outliers": 0, "total": 0.0}
    dropna = bool(options.get("dropna"))
    names = ["row", "log_density"] if dropna else ["log_density"]
    flag_names = ["outlier"] if threshold is not None else []
    path = Path(folder) / f"part-{index:05d}.parquet"
    with TableWriter(path, names, flag_names, format="parquet", whole=int(dropna)) as writer:
        for chunk in score_part(model, plan, index, options):
            flags = None
            if threshold is not None:
                flags = {"outlier": chunk.log_density < threshold}
                counts["outliers"] += int(flags["outlier"].sum())
            rows = chunk.row_numbers + part.start
            columns = [rows, chunk.log_density] if dropna else [chunk.log_density]
            writer.write(np.column_stack(columns), flags)
            counts["rows"] += chunk.log_density.size
            counts["read"] += chunk.rows_read
            counts["skipped"] += chunk.skipped
            counts["underflow"] += chunk.underflow
            counts["total"] += float(np.sum(chunk.log_density))
    return counts


def score_to_folder(
    model: DensityModel,
    data: Any,
    folder: Any,
    *,
    engine: str,
    cluster: Cluster | None,
    say: Callable[[str], None] | None,
    format: str | None,
    header: bool | None,
    options: dict[str, Any],
    threshold: float | None,
    progress: Callable[[int], None] | None,
) -> tuple[PartPlan, dict[str, Any], dict[str, Any]]:
    """Every part's scores as a part file of a new folder, written by whoever scores the part
    (the workers, or this process) into a temporary folder beside it, renamed when all are
    written: the folder appears whole or not at all. Returns the plan, the counts and what
    a cluster did (as :func:`scored_chunks` records it; empty on the local engine)."""
    import contextlib
    import os
    import shutil
    import tempfile

    from gencli.errors import OutputError
    from gencli.io.parts import plan_parts

    target = os.path.abspath(os.fspath(folder).rstrip("/" + os.sep) or ".")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise OutputError(f"{folder}: folder {parent} does not exist; create it first")
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise OutputError(
            f"{folder}: already exists; the scores go to a new folder: remove it or name another"
        )
    plan = plan_parts(data, format=format, header=header)
    model.column_picks(
        Table(np.empty((0, len(plan.columns))), list(plan.columns), plan.named, plan.source)
    )
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
    total: dict[str, Any] = {}
    record: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            client = enter_cluster(stack, cluster, say) if engine == "dask" else None
            calls = (
                (score_part_to_file, (model, plan, i, options, temporary, threshold))
                for i in range(len(plan.parts))
            )
            started = time.perf_counter()
            if client is not None:
                record.update(_cluster_record(client, plan))
                shared = client.scatter(model, broadcast=True)
                calls = (
                    (score_part_to_file, (shared, plan, i, options, temporary, threshold))
                    for i in range(len(plan.parts))
                )
                results = in_order(client, calls)
            else:
                results = (function(*args) for function, args in calls)
            for counts in results:
                for key, value in counts.items():
                    total[key] = total.get(key, 0) + value
                if progress is not None:
                    progress(counts["read"])
            if record:
                record["scoring_seconds"] = time.perf_counter() - started
        if not total.get("rows"):
            from gencli.errors import DataError

            what = (
                "every row has a missing or infinite value"
                if total.get("skipped")
                else ("has no data rows")
            )
            raise DataError(f"{plan.source}: {what}; nothing to score")
        os.chmod(temporary, 0o777 & ~_umask())
        if os.path.isdir(target):
            os.rmdir(target)  # empty (checked above)
        os.rename(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return plan, total, record


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
