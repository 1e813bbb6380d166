"""The embedded cluster turns Dask's housekeeping down, but never over the user's settings."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

import dask

from gencli.engines.cluster import QUIET, cluster_client, quiet_settings


def test_only_keys_left_at_dasks_default_are_changed() -> None:
    assert set(quiet_settings()) == set(QUIET)
    with dask.config.set({"distributed.admin.tick.interval": "50ms"}):
        assert "distributed.admin.tick.interval" not in quiet_settings()
        assert quiet_settings()["distributed.worker.profile.enabled"] is False


def test_the_worker_processes_and_the_scheduler_run_with_them() -> None:
    user = {"distributed.admin.tick.interval": "50ms"}
    with dask.config.set(user), cluster_client(workers=1) as client:
        seen = client.run(
            lambda: (
                dask.config.get("distributed.worker.profile.enabled"),
                dask.config.get("distributed.admin.tick.interval"),
                dask.config.get("distributed.worker.memory.monitor-interval"),
            )
        )
        extensions = client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.extensions))
    assert list(seen.values()) == [(False, "50ms", "500ms")]  # the user's tick is kept
    assert "stealing" not in extensions
