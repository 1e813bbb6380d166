"""Model files hold plain data only, load through an allowlist, and refuse everything else."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import gencli
from gencli.density import modelfile
from gencli.errors import ModelFileError


@pytest.fixture(scope="module")
def models() -> dict[str, gencli.DensityModel]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * np.array([1.0, 10.0, 0.1])
    return {
        "gmm-full": gencli.fit(X, "gmm", components=2),
        "gmm-tied": gencli.fit(X, "gmm", components=2, covariance="tied"),
        "gmm-diag": gencli.fit(X, "gmm", components=2, covariance="diag"),
        "gmm-spherical": gencli.fit(X, "gmm", components=2, covariance="spherical"),
        "kde": gencli.fit(X, "kde", kernel="epanechnikov"),
    }


def _globals_in(payload: bytes) -> set[str]:
    """Every module.name a pickle asks for (our own payload, so loading it is safe)."""
    found: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            found.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(io.BytesIO(payload)).load()
    return found


@pytest.mark.parametrize("kind", ["gmm-full", "gmm-tied", "gmm-diag", "gmm-spherical", "kde"])
def test_round_trip_scores_and_samples_identically(models, kind, tmp_path: Path) -> None:
    model = models[kind]
    path = tmp_path / "m.pkl"
    model.save(path)
    loaded = gencli.load(path)
    X = model.sample(200, seed=1)
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.sample(50, seed=3), model.sample(50, seed=3))
    assert loaded.columns == model.columns
    assert loaded.metadata["data_sha256"] == model.metadata["data_sha256"]


def test_file_holds_only_plain_data_and_numpy_arrays(models, tmp_path: Path) -> None:
    for model in models.values():
        payload = modelfile.dumps(model)
        assert _globals_in(payload) <= {
            "numpy.ndarray",
            "numpy.dtype",
            "numpy._core.multiarray._reconstruct",
            "numpy.core.multiarray._reconstruct",
        }
        plain = pickle.loads(payload)  # the file is an ordinary pickle for anyone to read
        assert plain["format"] == "gencli-model"
        assert plain["format_version"] == 1  # nothing in it needs version 2
        meta = plain["metadata"]
        for key in ("gencli_version", "sklearn_version", "numpy_version", "rows", "data_sha256"):
            assert key in meta
        assert "command_line" in meta and "created" in meta


def test_kde_file_keeps_training_points(models) -> None:
    model = models["kde"]
    plain = pickle.loads(modelfile.dumps(model))
    assert plain["params"]["points"].shape == (300, 3)


def test_estimator_is_rebuilt_without_refitting(models, tmp_path: Path) -> None:
    model = models["gmm-full"]
    model.save(tmp_path / "m.pkl")
    loaded = gencli.load(tmp_path / "m.pkl")
    np.testing.assert_array_equal(loaded.estimator.means_, model.estimator.means_)
    np.testing.assert_allclose(loaded.estimator.precisions_, model.estimator.precisions_)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalExploit:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


class _GetattrExploit:
    def __reduce__(self):
        import builtins

        return (builtins.getattr, (int, "__add__"))


@pytest.mark.parametrize("make", [_EvalExploit, _GetattrExploit])
def test_crafted_pickles_are_refused(make, tmp_path: Path) -> None:
    payload = pickle.dumps({"format": "gencli-model", "format_version": 1, "x": make()})
    with pytest.raises(ModelFileError, match="refused"):
        modelfile.loads(payload, "evil.pkl")


def test_os_system_pickle_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ModelFileError, match=r"evil\.pkl: refused: it asks to load \S*system"):
        gencli.load(path)
    assert not marker.exists()


def test_nested_object_inside_plain_model_is_refused(models) -> None:
    plain = modelfile.to_plain(models["gmm-full"])
    plain["metadata"]["extra"] = [{"deep": io.BytesIO(b"x")}]
    payload = pickle.dumps(plain)
    with pytest.raises(ModelFileError, match="refused"):
        modelfile.loads(payload)


def test_object_array_is_refused(models) -> None:
    plain = modelfile.to_plain(models["gmm-full"])
    plain["params"]["means"] = np.array([1, "a"], dtype=object)
    with pytest.raises(ModelFileError):
        modelfile.loads(pickle.dumps(plain), "m.pkl")


def test_newer_format_version_asks_for_an_upgrade(models) -> None:
    plain = modelfile.to_plain(models["kde"])
    plain["format_version"] = modelfile.FORMAT_VERSION + 1
    with pytest.raises(ModelFileError, match=r"newer gencli.*upgrade gencli"):
        modelfile.loads(pickle.dumps(plain), "m.pkl")


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"", "empty"),
        (b"sepal_length,sepal_width\n1,2\n", "not a gencli model file"),
        (bytes(range(256)) * 4, "not a gencli model file"),
        (pickle.dumps([1, 2, 3]), "not one written by gencli"),
        (pickle.dumps({"format": "gencli-model"}), "no format version"),
    ],
)
def test_junk_gives_one_line_error(payload: bytes, fragment: str) -> None:
    with pytest.raises(ModelFileError, match=fragment) as info:
        modelfile.loads(payload, "junk.pkl")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("junk.pkl")


def test_truncated_file_is_refused(models) -> None:
    payload = modelfile.dumps(models["gmm-full"])
    for cut in (2, len(payload) // 3, len(payload) - 1):
        with pytest.raises(ModelFileError, match=r"truncated|not a valid|not a readable"):
            modelfile.loads(payload[:cut], "cut.pkl")


def test_tampered_parameters_are_refused(models) -> None:
    plain = modelfile.to_plain(models["gmm-full"])
    plain["params"]["covariances"] = -plain["params"]["covariances"]
    with pytest.raises(ModelFileError, match="positive definite"):
        modelfile.loads(pickle.dumps(plain), "m.pkl")
    plain = modelfile.to_plain(models["kde"])
    plain["preprocessing"]["scale"] = np.zeros(3)
    with pytest.raises(ModelFileError, match="preprocessing"):
        modelfile.loads(pickle.dumps(plain), "m.pkl")
