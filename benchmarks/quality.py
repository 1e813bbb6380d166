"""How good a density does gencli's default fit? Held-out log-likelihood on real data sets.

Usage: python benchmarks/quality.py [--only NAME ...] [--seeds N] [--json PATH]
       [--markdown PATH] [--gencli-args "--model kde --bandwidth cv" ...] [--selfcheck]

For every real data set that loads offline (scikit-learn's and statsmodels' bundled ones,
see quality_data.py), a seeded 80/20 split of the rows; every method fits on the 80% and is
scored by the mean log-density per held-out row, natural log, in the data's own units, with
its standard error. gencli's default (``gencli.fit(train, seed=0)``, whatever the default is
at run time) is judged against the best plain alternative: win, tie (below by at most one
standard error of the paired per-row difference) or loss. See docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from quality_data import Dataset, load_all, split
from quality_methods import Entry, methods
from quality_report import Outcome, render, summary_line
from quality_stats import Score, Verdict, judge

BEGIN, END = "<!-- quality.py results: begin -->", "<!-- quality.py results: end -->"


def measure(entry: Entry, data: Dataset, seed: int) -> Score:
    """Fit one method on one split and score the test rows; a failure is recorded, not raised."""
    train, test = split(data.frame, seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = np.asarray(entry.run(train, test), dtype=float).reshape(-1)
            if values.shape != (len(test),):
                raise ValueError(f"{values.shape[0]} scores for {len(test)} test rows")
            error = ""
        except Exception as exc:  # any failure is a result for this method, never fatal
            values, error = None, f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    seconds = time.perf_counter() - start
    messages = sorted({f"{w.category.__name__}: {w.message}"[:400] for w in caught})
    return Score(seed, values, seconds, error, messages)


def run_dataset(data: Dataset, entries: list[Entry], seeds: int) -> Outcome:
    """Every method on every seed's split. On a data set with whole-number columns the plain
    alternatives gencli is judged against are the dequantized ones (box probabilities, as
    gencli scores them); elsewhere those are the plain methods themselves and are not rerun."""
    discrete = data.kind == "discrete"
    scores: dict[str, list[Score]] = {}
    for e in entries:
        if e.dequantizes and not discrete:
            scores[e.name] = scores[e.dequantizes]
        else:
            scores[e.name] = [measure(e, data, seed) for seed in range(seeds)]
    plain = {e.name: scores[e.name] for e in entries if e.plain and bool(e.dequantizes) == discrete}
    verdicts = {e.name: judge(scores[e.name], plain) for e in entries if not e.plain}
    n_train = len(split(data.frame, 0)[0])
    return Outcome(data, n_train, scores, verdicts)


def warm_up(entries: list[Entry]) -> None:
    """Run every method once on a small table, untimed, so no timing pays for imports."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    for entry in entries:
        measure(entry, Dataset("warm-up", "", frame, ""), 0)


def progress(outcome: Outcome, entries: list[Entry], seconds: float) -> str:
    mine = outcome.summary("gencli default")
    v = outcome.verdict
    best = f"{v.best_mean:.2f} {v.best}" if v.best else "none"
    return (
        f"{outcome.data.name:>18} ({outcome.n_train}, {outcome.data.frame.shape[1]}): "
        f"default {mine.mean:.2f}  best alt {best}  -> {v.verdict}  [{seconds:.1f} s]"
    )


def gencli_commit() -> str:
    """Which gencli is measured: the last commit that changed gencli/ in its checkout."""
    import gencli

    root = Path(gencli.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h (%cs)", "--", "gencli")
        modified = git("status", "--porcelain", "--", "gencli")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (", with uncommitted changes in gencli/" if modified else "")


def environment() -> dict[str, Any]:
    versions = {}
    for name in ["gencli", "numpy", "scipy", "scikit-learn", "statsmodels", "pandas"]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "commit": gencli_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cores": len(os.sched_getaffinity(0)),
        "packages": versions,
    }


