"""Model files: a pickle of plain data (builtins and numpy arrays), read without trusting it.

No scikit-learn object is pickled: the file holds a format name and version, the family's
parameters, the preprocessing, the column names and metadata, and gencli rebuilds the
estimator from them. So a file written under one scikit-learn version loads under another.
Reading one goes through :func:`read_model_file` (regular files only, within the memory
budget) and :func:`gencli.density.plainpickle.read_plain`, which never lets the file call anything
and bounds the work by the file's size; then every field is checked against the family's
declared shapes before anything uses it.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from typing import Any

import numpy as np

from gencli.density.families import FAMILIES
from gencli.density.fileformat import FORMAT_NAME, FORMAT_VERSION, encode
from gencli.density.fileformat import version_for as fileformat_version_for
from gencli.density.model import DensityModel
from gencli.density.modelparts import family_module
from gencli.density.plainpickle import read_plain
from gencli.errors import ModelFileError
from gencli.limits import check_memory, format_size

# Reading a model file holds its bytes and the arrays built from them at once: twice the
# file (measured: a 30.5 MiB KDE file raises the peak RSS by 61 MiB). Files of many small
# objects are checked as they are read (see gencli.density.plainpickle).
READ_MEMORY_FACTOR = 2


def to_plain(model: DensityModel) -> dict[str, Any]:
    """The model as the plain dictionary a model file holds."""
    return model.to_plain()


def dumps(model: DensityModel) -> bytes:
    """The bytes of a model file."""
    return encode(model.to_plain())


def save(model: DensityModel, path: str | os.PathLike[str]) -> None:
    """Write the model file atomically: never a partial file, never a clobbered good one."""
    model.save(path)


def loads(payload: bytes, name: str = "<bytes>") -> DensityModel:
    """Read a model from the bytes of a model file; see :func:`load`."""
    plain = read_plain(payload, name)
    try:
        return from_plain(plain, name)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # A field that no check foresaw: still one line that names the file.
        raise ModelFileError(
            f"{name}: is not a valid gencli model file ({type(exc).__name__}); refit the model"
        ) from None


def load(path: str | os.PathLike[str]) -> DensityModel:
    """Read a model file written by :func:`save` (or ``gencli fit``), refusing anything else."""
    return loads(read_model_file(path), str(path))


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_OS_HINTS = {
    errno.ELOOP: "; a symbolic link on the path points back to itself",
    errno.ENOTDIR: "; a part of the path is a file, not a folder",
    errno.EACCES: "; check the file's permissions",
    errno.EPERM: "; check the file's permissions",
    errno.ENAMETOOLONG: "; shorten the path",
}


def _not_regular(name: str, mode: int) -> ModelFileError:
    if stat.S_ISDIR(mode):
        return ModelFileError(f"{name}: is a folder, not a model file; pass the .pkl file")
    kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a file")
    return ModelFileError(
        f"{name}: is not a regular file ({kind}); pass a model file written by `gencli fit`"
    )


def _cannot_read(name: str, exc: OSError) -> ModelFileError:
    if exc.errno == errno.ENOENT:
        return ModelFileError(f"{name}: no such model file; check the path or run `gencli fit`")
    reason = exc.strerror or type(exc).__name__
    return ModelFileError(f"{name}: cannot read: {reason}{_OS_HINTS.get(exc.errno or 0, '')}")


def read_model_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the model file at ``path``: a regular file, read whole, within memory.

    A FIFO, a device or a socket is refused before it is opened (opening a FIFO blocks,
    /dev/zero never ends), and checked again on the open handle in case the path changed.
    A file too large for the memory budget is refused before it is read.
    """
    name = str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _cannot_read(name, exc) from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(name, info.st_mode)
    check_memory(
        READ_MEMORY_FACTOR * info.st_size,
        f"{name}: reading this model file ({format_size(info.st_size)})",
        "is it really a model file written by `gencli fit`?",
    )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _cannot_read(name, exc) from None
    with open(fd, "rb", buffering=0, closefd=True) as handle:
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise _not_regular(name, opened.st_mode)
            payload = _read_at_most(handle, opened.st_size + 1)
        except OSError as exc:
            raise _cannot_read(name, exc) from None
    if len(payload) > opened.st_size:
        raise ModelFileError(
            f"{name}: grew while it was being read; wait until it is written, then try again"
        )
    return payload


