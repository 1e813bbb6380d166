"""Odd and hostile data inputs, through a real gencli process.

Every refusal here is checked the same way: exit code 1, one line ``Error: <path>: ...``
naming what is wrong, no traceback, nothing on stdout and nothing left in the output
folder, within a time limit (a hang fails). Inputs that could run away (endless pipes,
declared sizes far beyond the file) also run under a memory budget (``GENCLI_MEMORY_LIMIT``)
and must be refused naming it. The refusals run a few at a time, each process ended by
its own handle, so the whole table costs a few seconds.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm

import gencli

GENCLI = [sys.executable, "-m", "gencli"]
WRITER = textwrap.dedent(
    """
    import sys
    head, block = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]) * 4096
    try:
        sys.stdout.buffer.write(head)
        while sys.argv[3] == "forever":
            sys.stdout.buffer.write(block)
    except (BrokenPipeError, OSError):
        pass
    """
)


def drop_file_permission_override() -> None:
    """As root, lose the power to read files regardless of their permissions (from the
    bounding set, so the exec'd process starts without it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@dataclass
class Case:
    """One gencli run: its arguments (``{out}`` is its own output folder), what feeds its
    stdin (a file to open, or bytes a writer repeats forever), and what it must say."""

    args: list[str]
    fragment: str
    stdin_file: str | None = None
    forever: tuple[bytes, bytes] | None = None
    piped: bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    preexec: Callable[[], None] | None = None
    timeout: float = 30.0


@dataclass
class Outcome:
    returncode: int
    stdout: bytes
    stderr: str
    leftovers: list[str]


def run(case: Case, folder: Path, name: str) -> Outcome:
    """Run one case in ``folder``; a writer feeding it is ended by its handle."""
    out = folder / f"out-{name}"
    out.mkdir()
    args = [a.replace("{out}", str(out)) for a in case.args]
    env = {**os.environ, **case.env}
    writer = None
    stdin: Any = subprocess.DEVNULL
    try:
        if case.stdin_file is not None:
            stdin = open(folder / case.stdin_file, "rb")  # noqa: SIM115 - closed below
        if case.forever is not None or case.piped is not None:
            head, block = case.forever or (case.piped or b"", b"")
            how = "forever" if case.forever else "once"
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, head.hex(), block.hex(), how],
                stdout=subprocess.PIPE,
            )
            stdin = writer.stdout
        proc = subprocess.run(
            [*GENCLI, *args],
            stdin=stdin,
            capture_output=True,
            cwd=folder,
            env=env,
            timeout=case.timeout,
            preexec_fn=case.preexec,
        )
    finally:
        if writer is not None:
            writer.kill()
            writer.wait(timeout=30)
            writer.stdout.close()  # type: ignore[union-attr]
        elif hasattr(stdin, "close"):
            stdin.close()
    return Outcome(proc.returncode, proc.stdout, proc.stderr.decode(), sorted(os.listdir(out)))


def huge_npy_header(shape: str, version: int = 1, length: int | None = None) -> bytes:
    text = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    size = (length if length is not None else len(text)).to_bytes(
        2 if version == 1 else 4, "little"
    )
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode()


