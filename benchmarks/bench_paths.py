"""The paths the issue sets targets for, except KDE scoring (bench_kde.py).

Each ``bench_*`` function makes or reuses its data, measures gencli and its baseline side by
side through ``Bench``, and records one ``Check`` per target.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bench_data import Mixture, ensure
from bench_harness import (
    FAILED,
    INFO,
    MET,
    NOT_MET,
    PYTHON,
    Bench,
    Check,
    Side,
    baseline,
    broken,
    count_lines,
    gencli,
    measure,
    millions,
    ratio_text,
    seconds,
    side_by_side,
    side_rows,
    warm,
)

HERE = Path(__file__).resolve().parent
HEAVY = ("sklearn", "pandas", "scipy", "matplotlib", "pyarrow")
STREAM_LIMIT_MB = 400.0
STREAM_GROWTH_LIMIT = 1.5


# ----------------------------------------------------------------------------- help


PROBE = """
import sys
from gencli.cli.main import cli
try:
    cli.main({args!r}, prog_name="gencli", standalone_mode=False)
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""

LIST_COMMANDS = (
    "import click; from gencli.cli.main import cli; print(*cli.list_commands(click.Context(cli)))"
)


def bench_help(bench: Bench) -> None:
    """Start-up: every --help and --version, timed, and what each one imported."""
    names = measure([PYTHON, "-c", LIST_COMMANDS]).stdout.split()
    variants = [["--help"], *([name, "--help"] for name in names), ["--version"]]
    measure(gencli("--version"))  # untimed: byte-compiles anything edited since last run
    commands = {"python -m gencli " + " ".join(v): gencli(*v) for v in variants}
    script = Path(PYTHON).with_name("gencli")
    if script.exists():
        commands["gencli --help (console script)"] = [str(script), "--help"]
    commands["python -c pass (start-up alone)"] = [PYTHON, "-c", "pass"]
    sides = bench.sides("help", commands, max(bench.repeat, 3))
    timed = [side for label, side in sides.items() if "start-up alone" not in label]
    target = "< 0.3 s each"
    if not all(side.ok for side in timed):
        bench.check(broken("help/version time", next(s for s in timed if not s.ok), target))
    else:
        slowest = max(timed, key=lambda side: side.seconds)
        bench.check(
            Check(
                "help/version time",
                seconds(slowest.seconds),
                seconds(sides["python -c pass (start-up alone)"].seconds) + " (bare python)",
                "—",
                target,
                f"slowest of {len(timed)}: {slowest.label}",
                f"{max(side.peak_mb for side in timed):.0f} MB",
                MET if slowest.seconds < 0.3 else NOT_MET,
            )
        )
    loaded = {}
    for variant in variants:
        run = measure([PYTHON, "-c", PROBE.format(args=variant, heavy=HEAVY)])
        line = run.stdout.strip().splitlines()[-1:] or [""]
        loaded[" ".join(variant)] = line[0].removeprefix("HEAVY=") if run.returncode == 0 else "?"
    imported = {variant: mods for variant, mods in loaded.items() if mods}
    bench.record["help"]["heavy_imports"] = loaded
    bench.check(
        Check(
            "help/version imports",
            ", ".join(f"{v}: {m}" for v, m in imported.items()) or "none",
            "—",
            "—",
            "none of " + ", ".join(HEAVY),
            f"{len(variants)} commands probed",
            "—",
            NOT_MET if imported else MET,
        )
    )


# ----------------------------------------------------------------------------- GMM fit


