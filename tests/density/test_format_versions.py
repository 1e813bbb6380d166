"""Model format versions: every committed fixture of every version loads and scores right,
and a file from a newer gencli is refused with a request to upgrade.

The fixtures in tests/fixtures were written by tests/fixtures/make_fixtures.py, one pair
(a one-component Gaussian mixture and a Gaussian KDE, fitted on the same 50 rows) per
format version. Their scores are checked against densities computed here from the raw
parameters in the file: scipy's multivariate normal for the mixture and a direct sum of
Gaussian kernels for the KDE. A version-3 file's bounded columns are taken through their
log or logit transform here, with its Jacobian written out.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import gencli
from gencli.cli.main import cli
from gencli.density import modelfile
from gencli.errors import ModelFileError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAME = re.compile(r"model_v(\d+)_(gmm|kde)\.pkl")
FILES = sorted(FIXTURES.glob("model_v*_*.pkl"))


def raw(path: Path) -> dict:
    """The plain dictionary in a committed fixture (our own file, so pickle.loads is safe)."""
    return pickle.loads(path.read_bytes())


def training_rows(kde_plain: dict) -> np.ndarray:
    """The rows both fixtures of a version were fitted on, in data units, from the KDE."""
    Y = kernel_centres(kde_plain)
    for j, name in enumerate(kde_plain["columns"]):
        if name in kde_plain.get("bounds", {}):
            lo, hi = kde_plain["bounds"][name]
            if lo is not None and hi is not None:
                Y[:, j] = lo + (hi - lo) / (1 + np.exp(-Y[:, j]))
            elif lo is not None:
                Y[:, j] = lo + np.exp(Y[:, j])
            else:
                Y[:, j] = hi - np.exp(-Y[:, j])
    return Y


def kernel_centres(kde_plain: dict) -> np.ndarray:
    """The KDE's points unstandardized: in data units, or a bounded column's transform."""
    prep = kde_plain["preprocessing"]
    return kde_plain["params"]["points"] * prep["scale"] + prep["shift"]


def transformed(plain: dict, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows through the file's bounds (log(x - lo), -log(hi - x), or the logit of
    (x - lo) / (hi - lo)) and the log-Jacobian of that per row."""
    Y, jacobian = np.array(Q, dtype=float), np.zeros(len(Q))
    for j, name in enumerate(plain["columns"]):
        if name not in plain.get("bounds", {}):
            continue
        lo, hi = plain["bounds"][name]
        x = Q[:, j]
        if lo is not None and hi is not None:
            Y[:, j] = np.log((x - lo) / (hi - x))
            jacobian += np.log((hi - lo) / ((x - lo) * (hi - x)))
        elif lo is not None:
            Y[:, j], jacobian = np.log(x - lo), jacobian - np.log(x - lo)
        else:
            Y[:, j], jacobian = -np.log(hi - x), jacobian - np.log(hi - x)
    return Y, jacobian


def query_rows(version: int) -> np.ndarray:
    """The training rows, rows between them and rows far in the tails."""
    X = training_rows(raw(FIXTURES / f"model_v{version}_kde.pkl"))
    centre, spread = X.mean(axis=0), X.std(axis=0)
    tails = centre + spread * np.array([[4.0, -4.0], [-6.0, 0.0], [0.0, 8.0]])
    return np.vstack([X, (X[:-1] + X[1:]) / 2, tails])


def gmm_reference(plain: dict, Q: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) with the file's standardized-space parameters taken to data units."""
    params, prep = plain["params"], plain["preprocessing"]
    assert params["covariance_type"] == "full" and len(params["weights"]) == 1
    scale, shift = prep["scale"], prep["shift"]
    mean = shift + scale * params["means"][0]
    cov = params["covariances"][0] * np.outer(scale, scale)
    return multivariate_normal(mean, cov).logpdf(Q)


def discrete_gmm_reference(plain: dict, Q: np.ndarray) -> np.ndarray:
    """Version 2's mixture: one full Gaussian over (height, weight) in data units, weight a
    whole number: log N(height) + log P(weight in [w, w + 1) | height), by scipy."""
    from scipy.stats import norm

    params, prep = plain["params"], plain["preprocessing"]
    assert plain["discrete_columns"] == ["weight"] and len(params["weights"]) == 1
    scale, shift = prep["scale"], prep["shift"]
    mean = shift + scale * params["means"][0]
    cov = params["covariances"][0] * np.outer(scale, scale)
    h, w = Q[:, 0], np.floor(Q[:, 1])
    cond_mean = mean[1] + cov[1, 0] / cov[0, 0] * (h - mean[0])
    cond_sd = math.sqrt(cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0])
    # Differences of the tail nearer the box, so a box far out keeps its digits.
    upper = norm.sf(w, cond_mean, cond_sd) - norm.sf(w + 1, cond_mean, cond_sd)
    lower = norm.cdf(w + 1, cond_mean, cond_sd) - norm.cdf(w, cond_mean, cond_sd)
    mass = np.where(w > cond_mean, upper, lower)
    return norm.logpdf(h, mean[0], math.sqrt(cov[0, 0])) + np.log(mass)


