"""Resource bombs and memory limits: wide tables, integer grids, ``ulimit -v``, big curses.

Each runs in a real process under an address-space limit (``RLIMIT_AS`` set in
``preexec_fn``) and a timeout, so a run that grows past its bound fails instead of taking
the machine; signals go to the process by its handle. Numbers are checked against direct
sums computed here.
"""

from __future__ import annotations

import contextlib
import math
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import gencli
from gencli.curse import run as curse
from gencli.density.families.kernels import log_kernel_norm
from gencli.errors import FitError, ResourceError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's"
)
GB = 1 << 30
RNG = np.random.default_rng(11)


def address_limit(limit: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return set_limit


def start(args: list[str], limit: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gencli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=address_limit(limit),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for ``proc``; kill it (by its handle) and fail if it overruns."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{proc.args} did not end within {timeout} s")
    return proc.returncode, err


def one_line(err: str) -> str:
    assert "Traceback" not in err and "Warning" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def wait_until_loaded(proc: subprocess.Popen[str], library: str, timeout: float = 30) -> None:
    """Return once ``proc`` has mapped ``library`` (its imports are done)."""
    deadline = time.monotonic() + timeout
    maps = Path(f"/proc/{proc.pid}/maps")
    while True:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(OSError):
            if library in maps.read_text():
                return
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{library} was not loaded within {timeout} s")
        time.sleep(0.02)


def direct_kde(model: gencli.DensityModel, Q: np.ndarray) -> np.ndarray:
    """A Gaussian or Epanechnikov KDE's log-density at Q, every kernel summed."""
    points, h = model.params["points"], model.params["bandwidth"]
    kernel, d = model.params["kernel"], points.shape[1]
    Z = (Q - model.shift) / model.scale
    u2 = np.zeros((Z.shape[0], points.shape[0]))
    for j in range(d):
        u2 += ((Z[:, j, None] - points[None, :, j]) / h) ** 2
    if kernel == "gaussian":
        log_sums = logsumexp(-0.5 * u2, axis=1)
    else:
        with np.errstate(divide="ignore"):
            log_sums = np.log(np.sum(np.where(u2 < 1, 1 - u2, 0.0), axis=1))
    normalizer = log_kernel_norm(kernel, d) + d * math.log(h) + math.log(points.shape[0])
    return log_sums - normalizer - np.sum(np.log(model.scale))


def assert_close_densities(got: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    assert np.array_equal(np.isfinite(got), np.isfinite(expected))
    finite = np.isfinite(expected)
    assert np.max(np.abs(np.expm1(got[finite] - expected[finite]))) <= rtol


# ----------------------------------------------------------------------------- wide tables


def test_wide_table_default_fit_refuses_at_once_in_bounded_memory():
    # 10,000 columns x 30 rows: the BIC search fitted ten full 10,000 x 10,000
    # covariances (past 120 s and 7.2 GB); a full covariance needs more rows than columns.
    np.save("wide.npy", RNG.normal(size=(30, 10_000)))
    code, err = finish(start(["fit", "wide.npy", "--model", "gmm", "-o", "m.pkl"], 2 * GB))
    assert code == 1
    line = one_line(err)
    assert "10000 columns" in line and "24 training rows" in line, line
    assert "--covariance diag" in line and "--model kde" in line, line
    assert not Path("m.pkl").exists()
    # The default (--model auto) leaves those covariances out, says so, and fits the rest
    # within the same 2 GB.
    code, err = finish(start(["fit", "wide.npy", "-o", "m.pkl"], 2 * GB))
    assert code == 0, err
    assert "full and tied covariances were left out" in err
    assert gencli.load("m.pkl").n_features == 10_000


def test_wide_tables_fit_what_can_be_estimated():
    X = RNG.normal(size=(30, 1000))
    with pytest.raises(FitError, match="full covariance over 1000 columns"):
        gencli.fit(X, "gmm")
    searched = gencli.fit(X, "gmm", covariance="auto", components="1..2")
    assert "full and tied covariances were left out" in " ".join(searched.metadata["warnings"])
    assert {c["covariance"] for c in searched.metadata["selection"]["candidates"]} == {
        "diag",
        "spherical",
    }
    # One diagonal Gaussian: the product of per-column normals, reg_covar x var added.
    diag = gencli.fit(X, "gmm", components=1, covariance="diag", validation=0.0)
    var = X.var(axis=0) * (1 + 1e-6)
    expected = stats.norm(X.mean(axis=0), np.sqrt(var)).logpdf(X[:5]).sum(axis=1)
    np.testing.assert_allclose(diag.score_samples(X[:5]), expected, rtol=1e-9)
    kde = gencli.fit(X, "kde", validation=0.0)
    assert_close_densities(kde.score_samples(X[:5]), direct_kde(kde, X[:5]), 1e-9)


def test_a_mixture_search_too_big_for_memory_is_refused_before_it_starts(monkeypatch):
    monkeypatch.setenv("GENCLI_MEMORY_LIMIT", "8M")
    with pytest.raises(ResourceError) as info:
        gencli.fit(RNG.normal(size=(600, 300)), "gmm")
    message = str(info.value)
    for fragment in ("1..10 components", "600 rows x 300 columns", "GENCLI_MEMORY_LIMIT=8M"):
        assert fragment in message, message
    assert "covariance='diag'" in message


# ----------------------------------------------------------------------------- integer grids


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_repeated_rows_score_like_a_direct_sum(d, kernel):
    X = RNG.integers(0, 6, size=(6000, d)).astype(float)
    Q = np.vstack([RNG.integers(-2, 8, size=(900, d)).astype(float), RNG.normal(2, 3, (100, d))])
    model = gencli.fit(X, "kde", kernel=kernel, validation=0.0)
    expected = direct_kde(model, Q[::5])
    for mode in ["fast", "exact"] + (["approx"] if d <= 2 and kernel == "gaussian" else []):
        rtol = 1e-3 if mode == "approx" else 1e-6
        assert_close_densities(model.score_samples(Q, mode=mode)[::5], expected, rtol)


def test_scoring_300k_grid_rows_stays_in_bounded_memory():
    # Before: 13.5 GB and 65 s (pair blocks searched at their widest row's radius).
    train = RNG.normal(size=(2000, 2))
    gencli.fit(train, "kde", validation=0.0).save("m.pkl")
    rows = RNG.integers(0, 10, size=(300_000, 2)).astype(float)
    np.save("grid.npy", rows)
    code, err = finish(start(["score", "m.pkl", "grid.npy", "-o", "s.npy", "-q"], 2 * GB))
    assert code == 0, err
    model = gencli.load("m.pkl")
    got = np.load("s.npy")
    got = got["log_density"] if got.dtype.names else got.reshape(-1)
    picks = RNG.choice(len(rows), 400, replace=False)
    assert_close_densities(got[picks], direct_kde(model, rows[picks]), 1e-6)


def test_fitting_a_kde_to_a_grid_ends_in_bounded_time_and_memory():
    # Before: 675 s for 300k rows of a 10 x 10 grid, 85 s to score 30k rows of this one
    # (every repeat summed again).
    rows = RNG.integers(0, 10, size=(30_000, 3)).astype(float)
    np.save("grid.npy", rows)
    code, err = finish(start(["fit", "grid.npy", "--model", "kde", "-o", "m.pkl", "-q"], 2 * GB))
    assert code == 0, err
    model = gencli.load("m.pkl")
    picks = RNG.choice(len(rows), 200, replace=False)
    assert_close_densities(model.score_samples(rows[picks]), direct_kde(model, rows[picks]), 1e-6)


# ----------------------------------------------------------------------------- ulimit -v


@pytest.fixture()
def small_data() -> Path:
    np.savetxt("d.csv", RNG.normal(size=(300, 2)), delimiter=",", header="a,b", comments="")
    return Path("d.csv")


@pytest.mark.parametrize("limit_kb", [450_000, 600_000])
def test_fits_under_an_address_space_limit_finish_or_say_which_limit(small_data, limit_kb):
    # Under ulimit -v 600000 `fit --model kde --bandwidth cv` spun for ever (OpenBLAS
    # retrying an allocation with the GIL held); a GMM search froze the same way.
    runs = [
        start(
            ["fit", "d.csv", "--model", "kde", "--bandwidth", "cv", "-o", "k.pkl"], limit_kb << 10
        ),
        start(["fit", "d.csv", "-k", "2", "-o", "g.pkl"], limit_kb << 10),
    ]
    for proc, output in zip(runs, ["k.pkl", "g.pkl"], strict=True):
        code, err = finish(proc)
        if code == 0:
            assert "Traceback" not in err
            assert gencli.load(output).n_features == 2
        else:
            assert code == 1
            line = one_line(err)
            assert "address-space limit (ulimit -v)" in line, line
            assert not Path(output).exists()


def test_sigterm_ends_fits_under_an_address_space_limit():
    np.savetxt("d.csv", RNG.normal(size=(6000, 2)), delimiter=",", header="a,b", comments="")
    runs = {
        "k.pkl": (["--model", "kde", "--bandwidth", "cv"], "ckdtree"),
        "g.pkl": (["--covariance", "auto"], "_k_means_lloyd"),
    }
    procs = {
        out: start(["fit", "d.csv", *args, "-q", "-o", out], 700_000 << 10)
        for out, (args, _) in runs.items()
    }
    for out, (_, library) in runs.items():
        wait_until_loaded(procs[out], library)  # imports done: into the search
    time.sleep(0.3)
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for out, proc in procs.items():
        code, err = finish(proc, timeout=15)
        assert code == 143, err
        assert "terminated" in one_line(err)
        assert not Path(out).exists()


def test_running_out_of_memory_is_one_line_not_an_unexpected_error(monkeypatch):
    # The budget is lifted so that nothing is refused up front: the allocation itself
    # fails under RLIMIT_AS (8 GB of training draws), and MemoryError used to end in
    # "unexpected MemoryError ...; report it".
    monkeypatch.setenv("GENCLI_MEMORY_LIMIT", "100G")
    args = ["curse", "--dims", "10", "--train", "100000000", "--samples", "100", "-q"]
    code, err = finish(start(args, GB))
    assert code == 1
    line = one_line(err)
    assert "ran out of memory while" in line and "--train" in line, line
    assert "unexpected" not in line


# ----------------------------------------------------------------------------- curse


def test_curse_with_two_billion_samples_runs_in_flat_memory():
    # Before: chisquare(size=2e9) asked for 16 GB at once, then two more arrays of it.
    args = ["curse", "--dims", "1000", "--samples", "2000000000", "--learn-max-dim", "0", "-q"]
    proc = start([*args, "--json"], GB)
    wait_until_loaded(proc, "scipy/stats")  # past the imports: drawing
    time.sleep(1.0)
    try:
        assert proc.poll() is None, proc.communicate()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kb = int(status.split("VmRSS:")[1].split()[0])
        assert rss_kb < 400_000, status
    finally:
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc, timeout=15)
    assert code == 143, err


def test_curse_figures_do_not_depend_on_the_block_size(monkeypatch):
    whole = curse._mc_norms(7, 5000, np.random.default_rng(3))
    gap = curse.heldout_gap(3, 200, 5000, np.random.default_rng(4), curse._gencli_fitter, "gmm", 0)
    monkeypatch.setattr(curse, "MC_BLOCK", 999)
    blocks = curse._mc_norms(7, 5000, np.random.default_rng(3))
    assert blocks["mass_within_unit_ball_mc"] == whole["mass_within_unit_ball_mc"]
    for key in ("norm_mean_mc", "norm_std_mc"):
        assert blocks[key] == pytest.approx(whole[key], rel=1e-13)
    in_blocks = curse.heldout_gap(
        3, 200, 5000, np.random.default_rng(4), curse._gencli_fitter, "gmm", 0
    )
    assert in_blocks == pytest.approx(gap, rel=1e-12)
    # And the figures themselves: chi(7) has mean sqrt(2) Gamma(4) / Gamma(3.5).
    exact = math.sqrt(2) * math.gamma(4) / math.gamma(3.5)
    assert whole["norm_mean_mc"] == pytest.approx(exact, rel=0.01)


def test_curse_refuses_a_training_set_that_cannot_fit_in_memory(monkeypatch):
    monkeypatch.setenv("GENCLI_MEMORY_LIMIT", "1M")
    with pytest.raises(ResourceError, match=r"a smaller train or learn_max_dim"):
        curse.run_curse([40], samples=100, train=100_000, learn_max_dim=64)
