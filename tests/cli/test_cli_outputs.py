"""Where output goes and in what form, through real processes: stdout by default, --format
honoured or refused, binary pipes both ways, --precision, --dropna and --allow-underflow on
score, broken pipes, bare `gencli`, and `wrote ...` on stderr."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gencli

GENCLI = [sys.executable, "-m", "gencli"]


def run(*args: str, input: bytes | None = None, cwd: Path | None = None):
    return subprocess.run([*GENCLI, *args], input=input, capture_output=True, cwd=cwd, timeout=120)


def one_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The run failed with ``code`` and exactly one line on stderr holding every fragment."""
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A two-column mixture model m.pkl and the 200 rows d.csv it was fitted on."""
    here = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal([0, 0], 1, (100, 2)), rng.normal([4, 5], [0.5, 2], (100, 2))])
    (here / "d.csv").write_text("a,b\n" + "".join(f"{x!r},{y!r}\n" for x, y in X.tolist()))
    gencli.fit(str(here / "d.csv"), components=2, validation=0).save(here / "m.pkl")
    return here


@pytest.fixture()
def job(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("d.csv", "m.pkl"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows_of(csv_bytes: bytes) -> np.ndarray:
    lines = csv_bytes.decode().splitlines()
    return np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def expected_scores(rows: np.ndarray) -> np.ndarray:
    return gencli.load("m.pkl").score_samples(rows)


# ----------------------------------------------------------------------------- stdout


def test_score_without_output_writes_scores_to_stdout_and_the_summary_to_stderr(job):
    result = run("score", "m.pkl", "d.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "log_density" and len(lines) == 201
    data = np.loadtxt("d.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal([float(v) for v in lines[1:]], expected_scores(data))
    err = result.stderr.decode()
    assert "nats/row" in err and "rows       200" in err
    assert "nats/row" not in result.stdout.decode()


def test_sample_piped_into_score_prints_scores(job):
    sampler = subprocess.Popen(
        [*GENCLI, "sample", "m.pkl", "-n", "5", "--seed", "4"], stdout=subprocess.PIPE
    )
    scorer = subprocess.run(
        [*GENCLI, "score", "m.pkl", "-"], stdin=sampler.stdout, capture_output=True, timeout=120
    )
    assert sampler.wait(timeout=120) == 0 and scorer.returncode == 0, scorer.stderr
    model = gencli.load("m.pkl")
    expected = model.score_samples(model.sample(5, seed=4))
    got = [float(v) for v in scorer.stdout.decode().splitlines()[1:]]
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_json_summary_goes_where_the_help_says(job):
    help_text = run("score", "--help").stdout.decode()
    assert "on stdout with -o FILE, on stderr when the scores are on stdout" in " ".join(
        help_text.split()
    )
    to_file = run("score", "m.pkl", "d.csv", "-o", "s.csv", "--json")
    assert json.loads(to_file.stdout)["rows"] == 200
    assert "wrote s.csv" in to_file.stderr.decode()
    to_stdout = run("score", "m.pkl", "d.csv", "--json")
    assert json.loads(to_stdout.stderr)["rows"] == 200
    assert to_stdout.stdout.decode().startswith("log_density\n")


def test_wrote_lines_go_to_stderr_for_every_command(job):
    results = {
        "fit": run("fit", "d.csv", "-k", "2", "-o", "f.pkl", "--report", "f.json"),
        "score": run("score", "m.pkl", "d.csv", "-o", "s.csv"),
        "sample": run("sample", "m.pkl", "-n", "3", "-o", "x.csv"),
        "evaluate": run("evaluate", "m.pkl", "d.csv", "--report", "e.json", "--permutations", "0"),
        "curse": run(
            "curse", "--dims", "1,2", "--samples", "50", "--train", "20", "--plot", "c.png"
        ),
    }
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert b"wrote" not in result.stdout, name
        assert b"wrote" in result.stderr, name
    assert b"wrote f.pkl" in results["fit"].stderr and b"wrote f.json" in results["fit"].stderr


# ----------------------------------------------------------------------------- formats


def test_sample_parquet_to_stdout_is_parquet(job):
    result = run("sample", "m.pkl", "-n", "7", "--seed", "1", "--format", "parquet")
    assert result.returncode == 0, result.stderr
    table = pq.read_table(pa.BufferReader(result.stdout))
    assert table.column_names == ["a", "b"]
    expected = gencli.load("m.pkl").sample(7, seed=1)
    np.testing.assert_array_equal(np.column_stack(list(table.to_pydict().values())), expected)


def test_npy_to_a_pipe_has_the_right_header(job):
    sampled = run("sample", "m.pkl", "-n", "70000", "--seed", "2", "--format", "npy")
    array = np.load(io.BytesIO(sampled.stdout))
    np.testing.assert_array_equal(array, gencli.load("m.pkl").sample(70000, seed=2))
    # score does not know its row count up front: the rows are spooled, then counted
    scored = run(
        "score", "m.pkl", "-", "--format", "npy", "--output-format", "npy", input=sampled.stdout
    )
    assert scored.returncode == 0, scored.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(scored.stdout))[:, 0], expected_scores(array))


def test_binary_pipes_work_both_ways(job):
    sampler = subprocess.Popen(
        [*GENCLI, "sample", "m.pkl", "-n", "9", "--seed", "5", "--format", "parquet"],
        stdout=subprocess.PIPE,
    )
    scorer = subprocess.run(
        [*GENCLI, "score", "m.pkl", "-", "--format", "parquet", "--output-format", "parquet"],
        stdin=sampler.stdout,
        capture_output=True,
        timeout=120,
    )
    assert sampler.wait(timeout=120) == 0 and scorer.returncode == 0, scorer.stderr
    scores = pq.read_table(pa.BufferReader(scorer.stdout)).column("log_density").to_pylist()
    model = gencli.load("m.pkl")
    np.testing.assert_array_equal(scores, model.score_samples(model.sample(9, seed=5)))


@pytest.mark.parametrize("command", ["sample", "score"])
@pytest.mark.parametrize("fmt", ["parquet", "npy"])
def test_binary_output_on_a_terminal_is_refused(job, command, fmt):
    flag = "--format" if command == "sample" else "--output-format"
    args = ["sample", "m.pkl"] if command == "sample" else ["score", "m.pkl", "d.csv"]
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [*GENCLI, *args, flag, fmt], stdout=terminal, stderr=subprocess.PIPE, timeout=120
        )
        os.set_blocking(controller, False)
        try:
            shown = os.read(controller, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == 1, proc.stderr
    assert b"terminal" in proc.stderr and b"Traceback" not in proc.stderr
    assert shown == b""


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "m.pkl", "-o", "out.csv", "--format", "tsv"],
        ["sample", "m.pkl", "-o", "out.parquet", "--format", "csv"],
        ["score", "m.pkl", "d.csv", "-o", "out.npy", "--output-format", "parquet"],
        ["score", "m.pkl", "d.csv", "-o", "out.tsv", "--output-format", "csv"],
    ],
)
def test_an_extension_contradicting_the_format_is_refused(job, args):
    one_error(run(*args), 2, "extension says", "--")
    assert not list(job.glob("out.*"))


def test_a_format_for_an_extension_that_does_not_say_is_honoured(job):
    assert run("sample", "m.pkl", "-n", "4", "-o", "out.txt", "--format", "tsv").returncode == 0
    assert Path("out.txt").read_text().startswith("a\tb\n")
    assert run("sample", "m.pkl", "-n", "4", "-o", "out.bin", "--format", "npy").returncode == 0
    assert np.load("out.bin").shape == (4, 2)
    one_error(run("sample", "m.pkl", "-o", "out.bin"), 1, "cannot tell the format", "--format")


# ----------------------------------------------------------------------------- precision


def test_precision_rounds_to_significant_digits(job):
    full = rows_of(run("sample", "m.pkl", "-n", "400", "--seed", "8").stdout)
    for digits in (1, 4, 9):
        text = run("sample", "m.pkl", "-n", "400", "--seed", "8", "--precision", str(digits))
        cells = [cell for line in text.stdout.decode().splitlines()[1:] for cell in line.split(",")]
        reference = [float(f"{value:.{digits - 1}e}") for value in full.ravel()]
        assert [float(cell) for cell in cells] == reference
        assert max(len(Decimal(cell).normalize().as_tuple().digits) for cell in cells) <= digits


def test_precision_on_scores_and_binary_formats(job):
    scores = run("score", "m.pkl", "d.csv", "--precision", "3").stdout.decode().splitlines()
    data = np.loadtxt("d.csv", delimiter=",", skiprows=1)
    reference = [float(f"{v:.2e}") for v in expected_scores(data)]
    assert [float(v) for v in scores[1:]] == reference
    one_error(run("sample", "m.pkl", "-o", "s.parquet", "--precision", "3"), 2, "--precision")
    one_error(run("sample", "m.pkl", "--precision", "0"), 2, "--precision")
    assert not Path("s.parquet").exists()


# ----------------------------------------------------------------------------- score rows


@pytest.fixture()
def gappy(job) -> np.ndarray:
    data = np.loadtxt("d.csv", delimiter=",", skiprows=1)[:10]
    cells = data.tolist()
    lines = ["a,b,note"] + [f"{a!r},{b!r},x" for a, b in cells]
    lines[3] = f"{cells[2][0]!r},,x"  # row 3: b missing
    lines[7] = f"inf,{cells[6][1]!r},x"  # row 7: a infinite
    lines[8] = f"{cells[7][0]!r},{cells[7][1]!r},"  # row 8: an ignored column empty: scored
    Path("gappy.csv").write_text("\n".join(lines) + "\n")
    return data


def test_score_dropna_skips_and_counts_rows_and_keeps_their_numbers(gappy):
    result = run("score", "m.pkl", "gappy.csv", "--dropna")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "row,log_density"
    rows = [int(line.split(",")[0]) for line in lines[1:]]
    assert rows == [1, 2, 4, 5, 6, 8, 9, 10]
    scores = [float(line.split(",")[1]) for line in lines[1:]]
    np.testing.assert_array_equal(scores, expected_scores(gappy[np.array(rows) - 1]))
    assert "skipped    2 rows" in result.stderr.decode()


def test_score_without_dropna_names_the_row_and_the_option(gappy):
    one_error(run("score", "m.pkl", "gappy.csv"), 1, "'b'", "row 3", "--dropna")


def test_underflow_stops_the_run_or_scores_minus_infinity_when_allowed(job):
    Path("far.csv").write_text("a,b\n1.0,2.0\n1e200,1e200\n3.0,4.0\n")
    one_error(run("score", "m.pkl", "far.csv", "-o", "s.csv"), 1, "row 2", "--allow-underflow")
    assert not Path("s.csv").exists()
    result = run("score", "m.pkl", "far.csv", "--allow-underflow", "--json", "-o", "s.csv")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # strict JSON: a mean of -inf is null
    assert summary["underflow_rows"] == 1 and summary["mean_log_likelihood"] is None
    scores = Path("s.csv").read_text().splitlines()[1:]
    assert scores[1] == "-inf"
    np.testing.assert_array_equal(
        [float(scores[0]), float(scores[2])], expected_scores(np.array([[1.0, 2.0], [3.0, 4.0]]))
    )


# ----------------------------------------------------------------------------- the shell


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "m.pkl", "-n", "2000000"],
        ["score", "m.pkl", "big.csv"],
        ["curse", "--dims", "1..300:1", "--learn-max-dim", "0", "--samples", "20", "--csv"],
    ],
    ids=["sample", "score", "curse"],
)
def test_a_reader_that_goes_away_ends_the_run_quietly(job, args):
    if "big.csv" in args:
        row = Path("d.csv").read_text().splitlines()[1]
        Path("big.csv").write_text("a,b\n" + (row + "\n") * 300_000)
    proc = subprocess.Popen(
        [*GENCLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=job
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 141), (proc.returncode, err)
    assert err == b"", err


def test_bare_gencli_prints_usage_and_exits_2():
    result = run()
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("Usage: gencli") and "Error" not in err
    assert "Commands:" in err and result.stdout == b""


def test_sample_count_beyond_int64_is_a_usage_error(job):
    one_error(run("sample", "m.pkl", "-n", str(2**63)), 2, "-n")
    assert run("sample", "m.pkl", "-n", "0").stdout == b"a,b\n"


@pytest.mark.parametrize(
    "args, kept",
    [
        (["fit", "d.csv", "-k", "2", "-o", "r.fig1.png", "--report", "r.md"], []),
        (
            ["fit", "r.fig1.png", "--format", "csv", "-k", "2", "-o", "n.pkl", "--report", "r.md"],
            ["r.fig1.png"],
        ),
        (["fit", "d.csv", "-k", "2", "-o", "r.md", "--report", "r.md"], []),
        (
            ["evaluate", "m.pkl", "r.fig2.png", "--format", "csv", "--report", "r.md"],
            ["r.fig2.png"],
        ),
        (["evaluate", "r.fig1.png", "d.csv", "--report", "r.md"], ["r.fig1.png"]),
        (["evaluate", "m.pkl", "d.csv", "--report", "sub/../m.pkl.json"], []),
    ],
    ids=[
        "model-is-figure",
        "data-is-figure",
        "model-is-report",
        "eval-data-is-figure",
        "eval-model-is-figure",
        "report-named-like-model",
    ],
)
def test_report_figures_never_replace_an_input_or_an_output(job, args, kept):
    Path("sub").mkdir()
    if "r.fig1.png" in kept and args[0] == "fit":
        Path("r.fig1.png").write_bytes(Path("d.csv").read_bytes())
    if "r.fig2.png" in kept:
        Path("r.fig2.png").write_bytes(Path("d.csv").read_bytes())
    if "r.fig1.png" in kept and args[0] == "evaluate":
        Path("r.fig1.png").write_bytes(Path("m.pkl").read_bytes())
    before = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}
    result = run(*args)
    if "report-named-like-model" in " ".join(args) or args[-1] == "sub/../m.pkl.json":
        assert result.returncode == 0, result.stderr  # a different file: allowed
        assert Path("m.pkl").read_bytes() == before["m.pkl"]
        return
    one_error(result, 1, "would be" if kept else "", "Choose")
    after = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}
    assert after == before


def test_columns_the_model_does_not_use_may_hold_text(job):
    data = np.loadtxt("d.csv", delimiter=",", skiprows=1)
    labels = pa.array([f"id-{i}" for i in range(len(data))])
    pq.write_table(pa.table({"label": labels, "b": data[:, 1], "a": data[:, 0]}), "d.parquet")
    lines = ["label,a,b"] + [f"id {i},{a!r},{b!r}" for i, (a, b) in enumerate(data.tolist())]
    lines[5] = "x," + lines[5].split(",", 1)[1].replace(lines[5].split(",")[2], "")  # b missing
    Path("t.csv").write_text("\n".join(lines) + "\n")
    scored = run("score", "m.pkl", "d.parquet")
    assert scored.returncode == 0, scored.stderr
    np.testing.assert_array_equal(rows_of(scored.stdout)[:, 0], expected_scores(data))
    assert b"ignoring columns not in the model: label" in scored.stderr
    evaluated = run("evaluate", "m.pkl", "t.csv", "--dropna", "--permutations", "0", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["rows"] == len(data) - 1 and result["dropped_rows"] == 1
    assert result["ignored_columns"] == ["label"]


# ----------------------------------------------------------------------------- second looks


@pytest.mark.parametrize(
    "shell",
    [
        "cp d.csv h.csv && {gencli} fit - -k 1 -o h.csv < h.csv",
        "cp d.csv h.csv && {gencli} score m.pkl - -o h.csv < h.csv",
        "cp d.csv h.csv && {gencli} evaluate m.pkl - --report h.json --format csv < h.json",
        "cp d.csv h.csv && {gencli} score m.pkl h.csv >> h.csv",
        "cp d.csv h.csv && {gencli} sample m.pkl -n 3 -o /dev/stdout >> h.csv",
    ],
    ids=["fit-stdin", "score-stdin", "evaluate-stdin", "stdout-appends-input", "dev-stdout"],
)
def test_stdin_and_stdout_redirected_to_an_input_are_refused(job, shell):
    command = shell.format(gencli=" ".join(GENCLI))
    if "evaluate" in command:
        command = command.replace("cp d.csv h.csv", "cp d.csv h.json")
    result = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120)
    kept = "h.json" if "evaluate" in command else "h.csv"
    if "/dev/stdout" in command:
        # not an input there: /dev/stdout appends through the shell's descriptor, as '-'
        assert result.returncode == 0, result.stderr
        text = Path("h.csv").read_text()
        assert text.startswith(Path("d.csv").read_text()) and text.count("a,b") == 2
        return
    one_error(result, 1, "input")
    assert Path(kept).read_bytes() == Path("d.csv").read_bytes()


def test_dropna_over_chunks_of_skipped_rows_writes_one_header(job):
    row = Path("d.csv").read_text().splitlines()[1]
    Path("nan.csv").write_text("a,b\n" + "nan,1.0\n" * 150_000 + (row + "\n") * 5)
    result = run("score", "m.pkl", "nan.csv", "--dropna", "-o", "nf.csv")
    assert result.returncode == 0, result.stderr
    lines = Path("nf.csv").read_text().splitlines()
    assert lines[0] == "row,log_density" and len(lines) == 6
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(150_001, 150_006))


def test_score_of_no_rows_leaves_the_old_output(job):
    Path("e.csv").write_text("precious\n")
    Path("empty.csv").write_text("a,b\n")
    Path("gone.csv").write_text("a,b\nnan,1\n,2\n")
    one_error(run("score", "m.pkl", "empty.csv", "-o", "e.csv"), 1, "no data rows")
    one_error(run("score", "m.pkl", "gone.csv", "-o", "e.csv", "--dropna"), 1, "every row")
    assert Path("e.csv").read_text() == "precious\n"


def test_precision_never_rounds_a_finite_number_to_infinity():
    from gencli.io.writers import round_significant

    values = np.array([1.7976931348623157e308, -1.79e308, 5e-324, -0.0, 123456.5])
    for digits in (1, 3, 15):
        rounded = round_significant(values, digits)
        assert np.all(np.isfinite(rounded))
        for got, value in zip(rounded.tolist(), values.tolist(), strict=True):
            assert abs(got) <= abs(value) * (1 + 10.0 ** (1 - digits)) or got == value
            assert len(Decimal(repr(got)).normalize().as_tuple().digits) <= digits


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["curse", "--dims", "1", "--samples", "50", "--learn-max-dim", "0"],
    ],
    ids=["help", "version", "curse-table"],
)
def test_output_into_a_closed_pipe_is_quiet_everywhere(job, args):
    proc = subprocess.Popen(
        [*GENCLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=job
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 141), (proc.returncode, err)
    assert err in (b"", b"\n"), err


def test_undecodable_bytes_in_a_file_name_do_not_break_reports(job):
    name = os.fsdecode(b"d\xff.csv")
    Path(name).write_bytes(Path("d.csv").read_bytes())
    for report in ("r.md", "r.html"):  # JSON escapes everything anyway
        result = run("fit", name, "-k", "1", "-o", "q.pkl", "--report", report)
        assert result.returncode == 0, result.stderr
        assert "\\udcff" in Path(report).read_text() or "\\xff" in Path(report).read_text()


def test_a_model_file_cannot_go_to_stdout(job):
    one_error(run("fit", "d.csv", "-k", "1", "-o", "-"), 1, "-o -", "file name")
    assert not Path("-").exists()
