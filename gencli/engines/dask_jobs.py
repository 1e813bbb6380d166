"""The Dask engine's side of ``fit``, ``score`` and ``sample``: the same jobs as the local
engine's (:mod:`gencli.jobs`), with the rows read, scored and drawn on a cluster's workers.

Scores come back part by part in input order and sampled blocks in block order, with a
bounded number of tasks in flight, so the client's memory stays flat and the file it
writes is the same as the local engine's. Every number a worker hands back went through
the local engine's own checks (:func:`gencli.engines.local.score_chunks`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gencli.density.model import DensityModel, sample_entropy
from gencli.engines.local import ScoredChunk, score_chunks
from gencli.errors import DataError
from gencli.io.parts import PartPlan
from gencli.io.streams import TableStream, shift_rows
from gencli.io.table import Table


@dataclass(frozen=True)
class Cluster:
    """Where to run: a scheduler address (None: an embedded LocalCluster of ``workers``
    worker processes with ``memory_limit`` each)."""

    scheduler: str | None = None
    workers: int | None = None
    memory_limit: str | None = None


def in_order(
    client: Any, calls: Iterator[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> Iterator[Any]:
    """Results of ``calls`` in order, with at most two tasks per worker in flight."""
    from gencli.engines.cluster import worker_count

    window = max(2, 2 * worker_count(client))
    pending: collections.deque[Any] = collections.deque()
    for function, args in calls:
        pending.append(client.submit(function, *args, pure=False))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# ----------------------------------------------------------------------------- score


def score_part(
    model: DensityModel, plan: PartPlan, index: int, options: dict[str, Any]
) -> list[ScoredChunk]:
    """Score one part on a worker, through the local engine's chunked scoring."""
    from gencli.io.streams import stream_table

    part = plan.parts[index]
    if part.groups is None:
        stream = stream_table(
            part.path, format=part.format, header=plan.header, usecols=model.usecols(part.path)
        )
    else:
        from gencli.io.parts import read_groups
        from gencli.io.streams import CHUNK_ROWS
        from gencli.io.table import block_rows

        wanted = tuple(model.columns) if model.named_columns else ()
        values, columns = read_groups(replace(plan, columns=wanted), part)
        step = block_rows(CHUNK_ROWS, len(columns))  # the local engine's chunks
        chunks = (values[i : i + step] for i in range(0, len(values), step))
        stream = TableStream(columns, True, part.path, chunks)
    names = Table(np.empty((0, len(stream.columns))), stream.columns, stream.named, part.path)
    picks = model.column_picks(names)
    try:
        return list(score_chunks(model, stream, picks, **options))
    except DataError as exc:  # rows counted from the file's first, not the part's
        raise DataError(shift_rows(str(exc), part.start)) from None


def scored_chunks(
    client: Any, model: DensityModel, plan: PartPlan, options: dict[str, Any]
) -> Iterator[ScoredChunk]:
    """Every part's scored chunks in input order, row numbers counted from the data set's
    first row: on the workers (the model sent to each once), or here if ``client`` is None."""
    if client is None:
        results: Iterator[list[ScoredChunk]] = (
            score_part(model, plan, i, options) for i in range(len(plan.parts))
        )
    else:
        shared = client.scatter(model, broadcast=True)
        calls = ((score_part, (shared, plan, i, options)) for i in range(len(plan.parts)))
        results = in_order(client, calls)
    offset = 0
    for chunks in results:
        for chunk in chunks:
            yield replace(chunk, row_numbers=chunk.row_numbers + offset)
        offset += sum(chunk.rows_read for chunk in chunks)


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
) -> tuple[TableStream, Iterator[ScoredChunk]]:
    """The column names and the scored chunks of data in parts, on ``engine``; a cluster
    is entered on ``stack`` (closed when the caller's writing is done)."""
    from gencli.io.parts import plan_parts

    plan = plan_parts(data, format=format, header=header)
    names = TableStream(list(plan.columns), plan.named, plan.source, iter(()))
    model.column_picks(
        Table(np.empty((0, len(plan.columns))), list(plan.columns), plan.named, plan.source)
    )  # before any cluster
    client = enter_cluster(stack, cluster, say) if engine == "dask" else None
    return names, scored_chunks(client, model, plan, options)


