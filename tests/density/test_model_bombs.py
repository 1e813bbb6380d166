"""Model files that cannot hurt the loader or ``inspect``.

A few hundred bytes of pickle can declare a terabyte array, a view of 8 bytes with zero
strides, a dtype that claims to hold Python objects, a structure of shared references that
unfolds into 4**30 nodes, hash-colliding keys or nesting a million deep; and a model path can
be a FIFO or /dev/zero. Each case runs ``gencli`` in a real process under an address-space
limit and a timeout and must end with exit status 1 and exactly one line on stderr (an
``Error:`` line naming the file and what is wrong: no traceback, nothing printed by numpy)
and no output file. The crafted files are assembled opcode by opcode below; the controls
check that the same assembler, used honestly, writes what numpy writes and loads.
"""

from __future__ import annotations

import ctypes
import io
import os
import pickle
import resource
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import gencli
from gencli.density import modelfile
from gencli.errors import GencliError, ModelFileError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux rlimits")

ADDRESS_SPACE = 1 << 30  # gencli needs under 400 MB for these commands; a bomb needs more
TIMEOUT = 60  # seconds for a whole process; a refusal takes well under one past start-up
PLACEHOLDER = "PLACEHOLDER-7f3a9c"

# ----------------------------------------------------------------------------- an assembler
# Protocol 2-3 opcodes, no memo unless asked for: a snippet can replace a placeholder inside
# a real model file (pickled with protocol 3, which has no frames whose sizes would change).

TRUE, FALSE, NONE = b"\x88", b"\x89", b"N"
CORE = "numpy._core.multiarray" if np.__version__ >= "2" else "numpy.core.multiarray"
NUMERIC = "numpy._core.numeric" if np.__version__ >= "2" else "numpy.core.numeric"


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_int(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(data)) + data  # LONG4


def op_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def op_bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def op_list(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"l"


def op_call(func: bytes, *args: bytes) -> bytes:
    return func + op_tuple(*args) + b"R"


def op_build(target: bytes, state: bytes) -> bytes:
    return target + state + b"b"


def op_put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)  # LONG_BINPUT


def op_get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)


def dtype_state(order: str = "<", flags: int = 0, *, middle: bytes | None = None) -> bytes:
    """numpy's dtype state (3, order, subarray, names, fields, elsize, alignment, flags)."""
    middle = NONE + NONE + NONE + op_int(-1) + op_int(-1) if middle is None else middle
    return op_tuple(op_int(3), op_str(order), middle, op_int(flags))


def op_dtype(code: str = "f8", state: bytes | None = None) -> bytes:
    made = op_call(op_global("numpy", "dtype"), op_str(code), FALSE, TRUE)
    return op_build(made, dtype_state() if state is None else state)


def op_array(shape: tuple[int, ...], data: bytes, dtype: bytes | None = None) -> bytes:
    """An array exactly as numpy pickles one: _reconstruct(ndarray, (0,), b'b'), then BUILD."""
    shell = op_call(
        op_global(CORE, "_reconstruct"), op_global("numpy", "ndarray"), op_tuple(op_int(0)),
        op_bytes(b"b"),
    )  # fmt: skip
    state = op_tuple(
        op_int(1), op_tuple(*map(op_int, shape)), dtype or op_dtype(), FALSE, op_bytes(data)
    )
    return op_build(shell, state)


def dag(depth: int, width: int, leaf: bytes, kind: str = "list") -> Callable[[int], bytes]:
    """Level k holds level k-1 ``width`` times, by memo reference: a few bytes per level,
    ``width ** depth`` references in all. Pushes the top level only; memoizes from ``base``
    on (see :func:`with_snippet`)."""
    return lambda base: _dag(depth, width, leaf, kind, base)


def _dag(depth: int, width: int, leaf: bytes, kind: str, base: int) -> bytes:
    out = leaf + op_put(base)
    for level in range(1, depth + 1):
        refs = [op_get(base + level - 1)] * width
        if kind == "list":
            made = op_list(*refs)
        else:  # a dict of width keys
            made = b"(" + b"".join(op_str(f"k{j}") + ref for j, ref in enumerate(refs)) + b"d"
        out += b"0" + made + op_put(base + level)  # POP the level below (kept in the memo)
    return out