def bench_gmm_fit(bench: Bench) -> None:
    """End-to-end fit of a 5-component mixture: gencli fit vs read_csv + fit + pickle."""
    rows = bench.sizes.gmm
    data = ensure(bench.data, "gmm", Mixture(components=5, dim=10, seed=1), rows)
    warm(data)
    print(f"  data: {rows:,} rows x 10 columns, 5 true components ({data.name})")
    sides = bench.sides(
        "gmm_fit",
        {
            "gencli fit -k 5": gencli(
                "fit",
                data,
                *["-k", "5", "--validation", "0", "--seed", "0", "-q", "--json", "-o"],
                bench.work / "gmm.pkl",
            ),
            "baseline gmm_fit.py": baseline("gmm_fit.py", data, bench.work / "gmm-base.pkl", 5, 0),
        },
        bench.repeat,
    )
    ours, theirs = sides.values()
    path, target = f"fit GMM {rows // 1000}k x 10, K=5", "<= 1.10× baseline, same log-lik"
    if not (ours.ok and theirs.ok):
        bench.check(broken(path, ours if not ours.ok else theirs, target))
        return
    ll_ours = float(ours.json()["mean_log_likelihood"])
    ll_theirs = float(theirs.json()["mean_log_likelihood"])
    gap = ll_ours - ll_theirs
    same = abs(gap) <= 1e-3 * max(1.0, abs(ll_theirs))
    ratio = ours.seconds / theirs.seconds
    bench.check(
        Check(
            path,
            seconds(ours.seconds),
            seconds(theirs.seconds),
            ratio_text(ratio),
            target,
            f"mean log-lik {ll_ours:.5f} vs {ll_theirs:.5f} (diff {gap:+.1e} nats/row)",
            f"{ours.peak_mb:.0f} / {theirs.peak_mb:.0f} MB",
            MET if ratio <= 1.1 and same else NOT_MET,
        )
    )


# ----------------------------------------------------------------------------- default model


def bench_default(bench: Bench) -> None:
    """The default fit (--model auto: mixtures and kernel densities compared by CV) against
    the previous default (--model gmm: K in 1..10 by BIC), on the same CSV."""
    rows = bench.sizes.gmm
    data = ensure(bench.data, "gmm", Mixture(components=5, dim=10, seed=1), rows)
    warm(data)
    print(f"  data: {rows:,} rows x 10 columns, 5 true components ({data.name})")
    common = ["--seed", "0", "-q", "--json", "-o"]
    sides = bench.sides(
        "default",
        {
            "gencli fit (auto)": gencli("fit", data, *common, bench.work / "default.pkl"),
            "gencli fit --model gmm": gencli(
                "fit", data, "--model", "gmm", *common, bench.work / "previous.pkl"
            ),
        },
        bench.repeat,
    )
    ours, theirs = sides.values()
    path, target = f"default fit {rows // 1000}k x 10", "<= 3.0× the previous default (gmm, BIC)"
    if not (ours.ok and theirs.ok):
        bench.check(broken(path, ours if not ours.ok else theirs, target))
        return
    held = [s.json()["validation"]["heldout_mean_log_likelihood"] for s in (ours, theirs)]
    ratio = ours.seconds / theirs.seconds
    bench.check(
        Check(
            path,
            seconds(ours.seconds),
            seconds(theirs.seconds),
            ratio_text(ratio),
            target,
            f"held-out mean log-lik {held[0]:.4f} vs {held[1]:.4f} nats/row",
            f"{ours.peak_mb:.0f} / {theirs.peak_mb:.0f} MB",
            MET if ratio <= 3.0 else NOT_MET,
        )
    )


# ----------------------------------------------------------------------------- auto K


def bench_auto(bench: Bench) -> None:
    """Choosing K in 1..10 by BIC: gencli's search vs the plain sequential loop."""
    rows, true_k = bench.sizes.auto, 4
    data = ensure(bench.data, "auto", Mixture(components=true_k, dim=5, seed=3), rows)
    warm(data)
    print(f"  data: {rows:,} rows x 5 columns, {true_k} true components")
    sides = bench.sides(
        "auto",
        {
            "gencli fit -k 1..10": gencli(
                "fit",
                data,
                *["-k", "1..10", "--validation", "0", "--seed", "0", "-q", "--json", "-o"],
                bench.work / "auto.pkl",
            ),
            "baseline gmm_bic_loop.py": baseline("gmm_bic_loop.py", data, 10, 0),
        },
        bench.repeat,
    )
    ours, theirs = sides.values()
    path, target = f"fit -k 1..10 (BIC), {rows // 1000}k x 5", "<= 0.60× baseline, same K"
    if not (ours.ok and theirs.ok):
        bench.check(broken(path, ours if not ours.ok else theirs, target))
        return
    k_ours = int(ours.json()["parameters"]["components"])
    k_theirs = int(theirs.json()["components"])
    ratio = ours.seconds / theirs.seconds
    bench.check(
        Check(
            path,
            seconds(ours.seconds),
            seconds(theirs.seconds),
            ratio_text(ratio),
            target,
            f"K chosen {k_ours} vs {k_theirs} (true {true_k})",
            f"{ours.peak_mb:.0f} / {theirs.peak_mb:.0f} MB",
            MET if ratio <= 0.6 and k_ours == k_theirs else NOT_MET,
        )
    )


