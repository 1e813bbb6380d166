"""The real shell: subprocesses, pipes, exit codes, and start-up cost."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gencli

GENCLI = [sys.executable, "-m", "gencli"]


def sh(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*GENCLI, *args], input=input, capture_output=True, timeout=120)


def test_sample_piped_into_score(blobs_csv: Path) -> None:
    assert sh("fit", str(blobs_csv), "-k", "2", "-o", "m.pkl", "-q").returncode == 0
    sampler = subprocess.Popen(
        [*GENCLI, "sample", "m.pkl", "-n", "500", "--seed", "9"], stdout=subprocess.PIPE
    )
    scorer = subprocess.run(
        [*GENCLI, "score", "m.pkl", "-", "-o", "-"],
        stdin=sampler.stdout,
        capture_output=True,
        timeout=120,
    )
    assert sampler.wait(timeout=120) == 0
    assert scorer.returncode == 0, scorer.stderr
    scores = pd.read_csv(__import__("io").BytesIO(scorer.stdout))
    assert len(scores) == 500
    model = gencli.load("m.pkl")
    expected = model.score_samples(model.sample(500, seed=9))
    np.testing.assert_allclose(scores["log_density"].to_numpy(), expected, rtol=1e-12)
    assert b"nats/row" in scorer.stderr


def test_same_seed_gives_byte_identical_samples(blobs_csv: Path) -> None:
    sh("fit", str(blobs_csv), "--model", "kde", "-o", "m.pkl", "-q")
    first = sh("sample", "m.pkl", "-n", "300", "--seed", "5").stdout
    second = sh("sample", "m.pkl", "-n", "300", "--seed", "5").stdout
    assert first == second and len(first.splitlines()) == 301


def test_error_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    missing = sh("fit", "nope.csv")
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "Error: nope.csv: no such file; check the path"
    bad_flag = sh("fit", "nope.csv", "-k", "0")
    assert bad_flag.returncode == 2
    assert b"Traceback" not in missing.stderr + bad_flag.stderr
    debug = sh("fit", "nope.csv", "--debug")
    assert debug.returncode == 1 and b"Traceback" in debug.stderr


def python_lines(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter, which must succeed; its lines of output."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()


def loaded_after(args: list[str], modules: tuple[str, ...]) -> str:
    """Which of ``modules`` a fresh interpreter holds after running ``gencli ARGS``."""
    code = (
        "import sys\n"
        "from gencli.cli.main import cli\n"
        "try:\n"
        f"    cli.main({args!r}, standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED=' + ','.join(m for m in {modules!r} if m in sys.modules))\n"
    )
    return python_lines(code)[-1].removeprefix("LOADED=")


def test_help_does_not_import_heavy_libraries() -> None:
    heavy = ("sklearn", "pandas", "scipy", "matplotlib", "pyarrow")
    for args in ([], ["fit"], ["score"], ["sample"]):
        assert loaded_after([*args, "--help"], heavy) == "", args


def test_scoring_a_csv_imports_neither_scikit_learn_nor_pandas_nor_scipy(tmp_path) -> None:
    # Each would add 0.2-0.5 s of start-up to every `score` in a pipeline.
    rng = np.random.default_rng(0)
    np.savetxt("train.csv", rng.normal(size=(400, 2)), delimiter=",", header="x,y", comments="")
    np.savetxt("rows.csv", rng.normal(size=(50, 2)), delimiter=",", header="x,y", comments="")
    for model in ("gmm", "kde"):
        fitted = sh("fit", "train.csv", "--model", model, "-o", f"{model}.pkl", "-q")
        assert fitted.returncode == 0, fitted.stderr
        score = ["score", f"{model}.pkl", "rows.csv", "-o", "s.csv", "-q"]
        assert loaded_after(score, ("sklearn", "pandas", "scipy", "matplotlib")) == "", model
        assert len((tmp_path / "s.csv").read_text().splitlines()) == 51


def test_fit_overlaps_importing_scikit_learn_and_leaves_pandas_out(tmp_path) -> None:
    import gencli as api

    # scikit-learn is imported on a second thread while the data is read, without pandas
    # (0.2 s), and the model is the same as a fit in a process that has pandas loaded.
    rng = np.random.default_rng(1)
    data = np.vstack([rng.normal(-2, 1, (300, 2)), rng.normal(3, 0.5, (300, 2))])
    np.savetxt("train.csv", data, delimiter=",", header="x,y", comments="")
    probe = (
        "import sys, threading\n"
        "from gencli.cli.main import cli\n"
        "cli.main(['fit', 'train.csv', '-k', '2', '-o', 'cli.pkl', '-q'], standalone_mode=False)\n"
        "print('SKLEARN', 'sklearn.mixture' in sys.modules)\n"
        "print('PANDAS', 'pandas' in sys.modules, sys.modules.get('pandas', 0) is None)\n"
        "print('THREADS', threading.active_count())\n"
    )
    lines = python_lines(probe)
    assert "SKLEARN True" in lines
    assert "PANDAS False False" in lines  # never imported, and not left blocked either
    assert "THREADS 1" in lines
    # Parquet's reader imports pandas on the main thread while scikit-learn loads; stdin
    # and a failed read work too, and pandas stays importable after them.
    pd.DataFrame(data, columns=["x", "y"]).to_parquet("train.parquet")
    assert sh("fit", "train.parquet", "-k", "2", "-o", "pq.pkl", "-q").returncode == 0
    piped = sh("fit", "-", "-k", "2", "-o", "in.pkl", "-q", input=Path("train.csv").read_bytes())
    assert piped.returncode == 0, piped.stderr
    Path("bad.csv").write_text("x,y\n1,2\n3\n")
    after_error = (
        "from gencli.cli.main import cli\n"
        "try:\n"
        "    cli.main(['fit', 'bad.csv', '-o', 'b.pkl', '-q'], standalone_mode=False)\n"
        "except Exception as exc:\n"
        "    print('FAILED', type(exc).__name__)\n"
        "import pandas\n"
        "print('PANDAS', pandas.__name__)\n"
    )
    assert python_lines(after_error) == ["FAILED ClickException", "PANDAS pandas"]
    for name in ("pq.pkl", "in.pkl"):
        np.testing.assert_allclose(
            api.load(name).params["means"], api.load("cli.pkl").params["means"], rtol=1e-9
        )
    expected = api.fit(pd.read_csv("train.csv"), components=2, seed=0)
    got = api.load("cli.pkl")
    np.testing.assert_array_equal(got.params["means"], expected.params["means"])


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "gencli"
    result = subprocess.run([str(script), "--version"], capture_output=True, timeout=60)
    assert result.returncode == 0 and gencli.__version__.encode() in result.stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_allocator_settings() -> None:
    # mallopt refuses values out of range (for example an mmap threshold above 32 MiB)
    # without an error: the command line would silently run with the default allocator.
    # In a child process, so this test run's own allocator is left alone.
    probe = "from gencli.native import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr


def test_no_mallopt_changes_nothing_and_starts_anyway(monkeypatch) -> None:
    # On Windows ctypes.CDLL(None) raises TypeError; elsewhere the C library may have no
    # mallopt. Either way the command line must start as usual.
    import ctypes

    from gencli.native import keep_freed_memory

    def refuse(*args: object, **kwargs: object) -> None:
        raise TypeError("argument of type 'NoneType' is not iterable")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    assert keep_freed_memory() is False
    monkeypatch.setattr(sys, "platform", "win32")
    assert keep_freed_memory() is False
