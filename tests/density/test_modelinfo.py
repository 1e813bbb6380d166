"""gencli.density.modelinfo.inspect_model: parameters in data units, a verdict for every file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import gencli
from gencli.density import modelfile
from gencli.density.modelinfo import inspect_model

REPO = Path(__file__).resolve().parents[2]


def data(n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([0, 100], [1, 20], (n // 2, 2)), rng.normal([4, 50], 3, (n // 2, 2))])
    return X * [1.0, 1.0] + [10.0, 0.0]


def covariance_in_data_units(model: gencli.DensityModel, k: int) -> np.ndarray:
    """Component k's full covariance matrix in data units: S Sigma_k S, S = diag(scale)."""
    params = model.params
    cov, kind = np.asarray(params["covariances"]), params["covariance_type"]
    d = model.n_features
    sigma = {
        "full": lambda: cov[k],
        "tied": lambda: cov,
        "diag": lambda: np.diag(cov[k]),
        "spherical": lambda: cov[k] * np.eye(d),
    }[kind]()
    S = np.diag(model.scale)
    return S @ sigma @ S


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical"])
def test_gmm_parameters_are_reported_in_data_units(covariance: str) -> None:
    model = gencli.fit(data(), "gmm", components=2, covariance=covariance)
    model.save("m.pkl")
    info = inspect_model("m.pkl")
    assert info["sound"] is True and info["problems"] == []
    assert info["format"] == "gencli-model" and info["format_version"] == 1
    assert info["family"] == "gmm" and info["columns"] == ["x0", "x1"]
    params = info["parameters"]
    assert params["covariance_type"] == covariance and params["components"] == 2
    np.testing.assert_allclose(params["weights"], model.params["weights"])
    np.testing.assert_allclose(
        params["means"], np.asarray(model.params["means"]) * model.scale + model.shift
    )
    for k in range(2):
        expected = np.sqrt(np.diag(covariance_in_data_units(model, k)))
        np.testing.assert_allclose(params["standard_deviations"][k], expected, rtol=1e-12)
    np.testing.assert_allclose(info["standardization"]["shift"], data().mean(axis=0))
    np.testing.assert_allclose(info["standardization"]["scale"], data().std(axis=0))
    # Everything the model recorded at training, as JSON.
    assert info["metadata"]["data_sha256"] == model.metadata["data_sha256"]
    assert set(info["metadata"]) == set(model.metadata)
    json.dumps(info, allow_nan=False)


def test_gmm_means_match_the_data_they_were_fitted_to() -> None:
    """Two well-separated clusters: the data-unit means land on the clusters' own means."""
    X = data(2000)
    model = gencli.fit(X, "gmm", components=2)
    model.save("m.pkl")
    means = sorted(map(tuple, inspect_model("m.pkl")["parameters"]["means"]))
    np.testing.assert_allclose(means[0], X[:1000].mean(axis=0), rtol=0.05)
    np.testing.assert_allclose(means[1], X[1000:].mean(axis=0), rtol=0.05)


def test_kde_bandwidth_per_column_is_bandwidth_times_scale() -> None:
    X = data()
    model = gencli.fit(X, "kde", kernel="epanechnikov", bandwidth="scott")
    model.save("k.pkl")
    info = inspect_model("k.pkl")
    assert info["sound"] is True
    params = info["parameters"]
    h = model.params["bandwidth"]
    assert params["kernel"] == "epanechnikov" and params["bandwidth"] == h
    assert params["bandwidth_rule"] == "scott"
    assert params["training_points"] == X.shape[0]
    for j, column in enumerate(["x0", "x1"]):
        assert params["bandwidth_data_units"][column] == pytest.approx(h * X[:, j].std())


def real_file() -> Path:
    gencli.fit(data(), "gmm", components=2).save("good.pkl")
    return Path("good.pkl")


def test_a_file_from_a_newer_gencli_is_described_but_not_sound() -> None:
    with open(real_file(), "rb") as handle:
        plain = pickle.load(handle)  # our own file, in a test
    newer = modelfile.FORMAT_VERSION + 1
    plain["format_version"] = newer
    Path("new.pkl").write_bytes(pickle.dumps(plain, protocol=4))
    info = inspect_model("new.pkl")
    assert info["sound"] is False
    assert len(info["problems"]) == 1
    assert f"written by a newer gencli (format {newer}" in info["problems"][0]
    assert "upgrade" in info["problems"][0]
    # What can be read without trusting it is still there.
    assert info["format_version"] == newer and info["family"] == "gmm"
    assert info["columns"] == ["x0", "x1"]
    assert info["metadata"]["rows"] == 300
    assert info["parameters"] is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (np.random.default_rng(0).bytes(500), "not a gencli model file"),
        ((REPO / "sample_data" / "iris.csv").read_bytes(), "not a gencli model file (it is text"),
        (b"\x80\x04", "truncated or corrupted"),
        (pickle.dumps({"format": "something else"}), "not one written by gencli"),
        (pickle.dumps([1, 2, 3]), "not one written by gencli"),
    ],
)
def test_junk_gets_a_verdict_not_an_exception(content: bytes, problem: str) -> None:
    Path("junk.pkl").write_bytes(content)
    info = inspect_model("junk.pkl")
    assert info["sound"] is False
    assert problem in info["problems"][0]
    json.dumps(info, allow_nan=False)


def test_a_truncated_model_file_is_not_sound() -> None:
    payload = real_file().read_bytes()
    Path("cut.pkl").write_bytes(payload[: len(payload) // 2])
    info = inspect_model("cut.pkl")
    assert info["sound"] is False and "truncated or corrupted" in info["problems"][0]


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    Path("evil.pkl").write_bytes(pickle.dumps({"format": "gencli-model", "x": Exploit()}))
    info = inspect_model("evil.pkl")
    assert info["sound"] is False
    assert "it asks to load" in info["problems"][0] and "system" in info["problems"][0]
    assert "nothing in it was run" in info["problems"][0]
    assert not marker.exists()


def test_a_model_file_with_broken_parameters_is_not_sound() -> None:
    with open(real_file(), "rb") as handle:
        plain = pickle.load(handle)
    plain["params"]["weights"] = np.array([0.9, 0.9])
    Path("bad.pkl").write_bytes(pickle.dumps(plain, protocol=4))
    info = inspect_model("bad.pkl")
    assert info["sound"] is False
    assert "weights" in info["problems"][0]
    assert info["columns"] == ["x0", "x1"]  # still described from the raw file


def test_missing_file_and_folder() -> None:
    assert "no such file" in inspect_model("nope.pkl")["problems"][0]
    Path("folder").mkdir()
    assert "is a folder" in inspect_model("folder")["problems"][0]


def test_a_failing_self_check_makes_the_file_unsound(monkeypatch: pytest.MonkeyPatch) -> None:
    real_file()
    monkeypatch.setattr(
        gencli.DensityModel, "score_samples", lambda self, X: np.full(len(X), np.nan)
    )
    info = inspect_model("good.pkl")
    assert info["sound"] is False
    assert "self-check failed" in info["problems"][0]


def test_an_unconverged_fit_is_sound_with_a_note() -> None:
    with open(real_file(), "rb") as handle:
        plain = pickle.load(handle)
    plain["params"]["converged"] = False
    Path("short.pkl").write_bytes(pickle.dumps(plain, protocol=4))
    info = inspect_model("short.pkl")
    assert info["sound"] is True
    assert any("did not converge" in note for note in info["notes"])
