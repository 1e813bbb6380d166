"""The Dask engine's side of ``fit`` and ``sample`` (``score`` is
:mod:`gencli.engines.dask_score`): the same jobs as the local engine's (:mod:`gencli.jobs`),
with the rows read, fitted and drawn on a cluster's workers, and what every cluster job
shares (the cluster to use, entering it, results in order with a bounded number of tasks in
flight, so the client's memory stays flat). Sampled blocks come back in block order: the
file the client writes is the same as the local engine's.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gencli.density.model import DensityModel
from gencli.density.modelparts import sample_entropy
from gencli.errors import FitError, OutputError

#: Rows a report's figures show when the fit ran on a cluster (a seeded uniform sample): the
#: figures draw at most a few thousand points, and the rows travel to the client.
REPORT_ROWS = 20_000


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
    from gencli.density.modelparts import check_sample_count

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
    """:func:`gencli.jobs.fit_file` on a cluster, once it has checked the inputs and outputs:
    plan the parts, fit, save, and the record."""
    import contextlib

    from gencli.engines.dask_fit import fit_on_cluster
    from gencli.fitting.records import fit_record
    from gencli.io.parts import plan_parts

    started = time.perf_counter()
    for name in ("bounds", "weights", "missing"):  # refused before a cluster starts
        if options.get(name) not in (None, "", (), []):
            raise FitError(
                f"--{name} is not available on --engine dask yet; drop it or use --engine local"
            )
    plan = plan_parts(data, format=format, columns=columns, header=header, dropna=dropna)
    for key in ("jobs", "on_candidate", "background_import", "overwrite_data"):
        options.pop(key, None)
    note = say or (lambda _line: None)
    with contextlib.ExitStack() as stack:
        client = enter_cluster(stack, cluster, note)
        rows = REPORT_ROWS if report is not None else 0
        fitted = fit_on_cluster(client, plan, model, say=note, report_rows=rows, **options)
    meta = fitted.metadata
    summary = meta.pop("data_summary", None) or []
    dropped = int(meta.pop("dropped_rows", 0))
    shown = meta.pop("report_sample", None)
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
    if report is not None:
        from gencli.reports.files import write_report

        record["figure_rows"] = {"shown": len(shown), "rows": int(meta["rows"])}
        files = write_report(report, record, fitted, shown)
        record["report_file"] = str(report)
        record["report_files"] = [str(f) for f in files]
    return record