# ----------------------------------------------------------------------------- model files


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def plain() -> dict[str, dict]:
    """The plain dictionaries of the committed model files `gencli fit` wrote: a Gaussian
    KDE and a one-component full-covariance mixture over columns height and weight (our
    own files, so the trusting pickle.loads is safe here)."""
    return {
        family: pickle.loads((FIXTURES / f"model_v1_{family}.pkl").read_bytes())
        for family in ("kde", "gmm")
    }


def with_snippet(
    plain_model: dict, where: tuple[str, ...], snippet: bytes | Callable[[int], bytes]
) -> bytes:
    """The model file with the field at ``where`` replaced by the value ``snippet`` pushes.

    A snippet that memoizes is given the first memo index the file had not used yet at that
    point (the file's own later entries overwrite its ones, which it never reads again).
    """
    changed = pickle.loads(pickle.dumps(plain_model))  # a deep copy (our own data)
    target = changed
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = PLACEHOLDER
    payload = pickle.dumps(changed, protocol=3)
    marker = op_str(PLACEHOLDER)
    assert payload.count(marker) == 1
    if callable(snippet):
        after = payload[payload.index(marker) + len(marker) :]
        assert after[:1] in (b"q", b"r")  # the file memoizes the placeholder next
        free = after[1] if after[:1] == b"q" else struct.unpack("<I", after[1:5])[0]
        snippet = snippet(free)
    return payload.replace(marker, snippet)


def limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


COMMANDS = {
    "inspect": ["inspect", "{model}"],
    "sample": ["sample", "{model}", "-n", "5", "-o", "out.csv"],
    "sample-stdout": ["sample", "{model}", "-n", "5"],
    "score": ["score", "{model}", "rows.csv", "-o", "out.csv"],
}
ROWS = "height,weight\n170.1,60.2\n181.5,73.0\n"


class Run(NamedTuple):
    returncode: int | None  # None: still running at the timeout, so killed
    stdout: str
    stderr: str
    folder: Path
    files_before: set[str]


def run_all(jobs: dict[str, tuple[Path, list[str], dict[str, str]]], at_once: int = 3) -> dict:
    """Run ``gencli`` once per job (folder, arguments, extra environment), a few at a time,
    each in a real process with 1 GiB of address space; a process still running at the
    timeout is killed by its handle."""
    waiting, running, done = list(jobs.items()), {}, {}
    while waiting or running:
        while waiting and len(running) < at_once:
            name, (folder, args, env) = waiting.pop(0)
            files_before = set(os.listdir(folder))
            logs = folder.parent / f"{folder.name}.log"
            out, err = open(f"{logs}.out", "w+"), open(f"{logs}.err", "w+")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "gencli", *args],
                cwd=folder,
                stdout=out,
                stderr=err,
                preexec_fn=limit_address_space,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **env},
            )
            deadline = time.monotonic() + TIMEOUT
            running[name] = (proc, out, err, folder, files_before, deadline)
        for name, (proc, out, err, folder, files_before, deadline) in list(running.items()):
            finished = proc.poll() is not None
            if not finished and time.monotonic() < deadline:
                continue
            if not finished:
                proc.kill()
            proc.wait()
            out.seek(0)
            err.seek(0)
            code = proc.returncode if finished else None
            done[name] = Run(code, out.read(), err.read(), folder, files_before)
            out.close()
            err.close()
            del running[name]
        time.sleep(0.01)
    return done


def assert_refused(run: Run, model: str, fragments: list[str]) -> str:
    """Exit 1, stderr exactly one ``Error:`` line holding the model's name and every
    fragment (so numpy printed nothing and there is no traceback), stdout empty, and no
    file written or left behind."""
    assert run.returncode is not None, f"still running after {TIMEOUT} s: {run.stderr[-500:]}"
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr[-2000:]
    assert run.stdout == ""
    assert set(os.listdir(run.folder)) == run.files_before
    for fragment in [model, *fragments]:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- controls


