"""Plain data: what a model file may hold, checked by one walk whose work is bounded.

Plain data is builtins (str, int, float, bool, None, and dicts with string keys, lists and
tuples of them) and numpy arrays of plain numbers, nested at most :data:`MAX_DEPTH` deep.
:class:`Walk` checks it once per reference and returns a fresh tree, with each
:class:`ArrayShell` the unpickler filled replaced by its array; given a limit on visits it
refuses the structures of shared containers that would unfold exponentially.

The stand-ins :mod:`gencli.density.plainpickle` gives a pickle instead of numpy's own dtype and
array constructors live here too: :class:`PlainDtype`, :class:`ArrayShell` and the checks
of a declared shape and dtype.
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from gencli.errors import ModelFileError

__all__ = [
    "MAX_DEPTH",
    "ArrayShell",
    "PlainDtype",
    "Refused",
    "Walk",
    "array_dtype",
    "array_shape",
    "check_plain",
    "same",
]

MAX_DEPTH = 32  # a gencli model file nests five levels deep; anything far deeper is junk
_ARRAY_KINDS = "biuf"
_PLAIN_SCALARS = (str, int, float, bool, type(None))
_INT_BITS = 64  # counts, seeds and versions; a longer integer is junk (and slow to print)
MAX_DIMENSIONS = 32  # numpy allows 64; gencli's arrays have one to three
_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
_BYTE_ORDERS = ("<", ">", "|", "=")


class Refused(Exception):
    """The file asks for something a gencli model file never holds (the text says what)."""


class ArrayShell:
    """numpy's _reconstruct(ndarray, (0,), b'b'): an empty shell that the unpickler fills
    (BUILD) after checking the state; the walk puts its array in its place."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


def same(found: Any, expected: Any) -> bool:
    """Equal and of the same type (True is not 1 here)."""
    return type(found) is type(expected) and found == expected


class PlainDtype:
    """numpy.dtype(code, False, True) as numpy pickles a plain numeric dtype, then its state."""

    shown_as = "numpy dtype"

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if type(code) is not str:
            raise Refused(f"it declares a numpy dtype from a {type(code).__name__}")
        if code not in _CODES:
            raise Refused(f"it declares a numpy dtype {code[:20]!r}, not one of plain numbers")
        if type(align) not in (bool, int) or align or type(copy) not in (bool, int):
            raise Refused("it declares a numpy dtype with options numpy never writes")
        self.code = code
        self.dtype = np.dtype(code)
        self.built = False

    def set_state(self, state: Any) -> None:
        """Accept only the plain dtype's own state, in any byte order: no flags, fields,
        subarray or metadata (those are how a dtype claims to hold Python objects)."""
        expected = self.dtype.__reduce__()[2]
        if self.built:
            self._refuse("its state set twice")
        if type(state) is not tuple or len(state) != len(expected):
            self._refuse("a state numpy does not write")
        if state[1] not in _BYTE_ORDERS:
            self._refuse("a byte order that is none of < > | =")
        for i, what in enumerate(_STATE_PARTS):
            if i != 1 and not same(state[i], expected[i]):
                self._refuse(what)
        self.built = True
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])

    def _refuse(self, what: str) -> NoReturn:
        raise Refused(
            f"it declares a numpy {self.code} dtype with {what}, which plain numbers never have"
        )


# What each item of numpy's dtype state (3, byte order, subarray, names, fields, item size,
# alignment, flags) would mean if it differed from a plain dtype's.
_STATE_PARTS = (
    "a state version numpy does not write",
    "a byte order",
    "a subarray",
    "field names",
    "fields",
    "an item size of its own",
    "an alignment of its own",
    "object flags (it claims to hold Python objects)",
)


def array_shape(value: Any) -> tuple[int, ...]:
    """A declared shape: a tuple of at most :data:`MAX_DIMENSIONS` sizes below 2**63."""
    if (
        type(value) is not tuple
        or len(value) > MAX_DIMENSIONS
        or not all(type(n) is int and 0 <= n < 1 << 63 for n in value)
    ):
        raise Refused("it declares an array whose shape is not a tuple of sizes")
    return value


def array_dtype(value: Any) -> np.dtype:
    """The numpy dtype a declared :class:`PlainDtype` stands for (nothing else will do)."""
    if type(value) is not PlainDtype:
        raise Refused(f"it declares an array of {type(value).__name__}, not of a numeric dtype")
    return value.dtype


def _where(path: Any) -> str:
    """'model.params.means' from the linked (parent, key) pairs the walk carries; built
    only for a message, so a long key never costs the walk anything."""
    parts: list[str] = []
    while type(path) is tuple:
        path, key = path
        if type(key) is int:
            parts.append(f"[{key}]")
        else:
            shown = key if len(key) <= 40 else key[:37] + "..."
            parts.append(f".{shown}")
    parts.reverse()
    if len(parts) > 12:
        parts[6:-6] = ["..."]
    return str(path) + "".join(parts)


class Walk:
    """Check that a value is plain data (builtins and numeric arrays, nested at most
    :data:`MAX_DEPTH` deep) and return it with every array shell replaced by its array.

    Each reference is one visit: a tree of N objects takes N visits, however its leaves
    are shared, but a structure of shared containers (a DAG) takes exponentially many, so
    visits past ``limit`` are refused before the walk (or any later walk of the result,
    such as ``inspect`` rendering the metadata) can run away.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.visits = 0

    def plain(self, value: Any, path: Any, depth: int = 0) -> Any:
        self.visits += 1
        if self.limit is not None and self.visits > self.limit:
            raise Refused(
                f"it refers to the same nested data over and over (its {self.limit:,} pickle "
                f"operations unfold into more than {self.limit:,} references), which a gencli "
                "model file never does"
            )
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{_where(path)} is nested more than {MAX_DEPTH} levels deep")
        kind = type(value)
        if kind is dict:
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise ModelFileError(f"{_where(path)} has a key that is not a string")
                out[key] = self.plain(item, (path, key), depth + 1)
            return out
        if kind is list or kind is tuple:
            items = [self.plain(item, (path, i), depth + 1) for i, item in enumerate(value)]
            return items if kind is list else tuple(items)
        if kind is ArrayShell:
            if value.array is None:
                raise ModelFileError(f"{_where(path)} is an array without its contents")
            value = value.array
            kind = np.ndarray
        if kind is np.ndarray:
            _check_array(value, path)
            return value
        if kind not in _PLAIN_SCALARS:
            shown = getattr(kind, "shown_as", kind.__name__)
            raise ModelFileError(f"{_where(path)} holds a {shown}, not plain data")
        if kind is int and value.bit_length() > _INT_BITS:
            raise ModelFileError(f"{_where(path)} holds an integer of {value.bit_length()} bits")
        return value


def _check_array(array: np.ndarray, path: Any) -> None:
    dtype = array.dtype
    plain = np.dtype(dtype.str) if dtype.kind in _ARRAY_KINDS and dtype.names is None else None
    if (
        plain is None
        or dtype.hasobject
        or dtype.subdtype is not None
        or dtype.flags != plain.flags
        or dtype.itemsize != plain.itemsize
    ):
        raise ModelFileError(f"{_where(path)} is an array of {dtype}, not plain numbers")


def check_plain(value: Any, where: str = "model") -> Any:
    """``value`` if it is plain data a model file may hold (builtins and numeric arrays),
    else a :class:`ModelFileError` naming the first place that is not."""
    try:
        return Walk(limit=None).plain(value, where)
    except Refused as exc:
        raise ModelFileError(str(exc)) from None
