"""Every bad input a user can give the command line: exit code, one clear line, no leftovers.

Each case checks that
- the exit code is 1 for a bad data / model / output file and 2 for a bad flag,
- stderr has exactly one line starting with ``Error: `` that names the file or option and
  says what to do, and there is no traceback,
- nothing in the working folder changed: no output file, no temporary file, and an output
  file that existed before still holds its old bytes (inputs too).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner, Result
from helpers import snapshot

import gencli
from gencli.cli.main import cli
from gencli.density.fileformat import FORMAT_VERSION

OLD_BYTES = b"old output, must survive\n"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


# ----------------------------------------------------------------------------- helpers


def csv_text(columns: list[str], values: np.ndarray) -> str:
    rows = "".join(",".join(repr(v) for v in row) + "\n" for row in values.tolist())
    return ",".join(columns) + "\n" + rows


def invoke(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def error_line(result: Result, exit_code: int) -> str:
    """Check the shape of a failure and return its one ``Error:`` line."""
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    # An exception that escaped the boundary would show up here, not as SystemExit.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_fails(
    args: list[str],
    exit_code: int,
    fragments: list[str],
    *,
    input: bytes | None = None,
) -> str:
    """Run a failing command; check code, message fragments and that nothing changed."""
    before = snapshot()
    result = invoke(*args, input=input)
    line = error_line(result, exit_code)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert snapshot() == before
    return line


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """Real models fitted once on 200 rows of seeded normal data (columns a, b)."""
    folder = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(20240611)
    values = rng.normal(size=(200, 2)) * [1.0, 3.0] + [0.5, -2.0]
    data = folder / "train.csv"
    data.write_text(csv_text(["a", "b"], values))
    runner = CliRunner()
    for name, extra in [("gmm.pkl", ["-k", "2"]), ("kde.pkl", ["--model", "kde"])]:
        result = runner.invoke(cli, ["fit", str(data), "-o", str(folder / name), "-q", *extra])
        assert result.exit_code == 0, result.output
    return SimpleNamespace(
        values=values,
        csv=data.read_bytes(),
        gmm=(folder / "gmm.pkl").read_bytes(),
        kde=(folder / "kde.pkl").read_bytes(),
    )


@pytest.fixture
def model(trained) -> str:
    Path("m.pkl").write_bytes(trained.gmm)
    Path("data.csv").write_bytes(trained.csv)
    return "m.pkl"


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _random_bytes(n: int, seed: int = 3) -> bytes:
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


GOOD = csv_text(["a", "b"], np.random.default_rng(1).normal(size=(30, 2))).encode()


# ----------------------------------------------------------------------------- fit: bad data

# (case id, file name, bytes or None, extra args, message fragments)
FIT_DATA_ERRORS = [
    ("missing", "missing.csv", None, [], ["missing.csv", "no such file", "check the path"]),
    ("empty", "empty.csv", b"", [], ["empty.csv", "empty"]),
    ("header-only", "head.csv", b"a,b\n", [], ["head.csv", "no data rows"]),
    (
        "ragged",
        "ragged.csv",
        b"a,b\n1,2\n3,4\n5,6,7\n8,9\n",
        [],
        ["ragged.csv", "line 4", "fix or remove"],
    ),
    ("binary", "junk.csv", _random_bytes(3000) + b"\x00", [], ["junk.csv", "binary"]),
    ("not-utf8", "latin.csv", "höhe,b\n1,2\n3,4\n".encode("latin-1"), [], ["latin.csv", "UTF-8"]),
    ("3d-npy", "cube.npy", _npy(np.zeros((4, 3, 2))), [], ["cube.npy", "3-D", "reshape"]),
    ("string-npy", "words.npy", _npy(np.array([["a", "b"]] * 3)), [], ["words.npy", "numeric"]),
    (
        "object-npy",
        "objs.npy",
        _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
        [],
        ["objs.npy"],
    ),
    (
        "non-numeric",
        "mixed.csv",
        b"a,name,b\n1,x,2\n3,y,4\n5,z,7\n",
        [],
        ["mixed.csv", "'name'", "--columns a,b"],
    ),
    (
        "nan-cells",
        "gaps.csv",
        b"a,b\n1,2\n3,\n5,6\n7,nan\n9,1\n",
        [],
        ["gaps.csv", "'b'", "row 2, 4", "--dropna"],
    ),
    ("inf-cells", "inf.csv", b"a,b\n1,2\ninf,3\n4,5\n", [], ["inf.csv", "'a'", "row 2"]),
    (
        "constant",
        "const.csv",
        b"a,c\n1,5\n2,5\n3,5\n4,5\n",
        [],
        ["const.csv", "'c'", "constant", "--columns"],
    ),
    ("one-row", "one.csv", b"a,b\n1,2\n", [], ["one.csv", "2 rows"]),
    ("unknown-column", "data.csv", GOOD, ["--columns", "a,zz"], ["data.csv", "'zz'", "a, b"]),
    ("unknown-ext", "data.dat", GOOD, [], ["data.dat", ".dat", "--format"]),
    ("csv-as-npy", "data.csv", GOOD, ["--format", "npy"], ["data.csv", "NPY", "--format"]),
    ("npy-as-csv", "arr.csv", _npy(np.ones((5, 2))), [], ["arr.csv", "--format npy"]),
    ("csv-as-parquet", "t.parquet", GOOD, [], ["t.parquet", "Parquet"]),
]


@pytest.mark.parametrize("existing_output", [False, True], ids=["no-output", "old-output"])
@pytest.mark.parametrize(
    ("name", "content", "extra", "fragments"),
    [case[1:] for case in FIT_DATA_ERRORS],
    ids=[case[0] for case in FIT_DATA_ERRORS],
)
def test_fit_bad_data(name, content, extra, fragments, existing_output):
    if content is not None:
        Path(name).write_bytes(content)
    if existing_output:
        Path("out.pkl").write_bytes(OLD_BYTES)
    assert_fails(["fit", name, "-o", "out.pkl", *extra], 1, fragments)


def test_fit_bad_data_default_output_not_created():
    Path("gaps.csv").write_bytes(b"a,b\n1,2\n3,\n")
    assert_fails(["fit", "gaps.csv"], 1, ["gaps.csv", "'b'"])
    assert not Path("model.pkl").exists()


def test_fit_folder_with_extension():
    Path("data.csv").mkdir()
    assert_fails(["fit", "data.csv", "-o", "out.pkl"], 1, ["data.csv", "is a folder"])


def test_fit_folder_without_extension():
    Path("measurements").mkdir()
    assert_fails(["fit", "measurements", "-o", "out.pkl"], 1, ["measurements", "is a folder"])


@pytest.mark.parametrize(
    ("stdin", "fragments"),
    [
        (b"", ["<stdin>", "empty"]),
        (b"\x00\x01junk\x00", ["<stdin>", "binary"]),
        (b"a,b\n1,2\n3\n", ["<stdin>", "line 3"]),
    ],
)
def test_fit_bad_stdin(stdin, fragments):
    assert_fails(["fit", "-", "-o", "out.pkl"], 1, fragments, input=stdin)


def test_fit_dropna_succeeds_and_says_how_many_rows():
    Path("gaps.csv").write_bytes(GOOD + b"3,\n,4\ninf,1\n")
    result = invoke("fit", "gaps.csv", "-o", "out.pkl", "--dropna")
    assert result.exit_code == 0, result.output
    assert "dropped 3 rows" in result.stderr
    assert "Error" not in result.output
    assert gencli.load("out.pkl").metadata["rows"] == 30


@pytest.mark.parametrize(
    ("content", "k", "fragments"),
    [
        (b"a,b\n1,2\n3,4\n5,7\n", "5", ["few.csv", "5", "3"]),
        (b"a,b\n1,2\n1,2\n1,2\n5,6\n", "3", ["few.csv", "distinct", "2"]),
    ],
    ids=["rows", "distinct-rows"],
)
def test_fit_too_few_rows_for_components(content, k, fragments):
    Path("few.csv").write_bytes(content)
    assert_fails(["fit", "few.csv", "-k", k, "-o", "out.pkl"], 1, [*fragments, "--components"])


def test_fit_too_few_rows_for_components_exit_and_advice():
    """The part of the -k check that works today: exit 1, one line, the flag to change."""
    Path("few.csv").write_bytes(b"a,b\n1,2\n3,4\n5,7\n")
    line = assert_fails(["fit", "few.csv", "-k", "5", "-o", "out.pkl"], 1, ["--components"])
    assert "5" in line and "3" in line


# ----------------------------------------------------------------------------- fit: bad flags

# (case id, extra args, fragments); every one must exit 2 before reading anything.
FIT_BAD_FLAGS = [
    ("k-zero", ["-k", "0"], ["--components", "at least 1"]),
    ("k-text", ["-k", "two"], ["--components", "two"]),
    ("covariance", ["--covariance", "bogus"], ["--covariance", "bogus", "full"]),
    ("bandwidth-negative", ["--model", "kde", "--bandwidth", "-1"], ["--bandwidth", "positive"]),
    ("bandwidth-zero", ["--model", "kde", "--bandwidth", "0"], ["--bandwidth", "positive"]),
    ("bandwidth-nan", ["--model", "kde", "--bandwidth", "nan"], ["--bandwidth", "positive"]),
    ("bandwidth-word", ["--model", "kde", "--bandwidth", "foo"], ["--bandwidth", "foo", "scott"]),
    ("bandwidth-word-gmm", ["--bandwidth", "foo"], ["--bandwidth", "foo"]),
    ("kernel", ["--model", "kde", "--kernel", "bogus"], ["--kernel", "bogus", "gaussian"]),
    ("model", ["--model", "bogus"], ["--model", "bogus", "gmm"]),
    ("kde-with-k", ["--model", "kde", "-k", "3"], ["--components", "--model kde"]),
    ("kde-with-covariance", ["--model", "kde", "--covariance", "diag"], ["--covariance"]),
    ("gmm-with-kernel", ["--model", "gmm", "--kernel", "tophat"], ["--kernel", "--model gmm"]),
    (
        "gmm-with-bandwidth",
        ["--model", "gmm", "--bandwidth", "0.5"],
        ["--bandwidth", "--model gmm"],
    ),
    ("auto-with-both", ["-k", "2", "--bandwidth", "0.5"], ["--components", "--bandwidth"]),
    ("tol-zero", ["--tol", "0"], ["--tol"]),
    ("reg-covar-negative", ["--reg-covar", "-1"], ["--reg-covar"]),
    ("max-iter-zero", ["--max-iter", "0"], ["--max-iter"]),
    ("n-init-zero", ["--n-init", "0"], ["--n-init"]),
    ("format", ["--format", "xlsx"], ["--format", "xlsx"]),
    ("seed-text", ["--seed", "abc"], ["--seed", "abc"]),
    ("unknown-option", ["--frobnicate"], ["--frobnicate"]),
]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [case[1:] for case in FIT_BAD_FLAGS],
    ids=[case[0] for case in FIT_BAD_FLAGS],
)
def test_fit_bad_flag(extra, fragments):
    Path("data.csv").write_bytes(GOOD)
    Path("out.pkl").write_bytes(OLD_BYTES)
    assert_fails(["fit", "data.csv", "-o", "out.pkl", *extra], 2, fragments)


def test_fit_bad_flag_writes_no_default_model():
    Path("data.csv").write_bytes(GOOD)
    assert_fails(["fit", "data.csv", "-k", "0"], 2, ["--components"])
    assert not Path("model.pkl").exists()


def test_fit_missing_argument():
    assert_fails(["fit"], 2, ["DATA"])


@pytest.mark.parametrize("spec", ["a,,b", "a,a"])
def test_fit_malformed_columns_is_a_usage_error(spec):
    Path("data.csv").write_bytes(GOOD)
    assert_fails(["fit", "data.csv", "-o", "out.pkl", "--columns", spec], 2, ["--columns"])


@pytest.mark.parametrize("spec", ["a,,b", "a,a"])
def test_fit_malformed_columns_is_refused(spec):
    """Whatever the exit code, the flag is named and nothing is written."""
    Path("data.csv").write_bytes(GOOD)
    before = snapshot()
    result = invoke("fit", "data.csv", "-o", "out.pkl", "--columns", spec)
    assert result.exit_code in (1, 2)
    line = error_line(result, result.exit_code)
    assert "--columns" in line
    assert snapshot() == before


@pytest.mark.parametrize(
    ("command", "seed"), [("fit", "-1"), ("fit", str(2**40)), ("sample", "-1")]
)
def test_out_of_range_seed_is_a_usage_error(model, command, seed):
    args = (
        ["fit", "data.csv", "-o", "out.pkl", "--seed", seed]
        if command == "fit"
        else ["sample", model, "-n", "3", "-o", "out.csv", "--seed", seed]
    )
    assert_fails(args, 2, ["--seed"])


# ----------------------------------------------------------------------------- bad model files


def _newer_version(gmm_bytes: bytes) -> bytes:
    plain = pickle.loads(gmm_bytes)
    assert plain["format_version"] == 1
    plain["format_version"] = FORMAT_VERSION + 1
    return pickle.dumps(plain, protocol=4)


def _with_family(gmm_bytes: bytes, family: str) -> bytes:
    plain = pickle.loads(gmm_bytes)
    plain["family"] = family
    return pickle.dumps(plain, protocol=4)


# (case id, how to make the model file from the real one, fragments); None: not created.
BAD_MODELS = [
    ("missing", None, ["no such model file", "gencli fit"]),
    ("csv-as-model", lambda good, csv: csv, ["not a gencli model file", "gencli fit"]),
    ("random-bytes", lambda good, csv: _random_bytes(500), ["not a gencli model file"]),
    ("empty", lambda good, csv: b"", ["empty"]),
    ("truncated-half", lambda good, csv: good[: len(good) // 2], ["truncated", "refit"]),
    ("truncated-end", lambda good, csv: good[:-1], ["truncated", "refit"]),
    ("truncated-start", lambda good, csv: good[:40], ["refit"]),
    ("newer-version", lambda good, csv: _newer_version(good), ["newer gencli", "upgrade"]),
    ("foreign-pickle", lambda good, csv: pickle.dumps({"weights": [1.0]}), ["not one written"]),
    ("npy-as-model", lambda good, csv: _npy(np.ones((2, 2))), ["not a gencli model file"]),
]


@pytest.mark.parametrize("command", ["score", "sample"])
@pytest.mark.parametrize(
    ("make", "fragments"),
    [case[1:] for case in BAD_MODELS],
    ids=[case[0] for case in BAD_MODELS],
)
def test_bad_model_file(trained, command, make, fragments):
    Path("data.csv").write_bytes(trained.csv)
    if make is not None:
        Path("bad.pkl").write_bytes(make(trained.gmm, trained.csv))
    Path("out.csv").write_bytes(OLD_BYTES)
    args = (
        ["score", "bad.pkl", "data.csv", "-o", "out.csv"]
        if command == "score"
        else ["sample", "bad.pkl", "-n", "5", "-o", "out.csv"]
    )
    assert_fails(args, 1, ["bad.pkl", *fragments])


@pytest.mark.parametrize("command", ["score", "sample"])
def test_folder_as_model(trained, command):
    Path("data.csv").write_bytes(trained.csv)
    Path("models.pkl").mkdir()
    Path("plain").mkdir()
    args = ["score", "data.csv"] if command == "score" else ["sample", "-n", "5"]
    for name in ("models.pkl", "plain"):
        full = [args[0], name, *args[1:], "-o", "out.csv"]
        assert_fails(full, 1, [name, "is a folder"])


@pytest.mark.parametrize("command", ["score", "sample"])
def test_model_with_unknown_family_names_the_file(trained, command):
    Path("data.csv").write_bytes(trained.csv)
    Path("odd.pkl").write_bytes(_with_family(trained.gmm, "bogus"))
    args = (
        ["score", "odd.pkl", "data.csv", "-o", "out.csv"]
        if command == "score"
        else ["sample", "odd.pkl", "-n", "5", "-o", "out.csv"]
    )
    assert_fails(args, 1, ["odd.pkl", "bogus"])


class _RunsShell:
    """Unpickling this calls os.system: a model file that tries to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("command", ["score", "sample"])
