"""Files and processes: interrupts, concurrent writers, inputs never clobbered, write failures.

The promises tested here (see the README's Guarantees section):

- SIGINT or SIGTERM during a long ``fit``, ``score -o`` or ``sample -o`` (a real process,
  signalled while it works) exits 130 or 143 with one ``Error:`` line, leaves no partial
  or temporary file, and leaves an existing output byte for byte as it was.
- Two processes writing the same output path leave one complete file, never a mix.
- No command overwrites one of its inputs, however the output path is spelled.
- An unwritable folder, a full disk or a folder given as a model file give a one-line error
  and leave nothing half-written.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner, Result
from helpers import snapshot

import gencli
from gencli.cli.main import cli
from gencli.io import atomic
from gencli.io.data import read_table

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and file modes")

OLD = b"an older output that must survive\n"
WAIT = 60  # seconds any one process may take to finish after it is signalled


# ----------------------------------------------------------------------------- helpers


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def start(args: list[str], cwd: Path, stdin: int | None = None) -> subprocess.Popen:
    """Start ``python -m gencli`` in its own process group, with SIGINT at its default so
    that Python turns it into KeyboardInterrupt even under a shell that ignores it."""
    return subprocess.Popen(
        [sys.executable, "-m", "gencli", *args],
        cwd=cwd,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stop_group(proc: subprocess.Popen) -> None:
    """Kill whatever is left of the process group we started (the process and its workers)."""
    if proc.poll() is None or live_members(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def live_members(group: int) -> list[int]:
    """Processes in a process group that are still running (zombies do not count)."""
    members: list[int] = []
    if not Path("/proc").is_dir():
        return members  # no /proc to look in: assume the workers went with the process
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def wait_for_temporary_file(proc: subprocess.Popen, folder: Path, timeout: float = 30) -> None:
    """Return once the process is writing its output (its temporary file exists)."""
    deadline = time.monotonic() + timeout
    while not temporary_files(folder):
        assert proc.poll() is None, "the job finished before it could be interrupted"
        assert time.monotonic() < deadline, "no temporary output file appeared"
        time.sleep(0.005)


def signal_and_wait(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        proc.communicate()
        pytest.fail(f"gencli did not stop within {WAIT} s of signal {sig}")
    return proc.returncode, err.decode("utf-8", "replace")


def assert_one_error_line(stderr: str, word: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert errors[0] == lines[-1], stderr
    assert word in errors[0], errors[0]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def error_line(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, bytes]:
    """A two-component mixture over columns a, b and the 500 rows it was fitted on."""
    folder = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal([0, 0], 1, (250, 2)), rng.normal([4, 5], [0.5, 2], (250, 2))])
    (folder / "data.csv").write_text("a,b\n" + "".join(f"{x!r},{y!r}\n" for x, y in X.tolist()))
    gencli.fit(folder / "data.csv", "gmm", components=2, validation=0.0).save(folder / "m.pkl")
    return {"model": (folder / "m.pkl").read_bytes(), "data": (folder / "data.csv").read_bytes()}


@pytest.fixture
def job(tmp_path, trained) -> Path:
    """The working folder of a test, holding m.pkl and data.csv."""
    (tmp_path / "m.pkl").write_bytes(trained["model"])
    (tmp_path / "data.csv").write_bytes(trained["data"])
    return tmp_path


def _csv_bytes(values: np.ndarray, names: list[str]) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(pa.table(list(values.T), names=names), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """2.5 million rows to score: long enough to be caught writing."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    path.write_bytes(_csv_bytes(np.random.default_rng(1).normal(size=(2_500_000, 2)), ["a", "b"]))
    return path


@pytest.fixture(scope="module")
def fit_input() -> bytes:
    """200,000 rows of a 4-column mixture: a search over K = 1..10 and four covariance
    types takes far longer than these tests wait."""
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(size=(100_000, 4)), rng.normal(3, 1, size=(100_000, 4))])
    return _csv_bytes(X, ["a", "b", "c", "d"])


# ----------------------------------------------------------------------------- interrupts

FIT_ARGS = ["fit", "-", "-k", "1..10", "--covariance", "auto", "-o", "out.pkl"]


def _interrupt_fit(folder: Path, data: bytes, sig: int) -> tuple[int, str, int]:
    proc = start(FIT_ARGS, folder, stdin=subprocess.PIPE)
    try:
        assert proc.stdin is not None
        proc.stdin.write(data)  # returns once gencli has read nearly all of it
        proc.stdin.close()
        proc.stdin = None  # so that communicate() does not flush it again
        time.sleep(1.0)  # into the search
        assert proc.poll() is None, "the fit ended before it could be interrupted"
        code, stderr = signal_and_wait(proc, sig)
        deadline = time.monotonic() + 15
        while live_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return code, stderr, len(live_members(proc.pid))
    finally:
        stop_group(proc)


