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
    (default one per core) with ``memory_limit`` each ('auto': the machine's memory shared).
    ``say`` is told where the dashboard is."""
    require_dask()
    from distributed import Client, LocalCluster

    address = scheduler_address(scheduler)
    cluster = None
    if address is not None:
        client = _connect(Client, address)
    else:
        n = workers or os.cpu_count() or 1
        dashboard = ":0" if _has_bokeh() else None
        try:
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit or "auto",
                dashboard_address=dashboard,
                silence_logs=logging.ERROR,
            )
        except (ValueError, TypeError) as exc:
            raise EngineError(
                f"cannot start a local Dask cluster ({exc}); check --memory-limit"
            ) from None
        client = Client(cluster)
    try:
        if say is not None:
            where = "embedded cluster" if cluster is not None else f"cluster at {address}"
            count = len(client.scheduler_info().get("workers", {}))
            # A remote scheduler's dashboard link is a guess from the config (it is printed
            # even for `dask scheduler --no-dashboard`); the embedded one's is known.
            link = client.dashboard_link if cluster is not None and dashboard else None
            say(
                f"dask: {where}, {count} worker{'s' if count != 1 else ''}"
                + (f", dashboard {link}" if link else "")
            )
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _connect(client_class: Any, address: str) -> Any:
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


def worker_memory(client: Any) -> int:
    """The smallest memory limit of the cluster's workers, in bytes (0: no limit)."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    return int(min(limits)) if limits else 0


def worker_count(client: Any) -> int:
    return len(client.scheduler_info()["workers"])
