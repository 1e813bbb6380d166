"""Model files: a pickle of plain data (builtins and numpy arrays), read through an allowlist.

No scikit-learn object is pickled: the file holds a format name and version, the family's
parameters, the preprocessing, the column names and metadata, and gencli rebuilds the
estimator from them. So a file written under one scikit-learn version loads under another,
and loading a crafted file can never run code: the unpickler refuses every class and
callable except the few numpy needs to rebuild an array.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gencli.atomic import atomic_write
from gencli.errors import ModelFileError
from gencli.families import FAMILIES
from gencli.model import DensityModel, family_module

FORMAT_NAME = "gencli-model"
FORMAT_VERSION = 1
PICKLE_PROTOCOL = 4

# What numpy's own pickles of plain arrays need, and nothing else.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
    }
)
_PLAIN_SCALARS = (str, int, float, bool, type(None))
_ARRAY_KINDS = "biuf"


class _AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


class _Refused(Exception):
    """A pickle asked for a global that is not on the allowlist."""


def to_plain(model: DensityModel) -> dict[str, Any]:
    """The model as the plain dictionary a model file holds."""
    plain = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "params": copy.deepcopy(model.params),
        "preprocessing": {
            "standardize": bool(model.metadata.get("standardized", True)),
            "shift": np.asarray(model.shift, dtype=np.float64),
            "scale": np.asarray(model.scale, dtype=np.float64),
        },
        "columns": list(model.columns),
        "named_columns": bool(model.named_columns),
        "metadata": copy.deepcopy(model.metadata),
    }
    return dict(_builtin(plain))


def dumps(model: DensityModel) -> bytes:
    """The bytes of a model file."""
    plain = to_plain(model)
    _check_plain(plain, "model")
    return pickle.dumps(plain, protocol=PICKLE_PROTOCOL)


def save(model: DensityModel, path: str | os.PathLike[str]) -> None:
    """Write the model file atomically: never a partial file, never a clobbered good one."""
    payload = dumps(model)
    with atomic_write(path) as handle:
        handle.write(payload)


MAX_DEPTH = 32  # a gencli model file nests five levels deep; anything far deeper is junk


def _check_plain(value: Any, where: str, depth: int = 0) -> None:
    """Refuse anything but builtins and numeric numpy arrays (both when saving and loading)."""
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelFileError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, np.ndarray):
        kind = value.dtype
        # A tampered dtype state can claim to hold objects while its kind says float:
        # accept only dtypes identical to the plain one of the same type code.
        if (
            kind.kind not in _ARRAY_KINDS
            or kind.names is not None
            or kind.hasobject
            or kind.flags != np.dtype(kind.str).flags
            or kind.itemsize != np.dtype(kind.str).itemsize
        ):
            raise ModelFileError(f"{where} is an array of {kind}, not plain numbers")
    elif not isinstance(value, _PLAIN_SCALARS) or (
        isinstance(value, (int, float)) and type(value) not in (int, float, bool)
    ):
        raise ModelFileError(f"{where} holds a {type(value).__name__}, not plain data")


def _builtin(value: Any) -> Any:
    """numpy scalars as the Python numbers they are, so that saved files load (the
    allowlist has no numpy scalar type)."""
    if isinstance(value, dict):
        return {key: _builtin(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_builtin(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_memo(payload: bytes) -> None:
    """Refuse memo indices that run ahead of the pickle: the C unpickler would allocate a
    memo that large (a 10-byte file can ask for gigabytes). Read without executing."""
    import pickletools

    for seen, (opcode, argument, _) in enumerate(pickletools.genops(payload), 1):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(argument or 0) > seen:
            raise pickle.UnpicklingError(f"memo index {argument} runs ahead of the pickle")


def loads(payload: bytes, name: str = "<bytes>") -> DensityModel:
    """Read a model from the bytes of a model file; see :func:`load`."""
    if not payload:
        raise ModelFileError(f"{name}: is empty, not a gencli model file; pass a file from `fit`")
    if payload[:1] != b"\x80":
        raise ModelFileError(
            f"{name}: is not a gencli model file (not a pickle; is it a data file?); "
            "pass a model written by `gencli fit`"
        )
    try:
        _check_memo(payload)
        plain = _AllowlistUnpickler(io.BytesIO(payload)).load()
    except _Refused as exc:
        raise ModelFileError(
            f"{name}: refused: it asks to load {exc}, which a gencli model file never does; "
            "nothing in it was run. Only load model files you trust to be from `gencli fit`"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(
            f"{name}: is truncated or corrupted ({type(exc).__name__}); refit the model"
        ) from None
    except Exception as exc:
        raise ModelFileError(
            f"{name}: is not a readable gencli model file ({type(exc).__name__}); refit the model"
        ) from None
    try:
        return from_plain(plain, name)
    except ModelFileError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        raise ModelFileError(
            f"{name}: is not a valid gencli model file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); refit the model"
        ) from None


def load(path: str | os.PathLike[str]) -> DensityModel:
    """Read a model file written by :func:`save` (or ``gencli fit``), refusing anything else."""
    file = Path(path)
    if file.is_dir():
        raise ModelFileError(f"{file}: is a folder, not a model file; pass the .pkl file")
    if not file.exists():
        raise ModelFileError(f"{file}: no such model file; check the path or run `gencli fit`")
    try:
        payload = file.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{file}: cannot read: {exc.strerror}") from exc
    return loads(payload, str(file))


def _require(condition: bool, name: str, what: str) -> None:
    if not condition:
        raise ModelFileError(f"{name}: is not a valid gencli model file ({what}); refit the model")


def from_plain(plain: Any, name: str = "<model>") -> DensityModel:
    """Check a loaded dictionary field by field and build the model from it."""
    _require(
        isinstance(plain, dict) and plain.get("format") == FORMAT_NAME,
        name,
        "a pickle, but not one written by gencli",
    )
    version = plain.get("format_version")
    _require(type(version) is int and version >= 1, name, "no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{name}: was written by a newer gencli (model format {version}; this gencli reads "
            f"up to {FORMAT_VERSION}); upgrade gencli: pip install --upgrade gencli"
        )
    try:
        _check_plain(plain, "model")
    except ModelFileError as exc:
        raise ModelFileError(f"{name}: is not a valid gencli model file: {exc}") from None
    columns = plain.get("columns")
    _require(
        isinstance(columns, list) and bool(columns) and all(isinstance(c, str) for c in columns),
        name,
        "no column names",
    )
    prep = plain.get("preprocessing")
    _require(isinstance(prep, dict), name, "no preprocessing")
    shift = np.asarray(prep.get("shift"), dtype=np.float64)
    scale = np.asarray(prep.get("scale"), dtype=np.float64)
    _require(
        shift.shape == (len(columns),) and scale.shape == (len(columns),),
        name,
        "preprocessing does not match the columns",
    )
    _require(
        bool(np.all(np.isfinite(shift)) and np.all(scale > 0) and np.all(np.isfinite(scale))),
        name,
        "preprocessing is not finite and positive",
    )
    params = plain.get("params")
    _require(isinstance(params, dict), name, "no parameters")
    metadata = plain.get("metadata", {})
    _require(isinstance(metadata, dict), name, "bad metadata")
    family = plain.get("family")
    _require(family in FAMILIES, name, f"unknown model family {family!r}")
    model = DensityModel(
        str(family),
        params,
        columns,
        shift,
        scale,
        named_columns=bool(plain.get("named_columns", True)),
        metadata=metadata,
    )
    try:
        family_module(str(family)).check_params(params)
    except ModelFileError as exc:
        raise ModelFileError(f"{name}: {exc}; refit the model") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(
            f"{name}: is not a valid gencli model file (bad parameters: {exc}); refit the model"
        ) from None
    means_or_points = params.get("means", params.get("points"))
    _require(
        np.asarray(means_or_points).shape[-1] == len(columns),
        name,
        "parameters do not match the columns",
    )
    return model