def test_sigint_during_fit_keeps_the_old_model(tmp_path, fit_input):
    (tmp_path / "out.pkl").write_bytes(OLD)
    code, stderr, workers_left = _interrupt_fit(tmp_path, fit_input, signal.SIGINT)
    assert code == 130, stderr
    assert_one_error_line(stderr, "interrupted")
    assert (tmp_path / "out.pkl").read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pkl"]
    assert workers_left == 0, "worker processes outlived the interrupted fit"


def test_sigterm_during_fit_leaves_no_file(tmp_path, fit_input):
    code, stderr, workers_left = _interrupt_fit(tmp_path, fit_input, signal.SIGTERM)
    assert code == 143, stderr
    assert_one_error_line(stderr, "terminated")
    assert list(tmp_path.iterdir()) == []
    assert workers_left == 0, "worker processes outlived the terminated fit"


def _interrupt_writer(folder: Path, args: list[str], sig: int) -> tuple[int, str]:
    proc = start(args, folder)
    try:
        wait_for_temporary_file(proc, folder)
        # A signal in the first milliseconds of writing can be lost today: see
        # test_a_signal_whose_exception_is_swallowed_still_stops_the_run.
        time.sleep(0.1)
        return signal_and_wait(proc, sig)
    finally:
        stop_group(proc)


SAMPLE_ARGS = ["sample", "m.pkl", "-n", "20000000", "--seed", "1", "-o", "out.csv"]


def test_sigint_during_sample_leaves_no_file(job):
    code, stderr = _interrupt_writer(job, SAMPLE_ARGS, signal.SIGINT)
    assert code == 130, stderr
    assert_one_error_line(stderr, "interrupted")
    assert sorted(p.name for p in job.iterdir()) == ["data.csv", "m.pkl"]


def test_sigterm_during_sample_keeps_the_old_output(job):
    (job / "out.csv").write_bytes(OLD)
    before = snapshot(job)
    code, stderr = _interrupt_writer(job, SAMPLE_ARGS, signal.SIGTERM)
    assert code == 143, stderr
    assert_one_error_line(stderr, "terminated")
    assert snapshot(job) == before


def test_sigint_during_score_keeps_the_old_output(job, big_csv):
    (job / "out.csv").write_bytes(OLD)
    before = snapshot(job)
    args = ["score", "m.pkl", str(big_csv), "-o", "out.csv"]
    code, stderr = _interrupt_writer(job, args, signal.SIGINT)
    assert code == 130, stderr
    assert_one_error_line(stderr, "interrupted")
    assert snapshot(job) == before


def test_sigterm_during_score_leaves_no_file(job, big_csv):
    args = ["score", "m.pkl", str(big_csv), "-o", "out.csv"]
    code, stderr = _interrupt_writer(job, args, signal.SIGTERM)
    assert code == 143, stderr
    assert_one_error_line(stderr, "terminated")
    assert sorted(p.name for p in job.iterdir()) == ["data.csv", "m.pkl"]