# ----------------------------------------------------------------------------- streaming


def bench_streaming(bench: Bench) -> None:
    """Peak memory of score and sample at N/10 and N rows, beside the in-memory scripts.

    One run per command: the measure is peak memory, which barely varies between runs,
    and the large runs dominate the suite's time. --quick leaves out the in-memory scripts.
    """
    big = bench.sizes.stream
    rows = (big // 10, big)
    mixture = Mixture(components=3, dim=2, seed=4)
    train = ensure(bench.data, "stream-train", mixture, 20_000)
    files = {n: ensure(bench.data, "stream", mixture, n, stream=1) for n in rows}
    model, base_model = bench.work / "stream.pkl", bench.work / "stream-base.pkl"
    for run in (
        measure(gencli("fit", train, "-k", 3, "--validation", 0, "-o", model, "-q")),
        measure(baseline("gmm_fit.py", train, base_model, 3, 0)),
    ):
        if run.returncode != 0:
            check = Check("streaming", "—", "—", "—", "—", f"fit: {run.problem()}", "—", FAILED)
            bench.check(check)
            return
    print(f"  data: 2 columns, {rows[0]:,} and {big:,} rows; a 3-component GMM fitted on 20k rows")
    out = bench.work / "stream-out.csv"
    warm(*files.values())
    score = {n: gencli("score", model, files[n], "-o", out, "-q") for n in rows}
    base_score = baseline("gmm_score.py", base_model, files[big], out)
    stream_check(bench, "score", score, None if bench.quick else base_score, out)
    sample = {n: gencli("sample", model, "-n", n, "--seed", 0, "-o", out, "-q") for n in rows}
    base_sample = baseline("gmm_sample.py", base_model, big, out)
    stream_check(bench, "sample", sample, None if bench.quick else base_sample, out)


def stream_check(
    bench: Bench, kind: str, ours: dict[int, list[str]], theirs: list[str] | None, out: Path
) -> None:
    """Run gencli at each row count and the baseline at the largest; check the peaks."""
    small, big = sorted(ours)
    commands = {f"gencli {kind}, {n:,} rows": (command, n) for n, command in ours.items()}
    if theirs is not None:
        commands[f"baseline {kind}, {big:,} rows (in memory)"] = (theirs, big)
    sides: dict[str, Side] = {}
    written: dict[str, int] = {}
    for label, (command, _) in commands.items():
        sides |= side_by_side({label: command}, 1)
        written[label] = count_lines(out) - 1 if out.exists() and sides[label].ok else -1
        out.unlink(missing_ok=True)
    print("\n".join(side_rows(sides)), flush=True)
    bench.record[f"stream_{kind}"] = {
        label: {"seconds": side.last.seconds, "peak_mb": side.peak_mb, "rows": written[label]}
        for label, side in sides.items()
    }
    gencli_sides = [side for label, side in sides.items() if label.startswith("gencli")]
    base = next((side for label, side in sides.items() if label.startswith("baseline")), None)
    path = f"{kind} streaming {millions(small)} → {millions(big)} rows"
    target = f"peak < {STREAM_LIMIT_MB:.0f} MB at both sizes, growth <= {STREAM_GROWTH_LIMIT}×"
    failed = next((side for side in gencli_sides if not side.ok), None)
    if failed is not None:
        bench.check(broken(path, failed, target))
        return
    wrong = [
        f"{label}: {written[label]:,} rows written, expected {n:,}"
        for label, (_, n) in commands.items()
        if label.startswith("gencli") and written[label] != n
    ]
    peaks = [side.peak_mb for side in gencli_sides]
    growth = peaks[1] / peaks[0]
    met = max(peaks) < STREAM_LIMIT_MB and growth <= STREAM_GROWTH_LIMIT and not wrong
    if base is None:
        base_time, base_peak = "— (not run in --quick)", "not run"
    else:
        base_time = seconds(base.seconds) if base.ok else "—"
        base_peak = f"{base.peak_mb:.0f} MB" if base.ok else base.status()
    bench.check(
        Check(
            path,
            f"{seconds(gencli_sides[1].seconds)} at {millions(big)}",
            base_time,
            f"memory ×{growth:.2f} for 10× rows",
            target,
            "; ".join(wrong) or "row counts right",
            f"{peaks[0]:.0f} → {peaks[1]:.0f} MB (baseline {base_peak})",
            MET if met else NOT_MET,
        )
    )


# ----------------------------------------------------------------------------- CSV reading


READ_GENCLI = (
    "import sys; from gencli.io.data import read_table; print(read_table(sys.argv[1]).n_rows)"
)
READ_PANDAS = "import sys, pandas; print(len(pandas.read_csv(sys.argv[1]).to_numpy()))"


def bench_read(bench: Bench) -> None:
    """gencli.io.data.read_table against pandas.read_csv: each in a fresh process, as a
    command pays for it (the target), and both in one process, parsing only (info)."""
    data = ensure(bench.data, "gmm", Mixture(components=5, dim=10, seed=1), bench.sizes.gmm)
    warm(data)
    repeat = max(bench.repeat, 5)
    size = f"{bench.sizes.gmm // 1000}k x 10"
    sides = side_by_side(
        {
            "gencli read_table (fresh process)": [PYTHON, "-c", READ_GENCLI, str(data)],
            "pandas.read_csv (fresh process)": [PYTHON, "-c", READ_PANDAS, str(data)],
        },
        repeat,
    )
    print("\n".join(side_rows(sides)), flush=True)
    ours, theirs = sides.values()
    bench.record["read_fresh"] = {
        side.label: [r.seconds for r in side.runs] for side in sides.values()
    }
    target = "<= 1.00× pandas.read_csv"
    if not (ours.ok and theirs.ok):
        bench.check(broken(f"read CSV {size}", ours if not ours.ok else theirs, target))
    else:
        ratio = ours.seconds / theirs.seconds
        rows = ours.json() == theirs.json()
        bench.check(
            Check(
                f"read CSV {size}",
                seconds(ours.seconds),
                seconds(theirs.seconds),
                ratio_text(ratio),
                target + " (fresh process each)",
                "same row count" if rows else "row counts differ",
                f"{ours.peak_mb:.0f} / {theirs.peak_mb:.0f} MB",
                MET if ratio <= 1.0 and rows else NOT_MET,
            )
        )
    run = measure([PYTHON, str(HERE / "read_timing.py"), str(data), str(repeat)])
    path, target = f"read CSV {size}, parse only", "— (both libraries already loaded)"
    if run.returncode != 0:
        bench.check(Check(path, "—", "—", "—", target, run.problem(), "—", FAILED))
        return
    result = json.loads(run.stdout)
    times = {name: float(np.median(values)) for name, values in result["times"].items()}
    for name, values in result["times"].items():
        runs = " ".join(f"{value:.3f}" for value in values)
        print(f"  {name:<7} median {seconds(times[name]):>9}   runs: {runs}")
    bench.record["read"] = result
    ratio = times["gencli"] / times["pandas"]
    difference = result["max_abs_difference"]
    same = difference is not None and difference == 0
    bench.check(
        Check(
            path,
            seconds(times["gencli"]),
            seconds(times["pandas"]),
            ratio_text(ratio),
            target,
            "identical values" if same else f"max abs difference {difference}",
            "—",
            INFO if same else NOT_MET,
        )
    )