def enter_cluster(stack: Any, cluster: Cluster | None, say: Callable[[str], None] | None) -> Any:
    """A client to ``cluster`` (default: an embedded one), closed with ``stack``."""
    from gencli.engines.cluster import cluster_client

    cluster = cluster or Cluster()
    return stack.enter_context(
        cluster_client(
            cluster.scheduler,
            workers=cluster.workers,
            memory_limit=cluster.memory_limit,
            say=say,
        )
    )


# ----------------------------------------------------------------------------- sample

BLOCKS_PER_TASK = 16  # 1M rows a task at up to 64 columns


def draw_blocks(model: DensityModel, n: int, first: int, count: int, entropy: int) -> np.ndarray:
    """Blocks first..first+count-1 of an ``n``-row sample, drawn on a worker."""
    rows = model.block_rows()
    out = []
    for index in range(first, first + count):
        start = index * rows
        if start >= n:
            break
        out.append(model.draw_block(index, min(rows, n - start), entropy))
    return np.vstack(out)


def sampled_chunks(
    client: Any, model: DensityModel, n: int, seed: int | None
) -> Iterator[np.ndarray]:
    """``n`` rows from the model, drawn on the workers in the local engine's blocks (the same
    rows for a seed, whatever the number of workers)."""
    from gencli.density.model import check_sample_count
    from gencli.errors import OutputError

    n = check_sample_count(n)
    entropy = sample_entropy(seed)
    shared = client.scatter(model, broadcast=True)
    blocks = -(-n // model.block_rows())
    calls = (
        (draw_blocks, (shared, n, first, BLOCKS_PER_TASK, entropy))
        for first in range(0, blocks, BLOCKS_PER_TASK)
    )
    for chunk in in_order(client, calls):
        if not np.all(np.isfinite(chunk)):  # as the local engine checks
            raise OutputError("the model produced non-finite samples; refit it")
        yield chunk


# ----------------------------------------------------------------------------- fit


def fit_job(
    data: Any,
    output: Any,
    model: str,
    cluster: Cluster | None,
    say: Callable[[str], None] | None,
    *,
    format: str | None,
    columns: Any,
    dropna: bool,
    report: Any,
    header: bool | None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`gencli.jobs.fit_file` on a cluster: plan the parts, fit, save, and the record."""
    import os
    import time

    from gencli.engines.cluster import cluster_client
    from gencli.engines.dask_fit import fit_on_cluster
    from gencli.errors import OutputError
    from gencli.fitting.records import fit_record
    from gencli.io.atomic import check_outputs
    from gencli.io.parts import expand, plan_parts

    if report is not None:
        raise OutputError(
            "--report is not made by --engine dask yet; fit, then describe the model with "
            "gencli inspect (or fit a sample of the rows with the local engine and --report)"
        )
    if os.fspath(output) == "-":
        raise OutputError(
            "-o -: a model file does not go to stdout; give a file name such as -o model.pkl"
        )
    started = time.perf_counter()
    check_outputs([(output, "the model file")], expand(data))
    plan = plan_parts(data, format=format, columns=columns, header=header, dropna=dropna)
    for key in ("jobs", "on_candidate", "background_import", "overwrite_data"):
        options.pop(key, None)
    cluster = cluster or Cluster()
    note = say or (lambda _line: None)
    with cluster_client(
        cluster.scheduler, workers=cluster.workers, memory_limit=cluster.memory_limit, say=note
    ) as client:
        fitted = fit_on_cluster(client, plan, model, say=note, **options)
    meta = fitted.metadata
    summary = meta.pop("data_summary", None) or []
    dropped = int(meta.pop("dropped_rows", 0))
    fitted.save(output)
    record = fit_record(
        fitted,
        plan.source,
        int(meta["rows"]),
        dropped,
        output,
        time.perf_counter() - started,
        summary,
    )
    record["notes"] = list(plan.notes)
    record["engine"] = meta.get("engine")
    return record
