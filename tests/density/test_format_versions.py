"""Model format versions: every committed fixture of every version loads and scores right,
and a file from a newer gencli is refused with a request to upgrade.

The fixtures in tests/fixtures were written by tests/fixtures/make_fixtures.py, one pair
(a one-component Gaussian mixture and a Gaussian KDE, fitted on the same 50 rows) per
format version. Their scores are checked against densities computed here from the raw
parameters in the file: scipy's multivariate normal for the mixture and a direct sum of
Gaussian kernels for the KDE.
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
    prep = kde_plain["preprocessing"]
    return kde_plain["params"]["points"] * prep["scale"] + prep["shift"]


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


def kde_reference(plain: dict, Q: np.ndarray) -> np.ndarray:
    """log of (1/n) sum_i prod_j N(x_j; p_ij, (h s_j)^2): every Gaussian kernel summed."""
    params, prep = plain["params"], plain["preprocessing"]
    assert params["kernel"] == "gaussian"
    P = training_rows(plain)
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
    reference = gmm_reference(plain, Q) if family == "gmm" else kde_reference(plain, Q)
    # A KDE is scored within 1e-6 relative density by default (atol 1e-6 in the log).
    atol = 1e-9 if family == "gmm" else 1e-6
    np.testing.assert_allclose(model.score_samples(Q), reference, rtol=1e-12, atol=atol)
    # Rows named in another order are matched by name.
    frame = pd.DataFrame({"weight": Q[:, 1], "height": Q[:, 0]})
    np.testing.assert_allclose(model.score_samples(frame), reference, rtol=1e-12, atol=atol)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fixture_samples_look_like_its_training_rows(path):
    version = int(NAME.fullmatch(path.name)[1])
    X = training_rows(raw(FIXTURES / f"model_v{version}_kde.pkl"))
    draws = gencli.load(path).sample(20_000, seed=1)
    assert draws.shape == (20_000, 2) and np.all(np.isfinite(draws))
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