def rotated_kde_reference(plain: dict, Q: np.ndarray) -> np.ndarray:
    """Version 2's kernel density: kernels N(p_i, H), H = h^2 A^T A with A = W^-1 diag(scale),
    W the file's rotation: the mean of multivariate normals, by scipy."""
    params, prep = plain["params"], plain["preprocessing"]
    A = np.linalg.inv(params["rotation"]) * prep["scale"][None, :]
    H = params["bandwidth"] ** 2 * (A.T @ A)
    P = training_rows(plain)
    logs = np.array([multivariate_normal(p, H).logpdf(Q) for p in P])
    return logsumexp(logs, axis=0) - math.log(len(P))


def reference(plain: dict, family: str, Q: np.ndarray) -> np.ndarray:
    if "bounds" in plain:  # the density of the transformed rows, times the Jacobian
        Y, jacobian = transformed(plain, Q)
        unbounded = {k: v for k, v in plain.items() if k != "bounds"}
        return reference(unbounded, family, Y) + jacobian
    if family == "gmm":
        return (
            discrete_gmm_reference(plain, Q)
            if "discrete_columns" in plain
            else (gmm_reference(plain, Q))
        )
    return (
        rotated_kde_reference(plain, Q)
        if "rotation" in plain["params"]
        else (kde_reference(plain, Q))
    )


def kde_reference(plain: dict, Q: np.ndarray) -> np.ndarray:
    """log of (1/n) sum_i prod_j N(x_j; p_ij, (h s_j)^2): every Gaussian kernel summed."""
    params, prep = plain["params"], plain["preprocessing"]
    assert params["kernel"] == "gaussian"
    P = kernel_centres(plain)
    width = params["bandwidth"] * prep["scale"]
    u = (Q[:, None, :] - P[None, :, :]) / width
    log_kernels = np.sum(-0.5 * u**2 - np.log(width) - 0.5 * math.log(2 * math.pi), axis=2)
    return logsumexp(log_kernels, axis=1) - math.log(len(P))


def test_every_format_version_has_fixtures():
    found = {(int(m[1]), m[2]) for m in (NAME.fullmatch(p.name) for p in FILES) if m}
    wanted = {(v, f) for v in range(1, modelfile.FORMAT_VERSION + 1) for f in ("gmm", "kde")}
    assert wanted <= found, (
        f"missing fixtures {sorted(wanted - found)}: run tests/fixtures/make_fixtures.py "
        "with this gencli and commit them"
    )