def test_crafted_pickle_never_runs(tmp_path, trained, command):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(marker))
    Path("evil.pkl").write_bytes(payload)
    Path("data.csv").write_bytes(trained.csv)
    args = (
        ["score", "evil.pkl", "data.csv", "-o", "out.csv"]
        if command == "score"
        else ["sample", "evil.pkl", "-n", "5", "-o", "out.csv"]
    )
    assert_fails(args, 1, ["evil.pkl", "refused", "system"])
    assert not marker.exists()
    # The payload is live: a plain pickle.loads would have run it.
    pickle.loads(payload)
    assert marker.exists()


def _flag_dtypes_as_holding_objects(model_bytes: bytes) -> bytes:
    """Set the float64 dtype's pickled flags to 1 (NPY_ITEM_HASOBJECT): still kind 'f'."""
    # np.dtype state: (3, '<', None, None, None, elsize, alignment, flags)
    pattern = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    assert model_bytes.count(pattern) == 1
    return model_bytes.replace(pattern, b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x01t")


def test_model_with_tampered_dtype_flags_is_refused(tmp_path, trained):
    # A real process: a dtype that lies about holding objects is not safe in this one.
    Path("tampered.pkl").write_bytes(_flag_dtypes_as_holding_objects(trained.gmm))
    before = snapshot()
    proc = subprocess.run(
        [sys.executable, "-m", "gencli", "sample", "tampered.pkl", "-n", "3", "-o", "out.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "tampered.pkl" in errors[0]
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- score: bad data


def test_score_missing_model_column(model):
    Path("other.csv").write_bytes(b"a,c\n1,2\n3,4\n")
    assert_fails(["score", model, "other.csv", "-o", "out.csv"], 1, ["other.csv", "'b'", "a, b"])


def test_score_different_column_count_by_position(model):
    Path("three.npy").write_bytes(_npy(np.random.default_rng(2).normal(size=(6, 3))))
    assert_fails(["score", model, "three.npy", "-o", "out.csv"], 1, ["three.npy", "3 columns", "2"])


def test_score_headerless_csv_with_wrong_width(model):
    Path("wide.csv").write_bytes(b"1,2,3\n4,5,6\n")
    assert_fails(["score", model, "wide.csv", "-o", "out.csv"], 1, ["wide.csv", "3 columns"])


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("missing.csv", None, ["missing.csv", "no such file"]),
        ("empty.csv", b"", ["empty.csv", "empty"]),
        ("ragged.csv", b"a,b\n1,2\n3\n", ["ragged.csv", "line 3"]),
        ("junk.csv", _random_bytes(800, seed=9) + b"\x00", ["junk.csv", "binary"]),
        ("cube.npy", _npy(np.zeros((2, 2, 2))), ["cube.npy", "3-D"]),
        ("words.csv", b"a,b\n1,x\n2,y\n", ["words.csv", "'b'"]),
        ("data.dat", b"a,b\n1,2\n", ["data.dat", "--format"]),
    ],
)
def test_score_bad_data(model, name, content, fragments):
    if content is not None:
        Path(name).write_bytes(content)
    Path("out.csv").write_bytes(OLD_BYTES)
    assert_fails(["score", model, name, "-o", "out.csv"], 1, fragments)


def test_score_nan_cells_name_column_and_row(model):
    Path("gaps.csv").write_bytes(b"a,b\n1,2\n3,\n5,6\n")
    assert_fails(["score", model, "gaps.csv", "-o", "out.csv"], 1, ["gaps.csv", "'b'", "row 2"])


def test_score_nan_advice_is_an_option_that_exists(model):
    Path("gaps.csv").write_bytes(b"a,b\n1,2\n3,\n5,6\n")
    line = assert_fails(["score", model, "gaps.csv", "-o", "out.csv"], 1, ["gaps.csv"])
    if "--dropna" in line:
        result = invoke("score", model, "gaps.csv", "-o", "out.csv", "--dropna")
        assert result.exit_code == 0, result.output


def test_score_extra_columns_work_with_a_note(model, trained):
    rows = trained.values[:4]
    extra = np.column_stack([rows[:, 1], np.arange(4.0), rows[:, 0]])
    Path("extra.csv").write_text(csv_text(["b", "zz", "a"], extra))
    result = invoke("score", model, "extra.csv", "-o", "scores.csv")
    assert result.exit_code == 0, result.output
    note = [line for line in result.stderr.splitlines() if "zz" in line]
    assert len(note) == 1 and note[0].startswith("note:")
    assert "Error" not in result.output
    written = np.loadtxt("scores.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(written, gencli.load(model).score_samples(rows), rtol=1e-12)


# ----------------------------------------------------------------------------- sample: bad flags


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["-n", "-1"], ["--num-samples", "-1"]),
        (["-n", "many"], ["--num-samples", "many"]),
        (["--format", "xlsx"], ["--format", "xlsx"]),
        (["--seed", "x"], ["--seed"]),
    ],
)
def test_sample_bad_flag(model, extra, fragments):
    Path("out.csv").write_bytes(OLD_BYTES)
    assert_fails(["sample", model, "-o", "out.csv", *extra], 2, fragments)


