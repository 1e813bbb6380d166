"""A temporary file whose writer's cleanup was never registered (a stop signal between the
file's creation and its context manager reaching the exit stack) is still removed before
the process ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gencli.io import atomic


def test_a_temporary_file_whose_cleanup_was_never_registered_is_removed(tmp_path: Path) -> None:
    manager = atomic.atomic_write(tmp_path / "out.csv")
    handle = manager.__enter__()  # entered, and then never exited: the window in question
    handle.write(b"half")
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0] in atomic.live_temporaries
    atomic.remove_live_temporaries()
    assert not list(tmp_path.iterdir()) and not atomic.live_temporaries
    handle.close()


def test_the_command_line_removes_them_on_its_way_out(tmp_path: Path) -> None:
    """exit_now, every command's last step, removes what is left (and nothing else)."""
    probe = (
        "from gencli.io import atomic\n"
        "from gencli.cli.boundary import exit_now\n"
        "atomic.atomic_write('kept.csv').__enter__()\n"
        "open('other.tmp', 'w').close()\n"
        "exit_now(130)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=False)
    assert done.returncode == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tmp"]
