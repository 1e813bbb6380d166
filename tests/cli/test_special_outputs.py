"""Outputs that are not plain new files, through real processes: devices (made with mknod in a
temporary folder, never the machine's own), named pipes, sockets, links, long names, a full
disk (a small tmpfs in a private mount namespace), a closed or full stdout; and stop signals
that must leave nothing behind and say truthfully what was written."""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gencli

GENCLI = [sys.executable, "-m", "gencli"]
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
needs_root = pytest.mark.skipif(not ROOT, reason="device nodes need root")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*GENCLI, *args], capture_output=True, timeout=120, **kwargs)


def one_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("Error: "), err
    assert sum(line.startswith("Error: ") for line in lines) == 1, err
    assert "Traceback" not in err and "unexpected" not in err, err
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


def temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    here = tmp_path_factory.mktemp("special")
    rng = np.random.default_rng(11)
    X = np.vstack([rng.normal([0, 0], 1, (150, 2)), rng.normal([3, 4], 0.7, (150, 2))])
    pd.DataFrame(X, columns=["a", "b"]).to_csv(here / "d.csv", index=False)
    gencli.fit(str(here / "d.csv"), components=2, validation=0).save(here / "m.pkl")
    return here


@pytest.fixture()
def job(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("d.csv", "m.pkl"):
        shutil.copy(trained / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def char_device(path: Path, minor: int) -> Path:
    """A character device node like /dev/null (minor 3) or /dev/full (minor 7)."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


WRITERS = {
    "fit": ["fit", "d.csv", "-k", "2", "-o", "{out}"],
    "fit-report": ["fit", "d.csv", "-k", "2", "-o", "m2.pkl", "--report", "{out}.json"],
    "score": ["score", "m.pkl", "d.csv", "-o", "{out}"],
    "sample": ["sample", "m.pkl", "-n", "50", "-o", "{out}"],
}


def writer_args(name: str, out: str) -> list[str]:
    return [arg.replace("{out}", out) for arg in WRITERS[name]]


# ----------------------------------------------------------------------------- devices


@needs_root
@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_null_device_is_written_in_place_and_stays_a_device(job, command):
    target = "null.json" if command == "fit-report" else "null"
    device = char_device(job / target, 3)
    out = "null" if command == "fit-report" else str(device.name)
    if command in ("score", "sample"):
        args = [*writer_args(command, out), "--format", "csv"]
    else:
        args = writer_args(command, out)
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert not temporary_files(job)


@needs_root
@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_full_device_is_one_line_and_stays_a_device(job, command):
    target = "full.json" if command == "fit-report" else "full"
    device = char_device(job / target, 7)
    args = writer_args(command, "full")
    if command in ("score", "sample"):
        args += ["--format", "csv"]
    one_error(run(*args), 1, "full", "No space left on device")
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert not temporary_files(job)


@needs_root
def test_a_block_device_is_refused_and_left_alone(job):
    os.mknod(job / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 250))
    for name in ("fit", "score", "sample"):
        one_error(
            run(*writer_args(name, "disk"), "--format", "csv")
            if name != "fit"
            else run(*writer_args(name, "disk")),
            1,
            "block device",
        )
        assert stat.S_ISBLK(os.stat(job / "disk").st_mode)


def test_a_named_pipe_with_a_reader_gets_the_rows(job):
    os.mkfifo(job / "pipe.csv")
    received: list[bytes] = []

    def read() -> None:
        with open(job / "pipe.csv", "rb") as handle:
            received.append(handle.read())

    reader = threading.Thread(target=read)
    reader.start()
    result = run("sample", "m.pkl", "-n", "20", "--seed", "3", "-o", "pipe.csv")
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(job / "pipe.csv").st_mode)
    rows = np.loadtxt(received[0].decode().splitlines()[1:], delimiter=",")
    np.testing.assert_array_equal(rows, gencli.load("m.pkl").sample(20, seed=3))


def test_a_named_pipe_without_a_reader_is_refused_at_once(job):
    os.mkfifo(job / "pipe.csv")
    started = time.monotonic()
    one_error(run("sample", "m.pkl", "-o", "pipe.csv"), 1, "pipe.csv", "no reader")
    assert time.monotonic() - started < 60
    assert stat.S_ISFIFO(os.stat(job / "pipe.csv").st_mode)


def test_a_socket_is_refused(job):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(job / "sock.csv"))
        one_error(run("sample", "m.pkl", "-o", "sock.csv"), 1, "socket")
        assert stat.S_ISSOCK(os.stat(job / "sock.csv").st_mode)


def test_dev_stdout_on_a_pipe_is_written_in_place(job):
    result = run("sample", "m.pkl", "-n", "3", "--seed", "1", "-o", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    rows = np.loadtxt(result.stdout.decode().splitlines()[1:], delimiter=",")
    np.testing.assert_array_equal(rows, gencli.load("m.pkl").sample(3, seed=1))


# ----------------------------------------------------------------------------- names


def test_a_link_to_a_file_stays_a_link_and_its_file_is_replaced(job):
    (job / "real").mkdir()
    (job / "real" / "s.csv").write_text("old\n")
    os.symlink("real/s.csv", job / "link.csv")
    os.symlink("real/new.csv", job / "dangling.csv")
    assert run("sample", "m.pkl", "-n", "2", "-o", "link.csv").returncode == 0
    assert run("sample", "m.pkl", "-n", "2", "-o", "dangling.csv").returncode == 0
    assert (job / "link.csv").is_symlink() and (job / "dangling.csv").is_symlink()
    assert (job / "real" / "s.csv").read_text().startswith("a,b\n")
    assert (job / "real" / "new.csv").read_text().startswith("a,b\n")


@pytest.mark.parametrize(
    "out, fragment",
    [("loop.csv", "symbolic links"), ("d.csv/x.csv", "Not a directory")],
    ids=["link-loop", "through-a-file"],
)
def test_impossible_output_paths_are_one_line(job, out, fragment):
    os.symlink("loop.csv", job / "loop.csv")
    before = (job / "d.csv").read_bytes()
    one_error(run("sample", "m.pkl", "-o", out, "--format", "csv"), 1, fragment)
    assert (job / "d.csv").read_bytes() == before


def test_a_name_longer_than_the_limit_is_refused_and_one_at_the_limit_works(job):
    limit = os.pathconf(job, "PC_NAME_MAX")
    too_long = "s" * (limit - 3) + ".csv"
    one_error(run("sample", "m.pkl", "-o", too_long), 1, "longer than", "shorter name")
    at_limit = "s" * (limit - 4) + ".csv"  # its temporary name must be shortened to fit
    assert run("sample", "m.pkl", "-n", "3", "-o", at_limit).returncode == 0
    assert (job / at_limit).read_text().startswith("a,b\n")
    assert not temporary_files(job)


# ----------------------------------------------------------------------------- full disk


def _in_small_tmpfs(folder: Path, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) with ``folder`` a 256 KiB tmpfs, in a private mount namespace."""
    if shutil.which("unshare") is None or not ROOT:
        pytest.skip("needs unshare and root for a private mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("private mount namespaces are not allowed here")
    command = f"mount -t tmpfs -o size=256k none {folder} && {script}"
    return subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, timeout=180)


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_full_disk_is_one_line_and_keeps_the_old_file(job, command):
    disk = job / "disk"
    disk.mkdir()
    out = "disk/out.json" if command == "fit-report" else "disk/out.csv"
    old = out.replace("disk/", "")
    args = " ".join(writer_args(command, out.removesuffix(".json")))
    python = " ".join(GENCLI)
    script = (
        f"printf 'an older output\\n' > {out} && "
        f"head -c 300000 /dev/urandom > disk/filler 2>/dev/null; "
        f"{python} {args} > stdout.txt 2> stderr.txt; echo $? > code.txt; "
        f"cat {out} > kept.txt; ls -a disk > listing.txt"
    )
    if command == "fit":
        script = script.replace("disk/out.csv", "disk/out.pkl")
        old = "out.pkl"
    proc = _in_small_tmpfs(disk, script)
    assert proc.returncode == 0, proc.stderr
    result = subprocess.CompletedProcess(
        args, int((job / "code.txt").read_text()), b"", (job / "stderr.txt").read_bytes()
    )
    one_error(result, 1, "No space left on device")
    assert (job / "kept.txt").read_text() == "an older output\n"
    listing = (job / "listing.txt").read_text().split()
    assert sorted(listing) == sorted([".", "..", "filler", old]), listing


# ----------------------------------------------------------------------------- stdout


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "m.pkl"],
        ["inspect", "m.pkl", "--json"],
        ["sample", "m.pkl", "-n", "5"],
        ["score", "m.pkl", "d.csv"],
        ["fit", "d.csv", "-k", "2", "-o", "f.pkl"],
        ["evaluate", "m.pkl", "d.csv", "--permutations", "0"],
        ["curse", "--dims", "1,2", "--samples", "50", "--learn-max-dim", "0", "--json"],
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_a_closed_stdout_is_one_line_not_silence(job, args):
    result = subprocess.run(
        [*GENCLI, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
        pass_fds=(),
        close_fds=True,
        preexec_fn=lambda: os.close(1),
    )
    one_error(result, 1, "stdout", "closed")


@needs_root
@pytest.mark.parametrize(
    "args",
    [["inspect", "m.pkl"], ["sample", "m.pkl", "-n", "20000"], ["score", "m.pkl", "d.csv"]],
    ids=lambda args: args[0],
)
def test_stdout_on_a_full_device_is_one_line(job, args):
    device = char_device(job / "full", 7)
    with open(device, "wb") as full:
        result = subprocess.run([*GENCLI, *args], stdout=full, stderr=subprocess.PIPE, timeout=120)
    one_error(result, 1, "stdout", "No space left on device")


def test_file_names_and_model_texts_never_drive_the_terminal(job):
    hostile = ["a\nverdict    sound", "b\x1b]0;owned\x07\x1b[2J", "c\u202ereversed"]
    X = pd.read_csv("d.csv").to_numpy()
    frame = pd.DataFrame(np.column_stack([X, X[:, 0] * 0.5 + X[:, 1]]), columns=hostile)
    frame.to_csv("evil.csv", index=False)
    gencli.fit(frame, components=1, validation=0).save("evil.pkl")
    frame.columns = ["a", "b", "c"]
    gencli.fit(frame, components=1, validation=0).save("plain.pkl")
    benign = run("inspect", "plain.pkl").stdout.decode().splitlines()
    results = [
        run("inspect", "evil.pkl"),
        run("fit", "evil.csv", "-k", "1", "-o", "e.pkl"),
        run("score", "evil.pkl", "d.csv"),  # refused, naming the missing columns
        run("score", "evil.pkl", "evil.csv", "-o", "s.csv"),
    ]
    for result in results:
        for text in (result.stdout.decode(), result.stderr.decode()):
            assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
    shown = results[0].stdout.decode().splitlines()
    assert len(shown) == len(benign)
    assert sum(line.startswith("verdict") for line in shown) == 1
    assert "a\\nverdict    sound" in results[0].stdout.decode()
    assert "\\x1b]0;owned\\x07" in results[0].stdout.decode()
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [*GENCLI, "sample", "evil.pkl", "-n", "1"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        time.sleep(0.2)
        os.set_blocking(controller, False)
        shown_on_terminal = os.read(controller, 65536)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == 0 and b"\x1b" not in shown_on_terminal
    assert b"\\x1b]0;owned" in shown_on_terminal


# ----------------------------------------------------------------------------- signals


def start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [*GENCLI, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("gencli did not stop")
    return proc.returncode, err.decode()


def test_sighup_cleans_up_like_sigterm(job):
    (job / "s.csv").write_text("an older output\n")
    proc = start(["sample", "m.pkl", "-n", "50000000", "-o", "s.csv"], job)
    deadline = time.monotonic() + 60
    while not temporary_files(job):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGHUP)
    code, err = finish(proc)
    assert code == 129, err
    assert err.strip().startswith("Error: hung up; no output file was written"), err
    assert (job / "s.csv").read_text() == "an older output\n"
    assert not temporary_files(job)


def test_an_interrupt_says_truthfully_what_was_written(job):
    """The model is written, then the report blocks on a named pipe nobody reads from."""
    os.mkfifo(job / "r.html")
    holder = os.open(job / "r.html", os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    try:
        proc = start(["fit", "d.csv", "-k", "2", "-o", "new.pkl", "--report", "r.html"], job)
        deadline = time.monotonic() + 90
        while not (job / "new.pkl").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.02)
        time.sleep(0.5)  # now writing the page into the full pipe
        proc.send_signal(signal.SIGINT)
        code, err = finish(proc)
    finally:
        os.close(holder)
    assert code == 130, err
    line = err.strip().splitlines()[-1]
    assert "after writing new.pkl" in line and "no output file" not in line, line
    gencli.load(job / "new.pkl")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_libraries_load_is_still_a_clean_stop(job, sig):
    expected = 130 if sig == signal.SIGINT else 143
    for delay in (0.0, 0.1, 0.3, 0.6):
        proc = start(["fit", "d.csv", "-k", "2", "-o", "late.pkl"], job)
        # From the moment numpy's library is mapped: gencli's handlers are in (they come
        # first), and the heavy imports are under way. A fixed delay from the start could
        # land in the interpreter's own start-up on a loaded machine, before gencli runs.
        deadline = time.monotonic() + 60
        while proc.poll() is None and "numpy" not in _maps(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(sig)
        code, err = finish(proc)
        assert code in (0, expected, -sig), (delay, code, err)
        assert "Traceback" not in err and "unexpected" not in err, (delay, err)
        if code != 0:
            assert not (job / "late.pkl").exists()
        with contextlib.suppress(FileNotFoundError):
            (job / "late.pkl").unlink()
        assert not temporary_files(job)


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def test_a_signal_the_caller_ignores_stays_ignored(job):
    """Under nohup (SIGHUP ignored) a hang-up must not stop the run."""
    proc = subprocess.Popen(
        [*GENCLI, "sample", "m.pkl", "-n", "400000", "-o", "s.csv"],
        cwd=job,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 60
    while not temporary_files(job) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGHUP)
    code, err = finish(proc)
    assert code == 0, err
    assert len((job / "s.csv").read_text().splitlines()) == 400001


# ----------------------------------------------------------------------------- second looks


def test_dev_stdout_is_stdout_summary_terminal_and_append_included(job):
    scored = run("score", "m.pkl", "d.csv", "-o", "/dev/stdout", "--json")
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.decode().splitlines()[0] == "log_density"
    assert b"rows" not in scored.stdout and b'"rows": 300' in scored.stderr
    controller, terminal = pty.openpty()
    try:
        name = os.ttyname(terminal)
        proc = run("sample", "m.pkl", "-n", "3", "-o", name, "--format", "npy")
    finally:
        os.close(controller)
        os.close(terminal)
    one_error(proc, 1, "terminal", "binary")


def test_two_stop_signals_in_a_row_still_clean_up(job):
    (job / "s.csv").write_text("an older output\n")
    for second in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        proc = start(["sample", "m.pkl", "-n", "50000000", "-o", "s.csv"], job)
        deadline = time.monotonic() + 60
        while not temporary_files(job):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(second)
        code, err = finish(proc)
        # The first signal wins once the process has seen it; on a loaded machine both can
        # be pending at once, and Python then handles the lower-numbered one first.
        words = {130: "interrupted", 143: "terminated", 129: "hung up"}
        assert code in (130, 128 + second), (second, code, err)
        assert err.strip().splitlines()[-1].startswith(f"Error: {words[code]}"), err
        assert "Traceback" not in err and "aborted" not in err, err
        assert (job / "s.csv").read_text() == "an older output\n"
        assert not temporary_files(job)


def test_an_error_after_an_output_was_written_says_so(job):
    disk = job / "disk"
    disk.mkdir()
    python = " ".join(GENCLI)
    script = (
        f"cd disk && cp ../d.csv d.csv && "
        f"{python} fit d.csv -k 2 -o m.pkl --report r.md 2> ../stderr.txt; echo $? > ../code.txt"
    )
    # 256 KiB less the filler and the data: room for the model (18 KB), not for a figure (60 KB)
    _in_small_tmpfs(disk, f"head -c 205000 /dev/urandom > {disk}/filler; {script}")
    result = subprocess.CompletedProcess(
        [], int((job / "code.txt").read_text()), b"", (job / "stderr.txt").read_bytes()
    )
    line = one_error(result, 1, "No space left on device")
    assert "m.pkl had been written before this" in line, line


def test_a_closed_stderr_never_sends_errors_into_the_data(job):
    with open(job / "out.csv", "wb") as out:
        result = subprocess.run(
            [*GENCLI, "score", "m.pkl", "missing.csv"],
            stdout=out,
            stderr=subprocess.DEVNULL,
            timeout=120,
            preexec_fn=lambda: os.close(2),
        )
    assert result.returncode == 1
    assert (job / "out.csv").read_bytes() == b""


def test_a_closed_stdin_is_one_line(job):
    result = subprocess.run(
        [*GENCLI, "fit", "-", "-o", "x.pkl"],
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(0),
    )
    one_error(result, 1, "<stdin>", "closed")
    assert not (job / "x.pkl").exists()


def test_a_replaced_output_keeps_its_permissions(job):
    (job / "private.csv").write_text("old\n")
    os.chmod(job / "private.csv", 0o600)
    assert run("sample", "m.pkl", "-n", "2", "-o", "private.csv").returncode == 0
    assert stat.S_IMODE(os.stat(job / "private.csv").st_mode) == 0o600
    assert (job / "private.csv").read_text().startswith("a,b\n")


@pytest.mark.parametrize("out", ["d.csv/", "new.csv/", "d.csv/.", "d.csv/.."])
def test_a_path_naming_a_folder_is_refused(job, out):
    before = (job / "d.csv").read_bytes()
    one_error(run("sample", "m.pkl", "-n", "2", "-o", out, "--format", "csv"), 1, "folder")
    assert (job / "d.csv").read_bytes() == before
    assert not (job / "new.csv").exists()


def test_curse_checks_its_plot_path_before_the_work(job):
    result = subprocess.run(
        [*GENCLI, "curse", "--dims", "1..1000", "--samples", "200000", "--plot", "no/c.png"],
        capture_output=True,
        timeout=60,
    )
    one_error(result, 1, "no/c.png", "does not exist")