def zeros_parquet(path: Path, n: int) -> None:
    """``n`` zeros in one row group: a few hundred kilobytes that decode to 8n bytes."""
    block = pa.array(np.zeros(1_000_000))
    table = pa.table({"a": pa.chunked_array([block] * (n // 1_000_000))})
    pq.write_table(table, path, row_group_size=n)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Iterator[Path]:
    """Every odd input the cases use, and a model over one column 'a' and one over a, b, c."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (root / "a.csv").write_text("a\n" + "\n".join(repr(float(v)) for v in rng.normal(size=200)))
    gencli.fit(str(root / "a.csv"), components=1).save(root / "a.pkl")
    rows = rng.normal(size=(200, 3))
    (root / "abc.csv").write_text(
        "a,b,c\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in rows)
    )
    gencli.fit(str(root / "abc.csv"), components=1).save(root / "abc.pkl")
    os.mknod(root / "zero.csv", stat.S_IFCHR | 0o644, os.makedev(1, 5))
    os.mknod(root / "disk.csv", stat.S_IFBLK | 0o644, os.makedev(7, 0))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock.csv"))
    os.mkfifo(root / "fifo.csv")
    os.symlink("loop2.csv", root / "loop1.csv")
    os.symlink("loop1.csv", root / "loop2.csv")
    os.symlink("nowhere.csv", root / "dangling.csv")
    (root / "locked").mkdir()
    shutil.copy(root / "abc.csv", root / "locked" / "data.csv")
    (root / "locked").chmod(0)
    (root / "huge.npy").write_bytes(huge_npy_header("(1000000000000, 3)") + bytes(48))
    (root / "header-bomb.npy").write_bytes(huge_npy_header("(2, 3)", 2, 1 << 31))
    np.save(root / "trailing.npy", np.ones((4, 3)))
    with open(root / "trailing.npy", "ab") as handle:
        handle.write(bytes(16))
    zeros_parquet(root / "zeros.parquet", 3_000_000)
    pq.write_table(pa.table({"a": [1.5, None, 2.5], "name": [None, "x", "y"]}), root / "s.parquet")
    (root / "evil.csv").write_bytes(b"a,b,c\n1,2,3\n4,5,6\n7,\x1b[31mevil,9\n")
    lines = b"a,b,c\n" + b"123456.25,234567.5,345678.75\n" * 200_000 + b"1,oops,3\n"
    (root / "late.csv").write_bytes(lines)  # the bad cell is in the second 4 MB block
    (root / "flags.csv").write_bytes(b"a,flag\n1.5,true\n2.5,false\n3.5,1\n")
    (root / "wide.csv").write_bytes(b"0," * 199_999 + b"0\n")  # 400 KB, 200,000 columns
    with open(root / "sparse.csv", "wb") as handle:  # 100 KB of rows, then a 50 GB hole
        handle.write(b"a,b\n" + b"1.5,2.5\n" * 12_500)
        handle.truncate(50 << 30)
    yield root
    (root / "sparse.csv").unlink()  # 50 GB to anything that copies it without holes


NAME_TOO_LONG = "n" * 300 + ".csv"
ENDLESS_CSV = (b"a,b\n", b"1.5,2.5\n")
CASES = {
    # A path that is not a regular file or pipe: refused from stat, before it is opened.
    "char-device": Case(
        ["fit", "zero.csv", "-o", "{out}/m.pkl"], "zero.csv: is a character device"
    ),
    "block-device": Case(["fit", "disk.csv", "-o", "{out}/m.pkl"], "disk.csv: is a block device"),
    "socket": Case(["fit", "sock.csv", "-o", "{out}/m.pkl"], "sock.csv: is a socket"),
    "stdin-device": Case(
        ["fit", "-", "-o", "{out}/m.pkl"], "<stdin>: is a character device", stdin_file="zero.csv"
    ),
    # A named pipe nothing writes to: open would wait forever.
    "fifo": Case(
        ["fit", "fifo.csv", "-o", "{out}/m.pkl"], "fifo.csv: is a named pipe with nothing writing"
    ),
    # Paths that fail, each with its own reason.
    "symlink-loop": Case(
        ["fit", "loop1.csv", "-o", "{out}/m.pkl"], "loop1.csv: the symbolic links"
    ),
    "through-a-file": Case(
        ["fit", "abc.csv/inner.csv", "-o", "{out}/m.pkl"], "abc.csv is a file, not a folder"
    ),
    "name-too-long": Case(["fit", NAME_TOO_LONG, "-o", "{out}/m.pkl"], "is 304 bytes long"),
    "no-permission": Case(
        ["fit", "locked/data.csv", "-o", "{out}/m.pkl"],
        "locked/data.csv: permission denied",
        preexec=drop_file_permission_override,
    ),
    # Endless pipes: judged from the first block, or refused at the memory budget.
    "zeros-score": Case(
        ["score", "abc.pkl", "-", "-o", "{out}/s.csv"], "is binary", forever=(b"", b"\0" * 16)
    ),
    "endless-csv-fit": Case(
        ["fit", "-", "-o", "{out}/m.pkl"],
        "more than the 20 MB that GENCLI_MEMORY_LIMIT=20M allows",
        forever=ENDLESS_CSV,
        env={"GENCLI_MEMORY_LIMIT": "20M"},
    ),
    "endless-first-line-score": Case(
        ["score", "abc.pkl", "-", "-o", "{out}/s.csv"],
        "<stdin>: its first line is longer than 16 MB",
        forever=(b"", b"1234567,"),
    ),
    "endless-line-score": Case(
        ["score", "abc.pkl", "-", "-o", "{out}/s.csv"],
        "a line of <stdin> longer than 4 MB would need about 32 MB of memory, more than the "
        "20 MB that GENCLI_MEMORY_LIMIT=20M allows",
        forever=(b"a,b,c\n1,2,3\n", b"1234567,"),
        env={"GENCLI_MEMORY_LIMIT": "20M"},
    ),
    # A file is judged by its size before it is read.
    "huge-file": Case(
        ["fit", "sparse.csv", "-o", "{out}/m.pkl"],
        "reading sparse.csv (50 GB) would need about",
        env={"GENCLI_MEMORY_LIMIT": "1G"},
    ),
    # arrow's CSV reader holds about 10 KB per column: checked from the first line.
    "wide-csv": Case(
        ["fit", "wide.csv", "-o", "{out}/m.pkl"],
        "reading wide.csv (200,000 columns) would need about 6.1 GB of memory, more than the "
        "100 MB that GENCLI_MEMORY_LIMIT=100M allows",
        env={"GENCLI_MEMORY_LIMIT": "100M"},
    ),
    # NPY: the header is checked against the file and the budget before any allocation.
    "npy-huge-shape": Case(
        ["fit", "huge.npy", "-o", "{out}/m.pkl"],
        "huge.npy: is truncated: its header declares shape (1000000000000, 3) of float64",
    ),
    "npy-huge-shape-pipe-fit": Case(
        ["fit", "-", "--format", "npy", "-o", "{out}/m.pkl"],
        "would need about 21.8 TB of memory, more than the 1 GB that GENCLI_MEMORY_LIMIT=1G",
        forever=(huge_npy_header("(1000000000000, 3)"), bytes(8)),
        env={"GENCLI_MEMORY_LIMIT": "1G"},
    ),
    "npy-huge-shape-pipe-score": Case(
        ["score", "abc.pkl", "-", "--format", "npy", "-o", "{out}/s.csv"],
        "<stdin>: is truncated after row 2 of the 1,000,000,000,000",
        piped=huge_npy_header("(1000000000000, 3)") + bytes(48),
    ),
    "npy-header-bomb": Case(
        ["fit", "header-bomb.npy", "-o", "{out}/m.pkl"], "NPY header claims 2,147,483,648 bytes"
    ),
    "npy-trailing-bytes": Case(
        ["fit", "trailing.npy", "-o", "{out}/m.pkl"], "trailing.npy: has bytes after its array"
    ),
    # Parquet: rows x columns from the footer, checked before decoding.
    "parquet-bomb-fit": Case(
        ["fit", "zeros.parquet", "-o", "{out}/m.pkl"],
        "zeros.parquet (3,000,000 rows x 1 column) would need about 45.8 MB of memory, "
        "more than the 30 MB that GENCLI_MEMORY_LIMIT=30M allows",
        env={"GENCLI_MEMORY_LIMIT": "30M"},
    ),
    "parquet-bomb-pipe-fit": Case(
        ["fit", "-", "--format", "parquet", "-o", "{out}/m.pkl"],
        "<stdin> (3,000,000 rows x 1 column) would need about 45.8 MB",
        stdin_file="zeros.parquet",
        env={"GENCLI_MEMORY_LIMIT": "30M"},
    ),
    # Cells that are not numbers: row, column and value (escaped), and what to do.
    "bad-cell": Case(
        ["fit", "evil.csv", "-o", "{out}/m.pkl"],
        "evil.csv: column 'b' has a value that is not a number at row 3 (data rows, counting "
        "from 1): '\\x1b[31mevil'; fix it, or leave the column out with --columns a,c",
    ),
    "bad-cell-late-score": Case(
        ["score", "abc.pkl", "late.csv", "-o", "{out}/s.csv"],
        "late.csv: column 'b' has a value that is not a number at row 200001 (data rows, "
        "counting from 1): 'oops'; fix it, or remove that column from the file",
    ),
    "parquet-text-column": Case(
        ["fit", "s.parquet", "-o", "{out}/m.pkl"],
        "s.parquet: column 'name' has a value that is not a number at row 2 (data rows, "
        "counting from 1): 'x'; fix it, or leave the column out with --columns a",
    ),
    "number-in-a-boolean-column": Case(
        ["fit", "flags.csv", "-o", "{out}/m.pkl"],
        "column 'flag' has a value that is not true or false at row 3 (data rows, counting "
        "from 1): '1'",
    ),
}


@pytest.fixture(scope="module")
def outcomes(folder) -> dict[str, Outcome]:
    """Every case, three at a time (each waits on its process, so threads suffice)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run, case, folder, name) for name, case in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_in_one_line_and_nothing_written(outcomes, name):
    outcome = outcomes[name]
    lines = outcome.stderr.splitlines()
    assert outcome.returncode == 1, outcome.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
    assert CASES[name].fragment in lines[0]
    assert "\x1b" not in outcome.stderr and "Traceback" not in outcome.stderr
    assert outcome.stdout == b""
    assert outcome.leftovers == []


# ----------------------------------------------------------------------------- pipes that work


def scores_of(folder: Path, scores: Path) -> None:
    """The scores gencli wrote are those of abc.csv's rows, parsed here by numpy."""
    rows = np.loadtxt(folder / "abc.csv", delimiter=",", skiprows=1)
    expected = gencli.load(folder / "abc.pkl").score_samples(rows)
    np.testing.assert_array_equal(np.load(scores)[:, 0], expected)


def test_process_substitution_reads_as_the_file(folder, tmp_path):
    """``score MODEL <(cat data.csv)`` reads /dev/fd/63, a pipe with a writer."""
    script = f'"$@" score {folder / "abc.pkl"} <(cat {folder / "abc.csv"}) --format csv -o s.npy'
    proc = subprocess.run(
        ["bash", "-c", script, "bash", *GENCLI], cwd=tmp_path, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    scores_of(folder, tmp_path / "s.npy")


def test_named_pipe_with_a_writer_is_read(folder, tmp_path):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    writer_end = os.open(fifo, os.O_RDWR)  # a writer exists before gencli opens the pipe
    try:
        proc = subprocess.Popen(
            [*GENCLI, "score", str(folder / "abc.pkl"), str(fifo), "-o", "s.npy", "-q"],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
        )
        try:
            wait_until_open(proc.pid, fifo)
            os.write(writer_end, (folder / "abc.csv").read_bytes())
            os.close(writer_end)
            writer_end = -1
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if writer_end >= 0:
            os.close(writer_end)
    scores_of(folder, tmp_path / "s.npy")


def wait_until_open(pid: int, path: Path, timeout: float = 60) -> None:
    """Until process ``pid`` holds ``path`` open (seen in /proc/PID/fd)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            links = []
        if str(path) in links:
            return
        time.sleep(0.02)
    raise AssertionError(f"{pid} never opened {path}")


# ----------------------------------------------------------------------------- memory stays flat

PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def peak_rss_mb(args: list[str], folder: Path, stdin: Any = None) -> float:
    """Run gencli under a wrapper that reports its peak resident memory."""
    report = folder / f"rss-{args[-1].replace('/', '-')}.txt"
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(report), *GENCLI, *args],
        cwd=folder,
        stdin=stdin,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return int(report.read_text()) / 1024


@pytest.fixture(scope="module")
def small_score_rss(folder) -> float:
    """The peak memory of scoring a three-row Parquet file: imports and the model."""
    pq.write_table(pa.table({"a": [0.0, 0.0, 0.0]}), folder / "tiny.parquet")
    return peak_rss_mb(["score", "a.pkl", "tiny.parquet", "-o", "tiny-scores.npy"], folder)


@pytest.mark.parametrize("route", ["file", "pipe"])
def test_score_streams_a_parquet_bomb_in_flat_memory(folder, small_score_rss, route):
    """3M zeros in one row group (24 MB decoded, twice that as arrow and numpy) score with
    the memory of a three-row file; the scores match the closed form at 0."""
    args = ["score", "a.pkl", "-o", f"z-{route}.npy"]
    if route == "file":
        big = peak_rss_mb([*args, "zeros.parquet"], folder)
    else:
        with open(folder / "zeros.parquet", "rb") as stdin:
            big = peak_rss_mb([*args, "-", "--format", "parquet"], folder, stdin=stdin)
    assert big - small_score_rss < 20, (small_score_rss, big)
    scores = np.load(folder / f"z-{route}.npy", mmap_mode="r")
    # One Gaussian fitted by maximum likelihood: the rows' mean and (ddof=0) spread.
    training = np.loadtxt(folder / "a.csv", skiprows=1)
    expected = norm.logpdf(0.0, training.mean(), training.std())
    assert scores.shape == (3_000_000, 1)
    np.testing.assert_allclose(scores[[0, 1_500_000, -1], 0], expected, rtol=1e-5)


# ----------------------------------------------------------------------------- types across blocks


def test_score_reads_integers_that_turn_decimal_after_the_first_block(folder, tmp_path):
    """Column types come from the head, not from the first block arrow happens to see:
    whole numbers for more than one 4 MB block, then decimals, read as fit reads them
    (integers above 2**53 to the nearest float)."""
    whole = [f"{i},{i * 3 - 7},{2**53 + 1 + 2 * i}" for i in range(160_000)]
    text = "a,b,c\n" + "\n".join([*whole, "0.5,1.25,2.75", "-3.5,1e3,4"]) + "\n"
    assert len(text) > 4 << 20
    (tmp_path / "switch.csv").write_text(text)
    proc = subprocess.run(
        [*GENCLI, "score", str(folder / "abc.pkl"), "switch.csv", "-o", "s.npy", "-q"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    expected = np.array([[float(v) for v in line.split(",")] for line in text.splitlines()[1:]])
    assert expected[0, 2] == 2.0**53  # 2**53 + 1 to the nearest float
    model = gencli.load(folder / "abc.pkl")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy")[:, 0], model.score_samples(expected))