def test_fixtures_are_small_and_say_their_version():
    assert FILES
    for path in FILES:
        version, family = NAME.fullmatch(path.name).groups()
        plain = raw(path)
        assert path.stat().st_size < 8_000
        assert plain["format"] == "gencli-model"
        assert plain["format_version"] == int(version)
        assert plain["family"] == family
        assert plain["columns"] == ["height", "weight"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture_loads_and_scores_like_its_parameters_say(path):
    version, family = NAME.fullmatch(path.name).groups()
    plain = raw(path)
    model = gencli.load(path)
    assert model.family == family
    assert model.columns == ["height", "weight"]
    Q = query_rows(int(version))
    expected = reference(plain, family, Q)
    # A KDE is scored within 1e-6 relative density by default (atol 1e-6 in the log).
    atol = 1e-9 if family == "gmm" else 1e-6
    np.testing.assert_allclose(model.score_samples(Q), expected, rtol=1e-12, atol=atol)
    # Rows named in another order are matched by name.
    frame = pd.DataFrame({"weight": Q[:, 1], "height": Q[:, 0]})
    np.testing.assert_allclose(model.score_samples(frame), expected, rtol=1e-12, atol=atol)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture_samples_look_like_its_training_rows(path):
    version = int(NAME.fullmatch(path.name)[1])
    X = training_rows(raw(FIXTURES / f"model_v{version}_kde.pkl"))
    model = gencli.load(path)
    X[:, model.discrete] = np.floor(X[:, model.discrete])  # whole numbers are drawn as such
    draws = model.sample(20_000, seed=1)
    assert draws.shape == (20_000, 2) and np.all(np.isfinite(draws))
    np.testing.assert_array_equal(draws[:, model.discrete], np.floor(draws[:, model.discrete]))
    # Within a tenth of a standard deviation (the sampling error is ~0.01 of one).
    assert np.all(np.abs(draws.mean(axis=0) - X.mean(axis=0)) < 0.1 * X.std(axis=0))
    np.testing.assert_allclose(draws.std(axis=0), X.std(axis=0), rtol=0.2)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture_works_from_the_command_line(path, tmp_path):
    rows = query_rows(int(NAME.fullmatch(path.name)[1]))[:5]
    data = tmp_path / "rows.csv"
    data.write_text("weight,height\n" + "".join(f"{w!r},{h!r}\n" for h, w in rows.tolist()))
    runner = CliRunner()
    shown = runner.invoke(cli, ["inspect", str(path)])
    assert shown.exit_code == 0, shown.output
    version = NAME.fullmatch(path.name)[1]
    assert f"format {version}" in shown.stdout and "sound" in shown.stdout
    scored = runner.invoke(cli, ["score", str(path), str(data), "-o", "-"])
    assert scored.exit_code == 0, scored.output
    written = np.array([float(v) for v in scored.stdout.split()[1:]])
    np.testing.assert_allclose(written, gencli.load(path).score_samples(rows), rtol=1e-12)


def _newer(path: Path, tmp_path: Path, **changes) -> Path:
    plain = raw(path)
    plain["format_version"] = modelfile.FORMAT_VERSION + 1
    plain.update(changes)
    newer = tmp_path / "newer.pkl"
    newer.write_bytes(pickle.dumps(plain, protocol=4))
    return newer


@pytest.mark.parametrize("family", ["gmm", "kde"])
def test_newer_format_version_asks_to_upgrade_gencli(family, tmp_path):
    newer = _newer(FIXTURES / f"model_v1_{family}.pkl", tmp_path)
    with pytest.raises(ModelFileError) as info:
        gencli.load(newer)
    message = str(info.value)
    assert message.startswith(f"{newer}: ") and "\n" not in message
    assert "newer gencli" in message and "upgrade gencli" in message
    assert f"format {modelfile.FORMAT_VERSION + 1}" in message


def test_newer_format_is_refused_before_its_contents_are_judged(tmp_path):
    """A newer file may hold families and fields this gencli has never heard of."""
    newer = _newer(FIXTURES / "model_v1_gmm.pkl", tmp_path, family="flow", params=[1, 2])
    with pytest.raises(ModelFileError, match="upgrade gencli"):
        gencli.load(newer)


def test_newer_format_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    newer = _newer(FIXTURES / "model_v1_kde.pkl", tmp_path)
    result = CliRunner().invoke(cli, ["sample", str(newer), "-n", "5", "-o", "out.csv"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "upgrade gencli" in lines[0]
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True, None])
def test_nonsense_format_version_is_refused(version, tmp_path):
    plain = raw(FIXTURES / "model_v1_gmm.pkl")
    plain["format_version"] = version
    with pytest.raises(ModelFileError, match="no format version"):
        modelfile.loads(pickle.dumps(plain, protocol=4), "odd.pkl")


def test_a_model_without_version_2_features_is_still_written_as_version_1(tmp_path: Path):
    """So an older gencli keeps reading it; one with them says version 2 (older gencli then
    asks for an upgrade instead of misreading the rotation or the discrete columns)."""
    rows = np.random.default_rng(0).normal(size=(60, 2))
    gencli.fit(rows, "gmm", components=1, validation=0.0).save(tmp_path / "plain.pkl")
    assert raw(tmp_path / "plain.pkl")["format_version"] == 1
    whole = np.column_stack([rows[:, 0], np.floor(3 * rows[:, 1])])
    gencli.fit(whole, "gmm", components=1, discrete="auto", validation=0.0).save(
        tmp_path / "discrete.pkl"
    )
    assert raw(tmp_path / "discrete.pkl")["format_version"] == 2
    plain = raw(tmp_path / "discrete.pkl")
    plain["format_version"] = 1  # a version-1 file cannot hold discrete columns
    with pytest.raises(ModelFileError, match="format 1 cannot hold"):
        modelfile.from_plain(plain, "discrete.pkl")