def _read_at_most(handle: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes: one read for a file that fits, a loop for one that comes in
    pieces (a single read stops short of 2 GiB on Linux)."""
    first = handle.read(limit)
    if not first or len(first) == limit:
        return bytes(first or b"")
    pieces = [first]
    got = len(first)
    while got < limit:
        piece = handle.read(limit - got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


def _require(condition: bool, name: str, what: str) -> None:
    if not condition:
        raise ModelFileError(f"{name}: is not a valid gencli model file ({what}); refit the model")


def _shown(value: Any) -> str:
    """A value from the file, short enough for a one-line message."""
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else None
    if text is None:
        return f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _is_plain_number_vector(value: Any, n: int) -> bool:
    """A list of n numbers or a numeric 1-D array of length n (what shift and scale are)."""
    if isinstance(value, np.ndarray):
        return value.shape == (n,)
    return type(value) is list and len(value) == n and all(type(x) in (int, float) for x in value)


def from_plain(plain: Any, name: str = "<model>") -> DensityModel:
    """Check plain data (from :func:`gencli.density.plainpickle.read_plain`, or checked with
    :func:`gencli.density.plaindata.check_plain`) field by field and build the model from it.

    Every array is checked against the family's declared shapes and the columns before
    anything computes with it, so sizes never come from the file's say-so alone.
    """
    _require(
        type(plain) is dict
        and type(plain.get("format")) is str
        and plain.get("format") == FORMAT_NAME,
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
    columns = plain.get("columns")
    _require(
        type(columns) is list and bool(columns) and all(type(c) is str and c for c in columns),
        name,
        "no column names",
    )
    _require(len(set(columns)) == len(columns), name, "repeated column names")
    named = plain.get("named_columns", True)
    _require(type(named) is bool, name, "named_columns is not true or false")
    prep = plain.get("preprocessing")
    _require(type(prep) is dict, name, "no preprocessing")
    n = len(columns)
    _require(
        _is_plain_number_vector(prep.get("shift"), n)
        and _is_plain_number_vector(prep.get("scale"), n),
        name,
        "preprocessing does not match the columns",
    )
    shift = np.asarray(prep["shift"], dtype=np.float64)
    scale = np.asarray(prep["scale"], dtype=np.float64)
    _require(
        bool(np.all(np.isfinite(shift)) and np.all(scale > 0) and np.all(np.isfinite(scale))),
        name,
        "preprocessing is not finite and positive",
    )
    params = plain.get("params")
    _require(type(params) is dict, name, "no parameters")
    metadata = plain.get("metadata", {})
    _require(type(metadata) is dict, name, "bad metadata")
    family = plain.get("family")
    _require(
        type(family) is str and family in FAMILIES, name, f"unknown model family {_shown(family)}"
    )
    try:
        family_module(family).check_params(params, n_features=n)
    except ModelFileError as exc:
        raise ModelFileError(f"{name}: {exc}; refit the model") from None
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise ModelFileError(
            f"{name}: is not a valid gencli model file (bad parameters: "
            f"{type(exc).__name__}); refit the model"
        ) from None
    _require(
        version >= fileformat_version_for(plain),
        name,
        f"format {version} cannot hold a rotation, point weights, discrete columns or bounds",
    )
    discrete_names = plain.get("discrete_columns", [])
    _require(
        type(discrete_names) is list
        and all(type(c) is str and c in columns for c in discrete_names)
        and len(set(discrete_names)) == len(discrete_names),
        name,
        "discrete_columns does not name columns of the model",
    )
    discrete = [columns.index(c) for c in discrete_names]
    if discrete:
        from gencli.density.families import boxes

        _require(
            boxes.supports(family, params, len(discrete)),
            name,
            "its discrete columns need a model whose box probabilities are exact",
        )
    bounds = _read_bounds(plain.get("bounds"), columns, discrete, name)
    return DensityModel(
        family,
        params,
        columns,
        shift,
        scale,
        named_columns=named,
        metadata=metadata,
        discrete=discrete,
        bounds=bounds,
    )


def _read_bounds(entry: Any, columns: list[str], discrete: list[int], name: str) -> Any:
    """The ``bounds`` entry: {column: [lower or None, upper or None]}, lower < upper, on
    continuous columns of the model."""
    if entry is None:
        return None
    from gencli.density.bounds import from_plain

    def side(value: Any) -> bool:
        return value is None or (type(value) is float and math.isfinite(value))

    def whole(c: str, value: Any) -> bool:  # a discrete column's bounds are whole numbers
        return columns.index(c) not in discrete or value is None or value == math.floor(value)

    _require(
        type(entry) is dict
        and bool(entry)
        and all(
            type(c) is str
            and c in columns
            and type(v) is list
            and len(v) == 2
            and side(v[0])
            and side(v[1])
            and (v[0] is not None or v[1] is not None)
            and (v[0] is None or v[1] is None or v[0] < v[1])
            and whole(c, v[0])
            and whole(c, v[1])
            for c, v in entry.items()
        ),
        name,
        "its bounds are not an interval on a column of the model",
    )
    return from_plain(entry, columns, discrete)