# The Python-level handler of SIGINT (KeyboardInterrupt) or SIGTERM raises wherever the
# interpreter is; when that is inside a callback (a weakref callback such as importlib's
# module-lock cleanup, or a __del__), Python prints "Exception ignored" and carries on. This
# driver makes that happen deterministically, right after gencli creates its temporary file.
SWALLOWING_DRIVER = """
import os, signal, sys, time, weakref
import gencli.io.atomic as atomic
SIG = int(sys.argv.pop(1))
real_open_temporary = atomic._open_temporary

def open_temporary(*args, **kwargs):
    result = real_open_temporary(*args, **kwargs)
    class Token:
        pass
    token = Token()
    ref = weakref.ref(token, lambda _: (os.kill(os.getpid(), SIG), time.sleep(0.2)))
    del token  # the callback runs now: the signal's exception is raised inside it
    return result

atomic._open_temporary = open_temporary
sys.argv = ["gencli", *sys.argv[1:]]
from gencli.cli.main import main
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_whose_exception_is_swallowed_still_stops_the_run(job, sig):
    args = ["sample", "m.pkl", "-n", "300000", "-o", "out.csv"]
    proc = subprocess.run(
        [sys.executable, "-c", SWALLOWING_DRIVER, str(int(sig)), *args],
        cwd=job,
        capture_output=True,
        text=True,
        timeout=WAIT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.returncode == 128 + sig, proc.stderr
    assert "Error: " in proc.stderr
    assert sorted(p.name for p in job.iterdir()) == ["data.csv", "m.pkl"]


# ----------------------------------------------------------------------------- concurrent writers


def test_concurrent_writers_leave_one_complete_file(job):
    n = "300000"
    runs = [
        start(["sample", "m.pkl", "-n", n, "--seed", "1", "-o", "same.csv"], job),
        start(["sample", "m.pkl", "-n", n, "--seed", "2", "-o", "same.csv"], job),
        start(["sample", "m.pkl", "-n", n, "--seed", "1", "-o", "one.csv"], job),
        start(["sample", "m.pkl", "-n", n, "--seed", "2", "-o", "two.csv"], job),
    ]
    try:
        for proc in runs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in runs:
            stop_group(proc)
    one, two = (job / "one.csv").read_bytes(), (job / "two.csv").read_bytes()
    assert one != two
    same = (job / "same.csv").read_bytes()
    assert same in (one, two), "the file is a mix of two writers' output"
    table = read_table(job / "same.csv")
    assert table.columns == ["a", "b"] and table.n_rows == 300_000
    assert temporary_files(job) == []


# ----------------------------------------------------------------------------- inputs are safe


def _links(folder: Path) -> None:
    (folder / "sub").mkdir()
    os.symlink("m.pkl", folder / "link.pkl")
    os.symlink("data.csv", folder / "link.csv")
    os.symlink(".", folder / "here")
    os.link(folder / "m.pkl", folder / "hard.pkl")
    os.link(folder / "data.csv", folder / "hard.csv")


# (case id, arguments, the output as given); "{abs}" is the working folder.
SAME_AS_INPUT = [
    ("sample-dotdot", ["sample", "m.pkl", "-n", "5", "-o", "sub/../m.pkl"]),
    ("sample-absolute", ["sample", "m.pkl", "-n", "5", "-o", "{abs}/m.pkl"]),
    ("sample-symlink", ["sample", "m.pkl", "-n", "5", "-o", "link.pkl"]),
    ("sample-hardlink", ["sample", "m.pkl", "-n", "5", "-o", "hard.pkl"]),
    ("sample-linked-folder", ["sample", "m.pkl", "-n", "5", "-o", "here/m.pkl"]),
    ("sample-model-via-link", ["sample", "link.pkl", "-n", "5", "-o", "m.pkl"]),
    ("score-dotdot-data", ["score", "m.pkl", "data.csv", "-o", "sub/../data.csv"]),
    ("score-symlink-data", ["score", "m.pkl", "data.csv", "-o", "link.csv"]),
    ("score-symlink-model", ["score", "m.pkl", "data.csv", "-o", "link.pkl"]),
    ("score-stdin-model", ["score", "m.pkl", "-", "-o", "./m.pkl"]),
    ("fit-hardlink", ["fit", "data.csv", "-o", "hard.csv"]),
    ("fit-absolute", ["fit", "{abs}/data.csv", "-o", "data.csv"]),
    ("fit-report-is-data", ["fit", "data.csv", "-o", "new.pkl", "--report", "./data.csv"]),
    ("fit-report-is-model", ["fit", "data.csv", "-o", "new.json", "--report", "new.json"]),
]


@pytest.mark.parametrize(
    "args", [case[1] for case in SAME_AS_INPUT], ids=[case[0] for case in SAME_AS_INPUT]
)
def test_output_that_is_an_input_is_refused(job, monkeypatch, args):
    monkeypatch.chdir(job)
    _links(job)
    args = [a.replace("{abs}", str(job)) for a in args]
    before = snapshot(job)
    result = CliRunner().invoke(cli, args, input=b"a,b\n1,2\n3,4\n")
    line = error_line(result)
    clash = "input" in line or "where the model file goes" in line
    assert os.path.basename(args[-1]) in line and clash, line
    assert snapshot(job) == before


def test_sample_onto_its_own_model_in_a_real_process(job, trained):
    proc = subprocess.run(
        [sys.executable, "-m", "gencli", "sample", "m.pkl", "-o", "m.pkl"],
        cwd=job,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: m.pkl: ")
    assert "input" in proc.stderr and "another output path" in proc.stderr
    assert (job / "m.pkl").read_bytes() == trained["model"]
    assert sorted(p.name for p in job.iterdir()) == ["data.csv", "m.pkl"]
    assert gencli.load(job / "m.pkl").columns == ["a", "b"]


# ----------------------------------------------------------------------------- write failures

WRITERS = [
    ("fit", ["fit", "data.csv", "-k", "2", "-o", "{out}.pkl"]),
    ("score", ["score", "m.pkl", "data.csv", "-o", "{out}.csv"]),
    ("sample", ["sample", "m.pkl", "-n", "5000", "-o", "{out}.csv"]),
]


def _args(args: list[str], out: str) -> list[str]:
    return [a.replace("{out}", out) for a in args]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod does not stop root from writing, see "
    "test_folder_refusing_temporary_files for the same path",
)
@pytest.mark.parametrize("args", [w[1] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_unwritable_folder(job, monkeypatch, args):
    monkeypatch.chdir(job)
    (job / "locked").mkdir()
    (job / "locked").chmod(0o500)
    try:
        before = snapshot(job)
        line = error_line(invoke(*_args(args, "locked/out")))
        assert "locked" in line and "not writable" in line
        assert snapshot(job) == before
    finally:
        (job / "locked").chmod(0o700)


@pytest.mark.parametrize("args", [w[1] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_folder_refusing_temporary_files(job, monkeypatch, args):
    """What an unwritable folder does to the write itself, even for root."""
    monkeypatch.chdir(job)
    (job / "locked").mkdir()
    real_open_temporary = atomic._open_temporary

    def open_temporary(folder, stem, names):
        if Path(folder).name == "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open_temporary(folder, stem, names)

    monkeypatch.setattr(atomic, "_open_temporary", open_temporary)
    before = snapshot(job)
    line = error_line(invoke(*_args(args, "locked/out")))
    assert "locked" in line and os.strerror(errno.EACCES) in line
    assert snapshot(job) == before


class _FillingHandle:
    """A file handle on a disk with ``room`` bytes left: a write beyond it fails."""

    def __init__(self, handle, room: int) -> None:
        self._handle = handle
        self._room = room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._room:
            self._handle.write(data[: self._room])
            self._handle.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def _fill_the_disk(monkeypatch, where: str) -> None:
    if where == "fsync":

        def fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", fsync)
        return
    temporary: set[int] = set()
    real_open_temporary, real_fdopen = atomic._open_temporary, os.fdopen

    def open_temporary(*a, **kw):
        fd = real_open_temporary(*a, **kw)
        temporary.add(fd)
        return fd

    def fdopen(fd, *a, **kw):
        handle = real_fdopen(fd, *a, **kw)
        return _FillingHandle(handle, room=300) if fd in temporary else handle

    monkeypatch.setattr(atomic, "_open_temporary", open_temporary)
    monkeypatch.setattr(os, "fdopen", fdopen)


@pytest.mark.parametrize("where", ["write", "fsync"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("args", [w[1] for w in WRITERS], ids=[w[0] for w in WRITERS])
def test_full_disk_leaves_nothing_half_written(job, monkeypatch, args, existing, where):
    monkeypatch.chdir(job)
    args = _args(args, "out")
    out = Path(args[-1])
    if existing:
        out.write_bytes(OLD)
    before = snapshot(job)
    _fill_the_disk(monkeypatch, where)
    line = error_line(invoke(*args))
    assert str(out) in line and os.strerror(errno.ENOSPC) in line, line
    assert snapshot(job) == before


@pytest.mark.parametrize("command", ["inspect", "evaluate", "score", "sample"])
def test_model_path_that_is_a_folder(job, monkeypatch, command):
    monkeypatch.chdir(job)
    (job / "model.pkl").mkdir()
    args = {
        "inspect": ["inspect", "model.pkl"],
        "evaluate": ["evaluate", "model.pkl", "data.csv"],
        "score": ["score", "model.pkl", "data.csv", "-o", "out.csv"],
        "sample": ["sample", "model.pkl", "-o", "out.csv"],
    }[command]
    before = snapshot(job)
    line = error_line(invoke(*args))
    assert "model.pkl" in line and "is a folder" in line
    assert snapshot(job) == before


def test_model_path_that_is_a_folder_in_a_real_process(job):
    (job / "model.pkl").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "gencli", "sample", "model.pkl", "-n", "5", "-o", "out.csv"],
        cwd=job,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "Error: model.pkl: is a folder, not a model file; pass the .pkl file\n"
    assert not (job / "out.csv").exists()


# ----------------------------------------------------------------------------- the promises


def test_every_guarantee_is_backed_by_a_test_that_exists():
    """Each promise in the README's Guarantees section names tests, and every test named exists."""
    import ast
    import re

    repo = Path(__file__).resolve().parent.parent
    text = (repo / "README.md").read_text().split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    promises = re.split(r"\n\s*- \*\*", text)[1:]
    assert len(promises) >= 12
    for promise in promises:
        assert re.search(r"tests/(?:\w+/)?\w+\.py::\w+", promise), promise[:80]
    named = set(re.findall(r"(tests/(?:\w+/)?\w+\.py)::(\w+)", text))
    defined: dict[str, set[str]] = {}
    for file, test in sorted(named):
        if file not in defined:
            tree = ast.parse((repo / file).read_text())
            defined[file] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert test in defined[file], f"{file}::{test} does not exist"
