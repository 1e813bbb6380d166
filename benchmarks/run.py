"""Measure gencli against the plain scikit-learn scripts it replaces, target by target.

Usage: python benchmarks/run.py [--quick] [--repeat N] [--json PATH] [--only NAME ...] [--long]

Both sides run as real subprocesses (interpreter start-up, imports and file I/O count),
alternating, N times each; the table gives medians, the ratio, the issue's target, an
accuracy check and peak memory. The exit status is 0 whatever was measured: this is a
report, not a test. See docs/benchmarks.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench_dask import bench_dask_out_of_core, bench_dask_overhead, bench_dask_scaling
from bench_gmm_memory import bench_gmm_memory
from bench_harness import FAILED, FULL, INFO, MET, NOT_AVAILABLE, QUICK, Bench, Check, summary_table
from bench_kde import bench_kde
from bench_kde_dims import bench_kde_dims
from bench_paths import (
    bench_auto,
    bench_default,
    bench_gmm_fit,
    bench_help,
    bench_read,
    bench_streaming,
)

HERE = Path(__file__).resolve().parent

PATHS: dict[str, tuple[str, Callable[[Bench], None]]] = {
    "help": ("start-up: --help and --version", bench_help),
    "gmm": ("fit a Gaussian mixture end to end", bench_gmm_fit),
    "gmm1m": ("fit a mixture to a million rows: time and peak memory", bench_gmm_memory),
    "default": ("the default fit (auto) against the previous default (gmm)", bench_default),
    "kde2": ("score with a KDE, 2-D", lambda bench: bench_kde(bench, 2)),
    "kde1": ("score with a KDE, 1-D", lambda bench: bench_kde(bench, 1)),
    "kdedims": ("score with a KDE in 1..10 dimensions against every tool", bench_kde_dims),
    "auto": ("choose K in 1..10 by BIC", bench_auto),
    "stream": ("score and sample in constant memory", bench_streaming),
    "read": ("read a CSV", bench_read),
    "dask_overhead": ("the Dask engine against the local one, 1M rows", bench_dask_overhead),
    "dask_scaling": ("the Dask engine, 1 -> 2 workers", bench_dask_scaling),
    "dask_ooc": ("the Dask engine out of core, 20M rows", bench_dask_out_of_core),
}

# Run only when named by --only or asked for with --long: they take an hour or more.
LONG = ("kdedims", "gmm1m", "dask_overhead", "dask_scaling", "dask_ooc")


def machine() -> dict[str, Any]:
    """What the numbers were measured on, for the report."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), cpu)
    packages = ["gencli", "numpy", "pandas", "scikit-learn", "scipy", "pyarrow", "threadpoolctl"]
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, one run each")
    parser.add_argument("--repeat", type=int, help="runs per command (default 3, quick 1)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--only", nargs="+", choices=list(PATHS), help="run only these paths")
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"also run the long paths ({', '.join(LONG)}: an hour or more at full size)",
    )
    parser.add_argument(
        "--data", type=Path, default=HERE / ".data", help="cache of generated data sets"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def compile_gencli() -> None:
    """Write gencli's bytecode as ``pip install`` does, so that no measured run compiles it.

    An editable install has none, and where PYTHONDONTWRITEBYTECODE is set (as on this
    project's machines) Python would compile every gencli module again in every run:
    about 20 ms a command (measured), which a user's installed copy never pays.
    """
    import compileall

    import gencli

    compileall.compile_dir(Path(gencli.__file__).parent, quiet=1)


def main(argv: list[str]) -> int:
    """Run every path (or those asked for), then print the summary table."""
    args = parse_args(argv)
    compile_gencli()
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    info = machine()
    load_start = load_average()
    versions: dict[str, str] = info["packages"]
    print(
        f"gencli benchmarks ({'quick' if args.quick else 'full'}, {repeat} run(s) per command)\n"
        f"machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"load average {load_start} (other work on the machine skews timings)\n"
        "packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="gencli-bench-") as work:
        bench = Bench(sizes, repeat, args.data, Path(work))
        chosen = args.only or [name for name in PATHS if args.long or name not in LONG]
        for name in [name for name in PATHS if name in chosen]:
            title, run = PATHS[name]
            print(f"\n== {title} ==", flush=True)
            start = time.perf_counter()
            try:
                run(bench)
            except Exception as exc:  # a broken path must not hide the others' results
                traceback.print_exc()
                bench.check(Check(name, "—", "—", "—", "—", repr(exc)[:160], "—", FAILED))
            print(f"  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    counted = [check for check in bench.checks if check.status != INFO]
    met = sum(check.status == MET for check in counted)
    missing = sum(check.status == NOT_AVAILABLE for check in counted)
    failed = sum(check.status == FAILED for check in counted)
    print("\n" + summary_table(bench.checks))
    summary = f"targets met: {met} of {len(counted)}"
    summary += f" ({missing} not available, {failed} failed)" if missing or failed else ""
    print(f"\n{summary}\nload average at the end: {load_average()}", flush=True)
    if args.json:
        payload = {
            "machine": info,
            "load_average": {"start": load_start, "end": load_average()},
            "quick": args.quick,
            "repeat": repeat,
            "sizes": asdict(sizes),
            "measurements": bench.record,
            "checks": [asdict(check) for check in bench.checks],
            "summary": summary,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
