"""A Dask cluster to run on: an embedded LocalCluster by default, or a running scheduler.

The embedded cluster's worker processes are this process's children and end with it: the
context manager closes the client and the cluster on return, on an error and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from gencli.errors import GencliError

INSTALL = "pip install 'gencli[dask]'"
CONNECT_SECONDS = 10


class EngineError(GencliError):
    """The Dask engine cannot run: not installed, or no scheduler at the address."""


def require_dask() -> None:
    """One line naming what to install when Dask distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise EngineError(
            f"--engine dask needs Dask distributed, which is not installed; run: {INSTALL}"
        ) from None


def scheduler_address(scheduler: str | None) -> str | None:
    """The scheduler to connect to: ``scheduler``, else Dask's own setting (the
    ``DASK_SCHEDULER_ADDRESS`` variable or ``scheduler-address`` in Dask's config)."""
    if scheduler:
        return scheduler
    import dask

    found = dask.config.get("scheduler-address", None) or os.environ.get("DASK_SCHEDULER_ADDRESS")
    return str(found) if found else None


@contextlib.contextmanager
def cluster_client(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    memory_limit: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (or Dask's configured address) if there is
    one, else to an embedded LocalCluster of ``workers`` single-threaded worker processes
    (default one per usable core) with ``memory_limit`` each ('auto': the machine's memory
    shared). ``say`` is told where the work runs and where the embedded dashboard is."""
    require_dask()
    import dask
    from distributed import Client, LocalCluster

    address = scheduler_address(scheduler)
    if address is not None and scheduler is None and (workers or memory_limit):
        flag = "--workers" if workers else "--memory-limit"
        raise EngineError(
            f"{flag} sizes an embedded cluster, but Dask is set to use the scheduler at "
            f"{address} (DASK_SCHEDULER_ADDRESS or Dask's config); unset it or drop {flag}"
        )
    with contextlib.ExitStack() as stack:
        link = None
        if address is not None:
            client = stack.enter_context(_connect(Client, address))
            _wait_for_a_worker(client, address)
            where = f"cluster at {address}"
        else:
            from gencli.fitting.selection import usable_cores

            dashboard = ":0" if _has_bokeh() else None
            try:
                with dask.config.set(quiet_settings()):
                    cluster = LocalCluster(
                        n_workers=workers or usable_cores(),
                        threads_per_worker=1,
                        processes=True,
                        memory_limit=memory_limit or "auto",
                        dashboard_address=dashboard,
                        silence_logs=logging.CRITICAL,  # a failed task is reported once, by us
                    )
            except (ValueError, TypeError) as exc:
                raise EngineError(
                    f"cannot start a local Dask cluster ({exc}); check --memory-limit"
                ) from None
            stack.enter_context(cluster)  # closed last, even if the client fails
            client = stack.enter_context(Client(cluster))
            where = "embedded cluster"
            link = client.dashboard_link if dashboard else None
        if say is not None:
            count = worker_count(client)
            say(
                f"dask: {where}, {count} worker{'s' if count != 1 else ''}"
                + (f", dashboard {link}" if link else "")
            )
        from distributed import KilledWorker

        try:
            yield client
        except KilledWorker as exc:
            raise EngineError(
                f"Dask workers died while running a task ({' '.join(str(exc).split())[:120]}); "
                "they may have run out of memory: give them more with --memory-limit, or cut "
                "the data into smaller part files"
            ) from None


#: Dask's housekeeping that an embedded cluster turns down, from Dask's defaults: the workers'
#: statistical profiler (a stack sample every 10 ms), the event-loop health check (every
#: 20 ms in each process), the system and memory monitors, and work stealing (tasks are put
#: where their rows are kept). Idle, a 2-worker cluster took 19% of a core with Dask's
#: defaults and 2% with these; on 2 cores that share was taken from the workers.
QUIET = {
    "distributed.worker.profile.enabled": (True, False),
    "distributed.admin.tick.interval": ("20ms", "1s"),
    "distributed.admin.system-monitor.interval": ("500ms", "2s"),
    "distributed.worker.memory.monitor-interval": ("100ms", "500ms"),
    "distributed.scheduler.work-stealing": (True, False),
}


def quiet_settings() -> dict[str, Any]:
    """:data:`QUIET`'s values for the keys the user has left at Dask's default."""
    import dask

    return {key: ours for key, (default, ours) in QUIET.items() if dask.config.get(key) == default}


def _wait_for_a_worker(client: Any, address: str) -> None:
    """A scheduler with no worker would wait for ever: say so instead."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except TimeoutError:
        raise EngineError(
            f"the Dask scheduler at {address} has no workers (none joined within "
            f"{CONNECT_SECONDS} s); start some with 'dask worker {address}'"
        ) from None


def _connect(client_class: Any, address: str) -> Any:
    """A client connected to ``address`` (a context manager), or the one-line refusal."""
    try:
        return client_class(address, timeout=f"{CONNECT_SECONDS}s")
    except (OSError, TimeoutError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise EngineError(
            f"cannot reach the Dask scheduler at {address} ({detail}); check the address, "
            "start one with 'dask scheduler', or leave out --scheduler for an embedded cluster"
        ) from None


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def workers_of(client: Any) -> dict[str, Any]:
    """Every worker's record (scheduler_info lists only five unless asked for all)."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed lists them all and takes no argument
        info = client.scheduler_info()
    return dict(info.get("workers", {}))


def worker_memory(client: Any) -> int:
    """The smallest memory limit of the cluster's workers, in bytes (0: no limit)."""
    limits = [w.get("memory_limit") or 0 for w in workers_of(client).values()]
    return int(min(limits)) if limits else 0


def worker_count(client: Any) -> int:
    return len(client.nthreads())
