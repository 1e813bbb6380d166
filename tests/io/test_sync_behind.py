"""An output file's bytes go to disk while it is written (so the sync before the rename waits
for the tail only), and the thread that does it never outlives the file."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from gencli.errors import OutputError
from gencli.io import atomic


def _syncing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gencli-sync-behind"]


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(file size, at) of each sync behind the writer; quick checks, and a file closed only
    once the thread is gone (its descriptor must not outlive the file)."""
    seen: list[tuple[int, int]] = []
    real = atomic._data_sync

    def recorded(fd: int) -> None:
        seen.append((os.fstat(fd).st_size, len(seen)))
        real(fd)

    class Checked(io.BufferedWriter):
        def close(self) -> None:
            assert not _syncing_threads(), "the file was closed under its sync thread"
            super().close()

    monkeypatch.setattr(atomic, "_data_sync", recorded)
    monkeypatch.setattr(atomic, "SYNC_EVERY_SECONDS", 0.005)
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="wb": Checked(io.FileIO(fd, "wb")))
    return seen


def test_a_growing_file_is_synced_while_it_is_written(
    tmp_path: Path, syncs: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "SYNC_BYTES", 1)  # any growth: a block seen half written too
    block = bytes(range(256)) * 1024
    with atomic.atomic_write(tmp_path / "out.bin") as handle:
        for _ in range(6):
            handle.write(block)
            handle.flush()
            deadline = time.monotonic() + 5
            size = handle.tell()
            while not any(at_size == size for at_size, _ in syncs) and time.monotonic() < deadline:
                time.sleep(0.005)
    sizes = [size for size, _ in syncs]
    assert sizes == sorted(sizes) and len(sizes) >= 6  # each block synced behind the writer
    assert sizes[-1] == 6 * len(block)
    assert (tmp_path / "out.bin").read_bytes() == block * 6
    assert not _syncing_threads()


def test_a_small_file_is_never_synced_behind(
    tmp_path: Path, syncs: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "SYNC_BYTES", 1 << 16)
    with atomic.atomic_write(tmp_path / "out.csv") as handle:
        handle.write(b"x\n" * 100)
        handle.flush()
        time.sleep(0.05)
    assert syncs == [] and (tmp_path / "out.csv").read_bytes() == b"x\n" * 100
    assert not _syncing_threads()


def test_a_failed_write_stops_the_thread_and_leaves_nothing(
    tmp_path: Path, syncs: list[tuple[int, int]]
) -> None:
    (tmp_path / "out.bin").write_bytes(b"old")
    with pytest.raises(OutputError), atomic.atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"\0" * (1 << 18))
        handle.flush()
        raise OutputError("the writer failed halfway")
    assert not _syncing_threads()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == b"old"