def finite_or_none(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return value


def verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "verdict": v.verdict,
        "best_alternative": v.best,
        "best_mean": finite_or_none(v.best_mean),
        "difference": finite_or_none(v.difference),
        "paired_se": finite_or_none(v.paired_se),
        "worst_row": v.worst_row,
    }


def as_json(outcomes: list[Outcome], entries: list[Entry], meta: dict[str, Any]) -> dict[str, Any]:
    """Every number: per data set, per method, per seed, down to each test row's score."""
    sets = []
    for o in outcomes:
        per_method = {}
        for e in entries:
            s = o.summary(e.name)
            per_method[e.name] = {
                "plain_alternative": e.plain,
                "mean": finite_or_none(s.mean),
                "se": finite_or_none(s.se),
                "seconds": s.seconds,
                "status": s.status,
                "seeds": [
                    {
                        "seed": sc.seed,
                        "mean": finite_or_none(sc.mean),
                        "se": finite_or_none(sc.se),
                        "seconds": sc.seconds,
                        "error": sc.error,
                        "bad_rows": sc.bad_rows,
                        "warnings": sc.warnings,
                        "rows": None
                        if sc.values is None
                        else [finite_or_none(float(x)) for x in sc.values],
                    }
                    for sc in o.scores[e.name]
                ],
            }
        sets.append(
            {
                "name": o.data.name,
                "source": o.data.source,
                "rows": len(o.data.frame),
                "n_train": o.n_train,
                "columns": list(o.data.frame.columns),
                "left_out": o.data.dropped,
                "kind": o.data.kind,
                "discrete_columns": o.data.discrete,
                "verdict": verdict_json(o.verdict),
                "verdicts_of_every_gencli_column": {
                    name: verdict_json(v) for name, v in o.verdicts.items()
                },
                "methods": per_method,
            }
        )
    return {**meta, "datasets": sets, "summary": summary_line(outcomes)}


def write_markdown(path: Path, text: str) -> None:
    """Write the tables; in a file with BEGIN/END markers (docs/quality.md), only between them."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old and old.index(BEGIN) < old.index(END):
        head, rest = old.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}"
    path.write_text(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these data sets")
    parser.add_argument("--seeds", type=int, default=1, help="splits with seeds 0..N-1 (mean)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument(
        "--gencli-args",
        action="append",
        metavar="ARGS",
        help='an extra gencli column with these fit options, e.g. "--model kde --bandwidth cv"'
        " (repeatable)",
    )
    parser.add_argument("--selfcheck", action="store_true", help="run the reference checks only")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread per process: the machine is shared
    if args.selfcheck:
        from quality_selfcheck import selfcheck

        return selfcheck()
    entries = methods(args.gencli_args)
    started = time.perf_counter()
    warm_up(entries)
    datasets, skipped = load_all(args.only)
    meta = environment()
    print(f"gencli at {meta['commit']}; {len(datasets)} data sets, seeds 0..{args.seeds - 1}")
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    outcomes = []
    for data in datasets:
        t = time.perf_counter()
        outcomes.append(run_dataset(data, entries, args.seeds))
        print(progress(outcomes[-1], entries, time.perf_counter() - t), flush=True)
    elapsed = time.perf_counter() - started
    meta.update(seeds=args.seeds, seconds=elapsed, skipped=skipped)
    text = render(outcomes, entries, skipped)
    print()
    print(text)
    print(f"whole run: {elapsed:.0f} s")
    if args.markdown:
        header = (
            f"Run on {meta['date']} with gencli at `{meta['commit']}`, seeds 0..{args.seeds - 1}"
            f" (`{shlex.join(['python', 'benchmarks/quality.py', *sys.argv[1:]])}`); whole run "
            f"{elapsed:.0f} s on {meta['cores']} cores; Python {meta['python']}, "
            + ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
            + ".\n\n"
        )
        write_markdown(args.markdown, header + text)
    if args.json:
        args.json.write_text(json.dumps(as_json(outcomes, entries, meta), indent=1) + "\n")
    print(summary_line(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
