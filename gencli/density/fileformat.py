"""The model file format: a pickle (protocol 4) of plain data, builtins and numpy arrays only.

This is the lowest piece of the model-file code: the format's name and version and how plain
data becomes bytes on disk. :meth:`gencli.density.model.DensityModel.save` writes through it;
reading (which must not trust the file) is :mod:`gencli.density.modelfile`.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from gencli.density.plaindata import check_plain
from gencli.io.atomic import atomic_write

FORMAT_NAME = "gencli-model"
#: The newest format this gencli reads and writes. Version 2 adds what a version-1 reader
#: would silently misread: a kernel density's ``rotation`` and point ``weights`` (a weighted
#: or conditioned density) and ``discrete_columns``; version 3 adds ``bounds`` (columns
#: modelled through a log or logit transform). A model is written in the oldest version that
#: holds it, so older gencli versions keep reading what they can read correctly.
FORMAT_VERSION = 3
PICKLE_PROTOCOL = 4


def version_for(plain: dict[str, Any]) -> int:
    """The oldest format that holds everything in ``plain``."""
    params = plain.get("params", {})
    weighted_kde = plain.get("family") == "kde" and "weights" in params  # a mixture's are old
    needs_two = "discrete_columns" in plain or "rotation" in params or weighted_kde
    if "bounds" in plain:
        return 3
    return 2 if needs_two else 1


def builtin(value: Any) -> Any:
    """numpy scalars as the Python numbers they are, so that saved files load (the
    allowlist has no numpy scalar type)."""
    if isinstance(value, dict):
        return {key: builtin(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(builtin(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode(plain: dict[str, Any]) -> bytes:
    """The bytes of a model file holding ``plain`` (checked to be plain data first)."""
    check_plain(plain, "model")
    return pickle.dumps(plain, protocol=PICKLE_PROTOCOL)


def write(plain: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a model file atomically: never a partial file, never a clobbered good one."""
    payload = encode(plain)
    with atomic_write(path) as handle:
        handle.write(payload)
