"""Rerun every `$ command` in README.md and paste what it prints under it.

Run from the repository root: ``python docs/update_readme.py``. The commands run in order
in a scratch folder holding a copy of sample_data/, as tests/test_readme.py runs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def run(command: str, folder: Path) -> str:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["bash", "-c", command], cwd=folder, env=env, capture_output=True, timeout=600
    )
    text = (result.stdout + result.stderr).decode()
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def update(text: str, folder: Path) -> str:
    def block(match: re.Match[str]) -> str:
        body = match.group(1)
        if not body.startswith("$ "):
            return match.group(0)
        parts = []
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            command = chunk.partition("\n")[0]
            output = run(command, folder)
            parts.append(f"$ {command}\n{output}\n" if output else f"$ {command}\n")
        return "```\n" + "\n".join(parts) + "```"

    return re.sub(r"^```\n(.*?)^```", block, text, flags=re.S | re.M)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(REPO / "sample_data", Path(scratch) / "sample_data")
        README.write_text(update(README.read_text(), Path(scratch)))
    print(f"updated {README}")
