"""How much memory a command may use, so that resource bombs are refused before they start.

A small file can declare a huge table (a Parquet file of 300M zeros compresses to 1.4 MB, an
NPY header can claim any shape) and a modest table can ask for a huge model (a full
covariance over 10,000 columns). Code that is about to allocate in proportion to a declared
or derived size asks :func:`check_memory` first, which refuses with one line naming the
limit that was hit.

The budget is the smallest of: the memory the system says is available, the cgroup's limit
less what the cgroup already uses, and the address-space limit (``ulimit -v``) less what
this process already maps. ``GENCLI_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix)
overrides it, for users who want a tighter cap and for tests.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gencli.errors import ResourceError

ENV_VARIABLE = "GENCLI_MEMORY_LIMIT"
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``'512M'`` -> 536870912; plain numbers are bytes. ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.I)
    if match is None:
        raise ValueError(f"'{text}' is not a size such as 512M or 2G")
    return int(float(match.group(1)) * _SUFFIXES[match.group(2).upper()])


def format_size(n: float) -> str:
    """Bytes as a short human figure: 1.5 GB, 300 MB, 12 KB."""
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, flags=re.M)
    return int(match.group(1)) * 1024 if match else None


def _cgroup_available() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        return max(0, int(limit) - int(used))
    except (OSError, ValueError):
        return None


def _address_space_available() -> int | None:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        mapped = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(0, soft - mapped)


def memory_budget() -> tuple[int, str]:
    """(bytes a command may still allocate, what set that figure)."""
    override = os.environ.get(ENV_VARIABLE)
    if override:
        try:
            return parse_size(override), f"{ENV_VARIABLE}={override}"
        except ValueError:
            pass  # a bad setting is ignored rather than breaking every command
    candidates = [
        (_meminfo_available(), "available memory"),
        (_cgroup_available(), "the cgroup's memory limit"),
        (_address_space_available(), "the address-space limit (ulimit -v)"),
    ]
    known = [(value, what) for value, what in candidates if value is not None]
    if not known:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            total = 1 << 34
        return int(total), "physical memory"
    value, what = min(known)
    return int(value), what


def check_memory(need: float, what: str, hint: str) -> None:
    """Refuse, before allocating, work whose memory ``need`` (bytes) exceeds the budget.

    ``what`` says what would need it ("reading data.parquet (300,000,000 rows x 1 column)"),
    ``hint`` what to do instead.
    """
    budget, source = memory_budget()
    if need > budget:
        raise ResourceError(
            f"{what} would need about {format_size(need)} of memory, more than the "
            f"{format_size(budget)} that {source} allows; {hint}"
        )