def test_the_assembler_writes_what_numpy_writes() -> None:
    values = np.arange(6.0).reshape(2, 3)
    snippet = op_array((2, 3), values.tobytes())
    # Our own, benign bytes: the trusting unpickler shows what numpy makes of them.
    np.testing.assert_array_equal(pickle.loads(b"\x80\x03" + snippet + b"."), values)
    swapped = op_array((2, 3), values.astype(">f8").tobytes(), op_dtype("f8", dtype_state(">")))
    np.testing.assert_array_equal(pickle.loads(b"\x80\x03" + swapped + b"."), values)


@pytest.mark.parametrize("order", ["<", ">", "=", "|"])
def test_honest_assembled_arrays_load_with_their_values(plain, order, tmp_path) -> None:
    points = plain["kde"]["params"]["points"]
    dtype = {"<": "<f8", ">": ">f8", "=": "=f8", "|": "=f8"}[order]
    raw = points.astype(dtype).tobytes()
    snippet = op_array(points.shape, raw, op_dtype("f8", dtype_state(order)))
    (tmp_path / "m.pkl").write_bytes(with_snippet(plain["kde"], ("params", "points"), snippet))
    loaded = gencli.load(tmp_path / "m.pkl")
    np.testing.assert_array_equal(loaded.params["points"], points)
    assert loaded.params["points"].flags.writeable
    assert np.all(np.isfinite(loaded.score_samples(points[:5] * loaded.scale + loaded.shift)))


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("layout", ["C", "F", "big-endian"])
def test_arrays_pickled_by_numpy_in_any_protocol_and_layout_load(plain, protocol, layout):
    """Protocols 3-4 pickle arrays with _reconstruct, 5 with _frombuffer over a bytearray;
    a Fortran-ordered array keeps its layout, a big-endian one its byte order."""
    points = plain["kde"]["params"]["points"]
    stored = {
        "C": points,
        "F": np.asfortranarray(points),
        "big-endian": points.astype(">f8"),
    }[layout]
    changed = pickle.loads(pickle.dumps(plain["kde"]))
    changed["params"]["points"] = stored
    loaded = modelfile.loads(pickle.dumps(changed, protocol=protocol), "m.pkl")
    np.testing.assert_array_equal(loaded.params["points"], points)
    assert loaded.params["points"].dtype == stored.dtype
    assert loaded.params["points"].flags.f_contiguous == (layout == "F")