def test_sample_bad_flag_writes_nothing_to_stdout(model):
    result = invoke("sample", model, "-n", "-1")
    error_line(result, 2)


# ----------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "data.csv", "-o", "nofolder/out.pkl"],
        ["sample", "m.pkl", "-n", "5", "-o", "nofolder/out.csv"],
        ["score", "m.pkl", "data.csv", "-o", "nofolder/out.csv"],
    ],
    ids=["fit", "sample", "score"],
)
def test_output_in_missing_folder(model, args):
    line = assert_fails(args, 1, ["nofolder", "does not exist"])
    assert "create it" in line
    assert not Path("nofolder").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "m.pkl", "-o", "m.pkl"],
        ["fit", "data.csv", "-o", "data.csv"],
        ["fit", "./data.csv", "-o", "data.csv"],
        ["score", "m.pkl", "data.csv", "-o", "data.csv"],
        ["score", "m.pkl", "data.csv", "-o", "m.pkl"],
    ],
    ids=["sample-model", "fit-data", "fit-data-dotslash", "score-data", "score-model"],
)
def test_output_equal_to_input_is_refused(model, args):
    assert_fails(args, 1, [args[-1], "input", "another output path"])


def test_output_symlink_to_input_is_refused(model):
    os.symlink("data.csv", "link.csv")
    assert_fails(["fit", "data.csv", "-o", "link.csv"], 1, ["link.csv", "input"])


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "m.pkl", "-n", "5", "-o", "out.xyz"],
        ["score", "m.pkl", "data.csv", "-o", "out.xyz"],
    ],
    ids=["sample", "score"],
)
def test_output_unknown_extension(model, args):
    assert_fails(args, 1, ["out.xyz", "--format"])


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "data.csv", "-o", "outdir"],
        ["sample", "m.pkl", "-o", "outdir"],
        ["score", "m.pkl", "data.csv", "-o", "outdir"],
    ],
    ids=["fit", "sample", "score"],
)
def test_output_is_a_folder(model, args):
    Path("outdir").mkdir()
    before = snapshot()
    result = invoke(*args)
    # click.Path(dir_okay=False) makes this a usage error; gencli's own check exits 1.
    line = error_line(result, result.exit_code)
    assert result.exit_code in (1, 2)
    assert "outdir" in line
    assert snapshot() == before


# ----------------------------------------------------------------------------- --debug


def test_debug_shows_a_traceback_for_a_data_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gencli", "--debug", "fit", "missing.csv", "-o", "out.pkl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "DataError" in proc.stderr
    assert "missing.csv" in proc.stderr
    assert not (tmp_path / "out.pkl").exists()


def test_without_debug_the_real_command_prints_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gencli", "fit", "missing.csv", "-o", "out.pkl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "missing.csv" in lines[0]


def test_debug_after_the_command_name_also_raises(tmp_path):
    result = CliRunner().invoke(cli, ["fit", "--debug", "missing.csv", "-o", "out.pkl"])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "DataError"
    assert "missing.csv" in str(result.exception)
    assert not (tmp_path / "out.pkl").exists()