@pytest.mark.parametrize(
    "kernel", ["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]
)
def test_kde_files_of_every_kernel_load_with_their_points(tmp_path, kernel) -> None:
    """What `gencli fit` saves, for every kernel (mixtures of every covariance type:
    tests/density/test_modelfile.py): the loaded points are the saved ones, bit for bit."""
    points = np.random.default_rng(8).normal(size=(40, 3))
    params = {"kernel": kernel, "bandwidth": 0.4, "bandwidth_rule": None, "points": points}
    model = gencli.DensityModel("kde", params, ["a", "b", "c"], np.zeros(3), np.ones(3))
    model.save(tmp_path / "m.pkl")
    loaded = gencli.load(tmp_path / "m.pkl")
    np.testing.assert_array_equal(loaded.params["points"], points)
    assert loaded.params["kernel"] == kernel and loaded.params["bandwidth"] == 0.4


# ----------------------------------------------------------------------------- array bombs

GIANT = (10**9, 2)  # 16 GB of float64
ARRAY_BOMBS = {
    # numpy.ndarray(shape): an uninitialised array of any size, straight from the file.
    "uninitialised": (
        ("params", "points"),
        op_call(op_global("numpy", "ndarray"), op_tuple(*map(op_int, GIANT))),
        ["refused", "numpy.ndarray directly"],
    ),
    # numpy.ndarray(shape, dtype, buffer=8 bytes, offset 0, strides (0, 0)): a zero-stride view.
    "zero-stride": (
        ("params", "points"),
        op_call(
            op_global("numpy", "ndarray"),
            op_tuple(*map(op_int, GIANT)),
            op_dtype(),
            op_bytes(bytes(8)),
            op_int(0),
            op_tuple(op_int(0), op_int(0)),
        ),
        ["refused", "numpy.ndarray directly"],
    ),
    # numpy's own _frombuffer with a shape its 8 bytes cannot fill.
    "frombuffer-shape": (
        ("params", "covariances"),
        op_call(
            op_global(NUMERIC, "_frombuffer"),
            b"\x96" + struct.pack("<Q", 8) + bytes(8),
            op_dtype(),
            op_tuple(op_int(2), op_int(2), op_int(10**9)),
            op_str("C"),
        ),
        ["refused", "(2, 2, 1000000000)", "holds 8 bytes"],
    ),
    # numpy's own array state, claiming a giant shape over 16 bytes.
    "state-too-short": (
        ("params", "points"),
        op_array(GIANT, bytes(16)),
        ["refused", "(1000000000, 2)", "holds 16 bytes"],
    ),
    "state-too-long": (
        ("params", "means"),
        op_array((2, 2), bytes(800)),
        ["refused", "(2, 2)", "holds 800 bytes"],
    ),
    # Shapes that are not sizes.
    "negative-shape": (
        ("params", "points"),
        op_array((-1, 2), bytes(16)),
        ["refused", "shape is not a tuple of sizes"],
    ),
    "huge-dimension": (
        ("params", "points"),
        op_array((2**64, 0), b""),
        ["refused", "shape is not a tuple of sizes"],
    ),
    # Two arrays over the same bytes (the memo shares them): each must have its own.
    "shared-bytes": (
        ("params", "points"),
        lambda base: op_list(
            op_bytes(bytes(64)) + op_put(base) + b"0",
            op_array((4, 2), bytes(64)).replace(op_bytes(bytes(64)), op_get(base)),
            op_array((4, 2), bytes(64)).replace(op_bytes(bytes(64)), op_get(base)),
        ),
        ["refused", "same bytes"],
    ),
}


@pytest.mark.parametrize("case", sorted(ARRAY_BOMBS))
def test_array_bombs_are_refused_by_the_loader(plain, case) -> None:
    where, snippet, fragments = ARRAY_BOMBS[case]
    family = "kde" if where[1] == "points" else "gmm"
    payload = with_snippet(plain[family], where, snippet)
    with pytest.raises(ModelFileError) as info:
        modelfile.loads(payload, "bomb.pkl")
    for fragment in ["bomb.pkl", *fragments]:
        assert fragment in str(info.value)


# ----------------------------------------------------------------------------- dtype states

SUBARRAY = op_tuple(op_dtype(), op_tuple(op_int(2))) + NONE + NONE + op_int(16) + op_int(8)
FIELDS = (
    NONE
    + op_tuple(op_str("a"))
    + b"(" + op_str("a") + op_tuple(op_dtype(), op_int(0)) + b"d"
    + op_int(8) + op_int(1)
)  # fmt: skip
DTYPE_BOMBS = {
    "object-flags": (op_dtype("f8", dtype_state(flags=1)), ["refused", "object flags"]),
    "hasobject-flags": (op_dtype("f8", dtype_state(flags=63)), ["refused", "object flags"]),
    "subarray-state": (op_dtype("f8", dtype_state("|", middle=SUBARRAY)), ["refused", "subarray"]),
    "fields-state": (op_dtype("f8", dtype_state("|", middle=FIELDS)), ["refused", "field names"]),
    "object-code": (op_dtype("O", dtype_state("|")), ["refused", "dtype 'O'"]),
    "structured-code": (op_dtype("V16", dtype_state("|", middle=FIELDS)), ["refused", "'V16'"]),
    "item-size": (
        op_dtype("f8", dtype_state(middle=NONE * 3 + op_int(4) + op_int(-1))),
        ["refused", "item size"],
    ),
    "bad-byte-order": (op_dtype("f8", dtype_state("?")), ["refused", "byte order"]),
    "state-twice": (op_build(op_dtype("f8"), dtype_state()), ["refused", "state set twice"]),
}


@pytest.mark.parametrize("case", sorted(DTYPE_BOMBS))
def test_dtype_states_that_are_not_plain_numbers_are_refused(plain, case) -> None:
    dtype, fragments = DTYPE_BOMBS[case]
    means = plain["gmm"]["params"]["means"]
    snippet = op_array(means.shape, means.tobytes(), dtype)
    payload = with_snippet(plain["gmm"], ("params", "means"), snippet)
    with pytest.raises(ModelFileError) as info:
        modelfile.loads(payload, "dtype.pkl")
    for fragment in ["dtype.pkl", *fragments]:
        assert fragment in str(info.value)


# ----------------------------------------------------------------------------- shared references

DAG_FRAGMENTS = ["refused", "same nested data over and over"]
DAGS = {
    "lists-30x4": dag(30, 4, op_str("x")),
    "lists-12x50": dag(12, 50, op_int(1)),
    "dicts-30x4": dag(30, 4, NONE, kind="dict"),
    "arrays-30x4": dag(30, 4, op_array((2, 2), bytes(32))),
    "lists-30x3-deep": dag(30, 3, op_list()),
}


@pytest.mark.parametrize("case", sorted(DAGS))
def test_shared_reference_dags_are_refused_by_load(plain, case) -> None:
    payload = with_snippet(plain["kde"], ("metadata", "notes"), DAGS[case])
    with pytest.raises(ModelFileError) as info:
        modelfile.loads(payload, "dag.pkl")
    for fragment in ["dag.pkl", *DAG_FRAGMENTS]:
        assert fragment in str(info.value)
    report = gencli_inspect_report(payload)
    assert report["sound"] is False and "over and over" in report["problems"][0]


def gencli_inspect_report(payload: bytes) -> dict:
    from gencli.density.modelinfo import inspect_model

    Path("dag.pkl").write_bytes(payload)
    return inspect_model("dag.pkl")


DAG_LOAD_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import gencli
from gencli.errors import ModelFileError
try:
    gencli.load(sys.argv[1])
except ModelFileError as exc:
    print("refused:", exc)
"""


def test_a_dag_of_shared_arrays_is_refused_by_gencli_load_in_a_process(plain, tmp_path) -> None:
    payload = with_snippet(plain["kde"], ("metadata", "notes"), DAGS["arrays-30x4"])
    (tmp_path / "dag.pkl").write_bytes(payload)
    proc = subprocess.run(
        [sys.executable, "-c", DAG_LOAD_CHILD.format(limit=ADDRESS_SPACE), "dag.pkl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert proc.stdout.startswith("refused: dag.pkl: refused: it refers to the same nested")


# ----------------------------------------------------------------------------- other bombs


def nested_lists(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


def colliding_ints(n: int) -> list[int]:
    """Integers with equal hashes (Python hashes ints modulo 2**61 - 1): each insertion into
    a dict or set compares with every one before it."""
    modulus = (1 << 61) - 1
    assert len({hash(k * modulus) for k in range(1, 4)}) == 1
    return [k * modulus for k in range(1, n + 1)]


# Each makes its snippet when asked: some take a moment to build.
OTHER_BOMBS = {
    "nested-50k": (lambda: nested_lists(50_000), ["nested more than 32 levels"]),
    "nested-300k": (
        lambda: nested_lists(300_000),  # 600,000 operations
        ["refused", "more than 500,000 pickle operations"],
    ),
    "colliding-dict-keys": (
        lambda: b"(" + b"".join(op_int(k) + NONE for k in colliding_ints(50_000)) + b"d",
        ["refused", "dictionary key of type int"],
    ),
    "colliding-set": (
        lambda: b"\x8f(" + b"".join(op_int(k) for k in colliding_ints(50_000)) + b"\x90",
        ["refused", "holds a set"],
    ),
    "huge-integer": (lambda: op_int(1 << 8_000_000), ["integer of 8000001 bits"]),
    "bytearray-of-a-terabyte": (
        lambda: b"\x96" + struct.pack("<Q", 1 << 40) + bytes(8),
        ["truncated"],
    ),
    "frombuffer-object-dtype": (
        lambda: op_call(
            op_global(NUMERIC, "_frombuffer"),
            op_bytes(bytes(8)),
            op_dtype("O", dtype_state("|")),
            op_tuple(op_int(1)),
            op_str("C"),
        ),
        ["refused", "dtype 'O'"],
    ),
}


@pytest.mark.parametrize("case", sorted(set(OTHER_BOMBS) - {"nested-300k"}))  # see CLI_CASES
def test_other_bombs_are_refused_by_the_loader(plain, case) -> None:
    make, fragments = OTHER_BOMBS[case]
    payload = with_snippet(plain["kde"], ("metadata", "notes"), make())
    with pytest.raises(GencliError) as info:
        modelfile.loads(payload, "bomb.pkl")
    for fragment in ["bomb.pkl", *fragments]:
        assert fragment in str(info.value)


# ----------------------------------------------------------------------------- declared shapes


@pytest.mark.parametrize(
    ("family", "key", "value", "fragment"),
    [
        ("kde", "points", np.zeros((3, 5)), "not (points, 2) for its 2 columns"),
        ("kde", "points", np.zeros((0, 2)), "shape (0, 2)"),
        ("kde", "points", np.zeros((3, 2), dtype=np.complex128), "'c16'"),
        ("kde", "bandwidth", float("inf"), "bandwidth"),
        ("kde", "bandwidth", -0.5, "bandwidth"),
        ("kde", "bandwidth_rule", 3, "how its bandwidth was chosen"),
        ("gmm", "means", np.zeros((2, 7)), "not (components, 2) for its 2 columns"),
        ("gmm", "weights", np.full(500, 1 / 500), "inconsistent shapes"),
        ("gmm", "covariances", np.zeros((2, 2)), "inconsistent shapes"),
        ("gmm", "n_iter", -3, "n_iter"),
        ("gmm", "converged", "yes", "converged"),
        ("gmm", "reg_covar", float("nan"), "reg_covar"),
    ],
)
def test_parameters_are_checked_against_the_declared_shapes(plain, family, key, value, fragment):
    changed = pickle.loads(pickle.dumps(plain[family]))
    changed["params"][key] = value
    with pytest.raises(ModelFileError) as info:
        modelfile.loads(pickle.dumps(changed, protocol=4), "shape.pkl")
    assert fragment in str(info.value) and str(info.value).startswith("shape.pkl: ")


# ----------------------------------------------------------------------------- special files


def make_special(folder: Path, kind: str) -> str | None:
    """A path of the given kind in ``folder``: the name to pass to gencli (None: cannot)."""
    path = folder / f"{kind}.pkl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    elif kind == "dev-null":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    elif kind == "block-device":
        try:
            os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))
        except PermissionError:
            return None  # not allowed to make device nodes here
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    elif kind == "symlink-loop":
        os.symlink(f"{kind}.other", path)
        os.symlink(path.name, folder / f"{kind}.other")
    elif kind == "through-a-file":
        (folder / "plain.txt").write_text("a file, not a folder\n")
        return "plain.txt/model.pkl"
    return path.name


SPECIAL = {
    "fifo": ("inspect", ["is not a regular file (a named pipe (FIFO))", "gencli fit"]),
    "dev-zero": ("sample", ["is not a regular file (a character device)"]),
    "dev-null": ("score", ["is not a regular file (a character device)"]),
    "block-device": ("inspect", ["is not a regular file (a block device)"]),
    "socket": ("sample", ["is not a regular file (a socket)"]),
    # Not with -o: the output check resolves every path first (jobs.check_output, not ours).
    "symlink-loop": ("sample-stdout", ["cannot read: Too many levels of symbolic links"]),
    "through-a-file": ("inspect", ["cannot read: Not a directory", "is a file, not a folder"]),
}


# A FIFO would block and /dev/zero would never end if they were read: only in a process.
@pytest.mark.parametrize("kind", sorted(set(SPECIAL) - {"fifo", "dev-zero"}))
def test_special_model_paths_are_refused_by_load_and_inspect(tmp_path, kind) -> None:
    from gencli.density.modelinfo import inspect_model

    made = make_special(tmp_path, kind)
    if made is None:
        pytest.skip(f"cannot make a {kind} here")
    name = str(tmp_path / made)
    with pytest.raises(ModelFileError) as info:
        gencli.load(name)
    assert str(info.value).startswith(f"{name}: ") and SPECIAL[kind][1][0] in str(info.value)
    report = inspect_model(name)
    assert report["sound"] is False and SPECIAL[kind][1][0] in report["problems"][0]


def drop_file_permission_override() -> None:
    """As root, give up CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH for the child (bounding set),
    so that a file's mode bits apply to it; then the usual address-space limit."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(97)
    limit_address_space()


UNREADABLE_CHILD = """
import sys
import gencli
from gencli.errors import ModelFileError
from gencli.density.modelinfo import inspect_model
try:
    gencli.load("locked.pkl")
except ModelFileError as exc:
    print(exc)
print(inspect_model("locked.pkl")["problems"][0])
"""


def test_an_unreadable_model_file_says_permission_denied(plain, tmp_path) -> None:
    """In a process that, even as root, is bound by the file's mode bits. (The command line
    refuses it earlier: click's Path type checks readability, exit 2.)"""
    path = tmp_path / "locked.pkl"
    path.write_bytes(pickle.dumps(plain["kde"], protocol=4))
    path.chmod(0)
    proc = subprocess.run(
        [sys.executable, "-c", UNREADABLE_CHILD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=drop_file_permission_override if os.geteuid() == 0 else limit_address_space,
    )
    if proc.returncode == 97:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here, and root reads any file")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "locked.pkl: cannot read: Permission denied; check the file's permissions",
        "cannot read: Permission denied; check the file's permissions",
    ]


# ----------------------------------------------------------------------------- the command line
# Every kind of bad model file once through a real ``gencli`` process, a few side by side.

Maker = Callable[[dict, Path], "str | None"]


Snippet = bytes | Callable[[int], bytes]


def crafted(family: str, where: tuple[str, ...], snippet: Callable[[dict], Snippet]) -> Maker:
    """A maker of bomb.pkl: the family's real file with the field at ``where`` crafted."""

    def make(plain: dict, folder: Path) -> str:
        payload = with_snippet(plain[family], where, snippet(plain))
        (folder / "bomb.pkl").write_bytes(payload)
        return "bomb.pkl"

    return make


def with_means_dtype(dtype: bytes) -> Callable[[dict], bytes]:
    """The mixture's own means, pickled as numpy does but with this dtype."""

    def snippet(plain: dict) -> bytes:
        means = plain["gmm"]["params"]["means"]
        return op_array(means.shape, means.tobytes(), dtype)

    return snippet


def array_bomb(case: str) -> Maker:
    where, snippet, _ = ARRAY_BOMBS[case]
    return crafted("kde" if where[1] == "points" else "gmm", where, lambda plain: snippet)


def many_small_objects(plain: dict, folder: Path) -> str:
    """200,000 empty dictionaries: 13 MB of memory from 200 kB of file."""
    snippet = op_list(*[b"}"] * 200_000)
    (folder / "many.pkl").write_bytes(with_snippet(plain["kde"], ("metadata", "n"), snippet))
    return "many.pkl"


def sparse_file(plain: dict, folder: Path) -> str:
    with open(folder / "big.pkl", "wb") as handle:
        handle.truncate(64 << 20)  # 64 MiB that take no disk: refused before a byte is read
    return "big.pkl"


NOTES = ("metadata", "notes")
CLI_CASES: dict[str, tuple[Maker, str, list[str], dict[str, str]]] = {
    **{
        f"array-{case}-{command}": (array_bomb(case), command, ARRAY_BOMBS[case][2], {})
        for case, command in [
            ("uninitialised", "sample"),
            ("zero-stride", "score"),
            ("frombuffer-shape", "inspect"),
            ("state-too-short", "score"),
        ]
    },
    **{
        f"dtype-{case}-{command}": (
            crafted("gmm", ("params", "means"), with_means_dtype(DTYPE_BOMBS[case][0])),
            command,
            DTYPE_BOMBS[case][1],
            {},
        )
        for case, command in [
            ("object-flags", "sample"),
            ("hasobject-flags", "inspect"),
            ("subarray-state", "score"),
        ]
    },
    **{
        f"dag-{case}-{command}": (
            crafted("gmm", NOTES, lambda plain, case=case: DAGS[case]),
            command,
            DAG_FRAGMENTS,
            {},
        )
        for case, command in [
            ("lists-30x4", "inspect"),
            ("lists-30x4", "sample"),
            ("lists-30x4", "score"),
            ("dicts-30x4", "inspect"),
            ("arrays-30x4", "score"),
            ("lists-12x50", "sample"),
        ]
    },
    **{
        f"other-{case}-{command}": (
            crafted("kde", NOTES, lambda plain, case=case: OTHER_BOMBS[case][0]()),
            command,
            OTHER_BOMBS[case][1],
            {},
        )
        for case, command in [
            ("nested-300k", "sample"),
            ("colliding-dict-keys", "inspect"),
            ("huge-integer", "score"),
        ]
    },
    "memory-many-small-objects-inspect": (
        many_small_objects,
        "inspect",
        ["GENCLI_MEMORY_LIMIT=8M", "pickle operations so far"],
        {"GENCLI_MEMORY_LIMIT": "8M"},
    ),
    "memory-file-over-budget-sample": (
        sparse_file,
        "sample",
        ["reading this model file (64 MB)", "GENCLI_MEMORY_LIMIT=100M"],
        {"GENCLI_MEMORY_LIMIT": "100M"},
    ),
    **{
        f"special-{kind}-{SPECIAL[kind][0]}": (
            lambda plain, folder, kind=kind: make_special(folder, kind),
            SPECIAL[kind][0],
            SPECIAL[kind][1],
            {},
        )
        for kind in SPECIAL
    },
}


@pytest.fixture(scope="module")
def cli_runs(plain, tmp_path_factory) -> dict[str, tuple[Run, str] | None]:
    """Every case of :data:`CLI_CASES` run once (None: its file cannot be made here)."""
    jobs, models = {}, {}
    for name, (make, command, _, env) in CLI_CASES.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "rows.csv").write_text(ROWS)
        model = make(plain, folder)
        if model is not None:
            jobs[name] = (folder, [part.format(model=model) for part in COMMANDS[command]], env)
            models[name] = model
    runs = run_all(jobs)
    return {name: (runs[name], models[name]) if name in runs else None for name in CLI_CASES}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_the_command_line_refuses_in_one_line(cli_runs, case) -> None:
    if cli_runs[case] is None:
        pytest.skip(f"cannot make the file for {case} here")
    run, model = cli_runs[case]
    assert_refused(run, model, CLI_CASES[case][2])


class PiecesOf7(io.RawIOBase):
    """A file that hands out at most 7 bytes per read, as a single read() of more than
    2 GiB does on Linux (and some network file systems do for far less)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, size: int = -1) -> bytes:
        piece = self.data[self.at : self.at + min(size, 7)]
        self.at += len(piece)
        return piece


@pytest.mark.parametrize("size", [0, 6, 7, 8, 50])
def test_a_model_file_that_comes_in_pieces_is_read_whole(size) -> None:
    data = bytes(range(size))
    assert modelfile._read_at_most(PiecesOf7(data), size + 1) == data
    assert modelfile._read_at_most(PiecesOf7(data + b"more"), size + 1) == (data + b"m")
