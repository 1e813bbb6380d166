"""The bytes of a model file as plain data, with the file never in charge of any work.

A model file is a pickle of builtins and numeric numpy arrays. Unpickling normally lets the
file call whatever it names; even numpy's own constructors are enough for a small file to
demand an uninitialised array of terabytes, a view of 8 bytes with zero strides, or a dtype
state that claims to hold Python objects. So this module never hands numpy the file's
arguments: :class:`_PlainUnpickler` (the pure-Python unpickler, whose memo is a dict, so a
memo index cannot make it allocate) resolves the few globals numpy's pickles name to
gencli's own stand-ins, which accept exactly what numpy writes for a plain numeric array,
check every size against the bytes the file really holds, and build the array themselves.

The work is bounded by the file: arrays may hold no more bytes than the file, the object
graph is walked once per reference and refused when it would take more visits than the
pickle has operations (a shared-reference DAG explodes; a tree never does), and nesting is
limited. Everything refused raises :class:`~gencli.errors.ModelFileError` with one line.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from gencli.density.plaindata import (
    ArrayShell,
    PlainDtype,
    Refused,
    Walk,
    array_dtype,
    array_shape,
    same,
)
from gencli.errors import ModelFileError
from gencli.limits import check_memory

__all__ = ["MAX_OPERATIONS", "read_plain"]

# A gencli model file takes about 250 pickle operations plus 2 per column (10,000 columns:
# 20,257); the pure-Python unpickler does about a million a second, so this is half a second.
MAX_OPERATIONS = 500_000
_CHECK_EVERY = 1 << 16  # operations between checks of the cap and of memory
_BYTES_PER_OPERATION = 160  # the most memory one operation can add (a dict and its memo)
_TRUST_HINT = "nothing in it was run. Only load model files you trust to be from `gencli fit`"


class _Stand:
    """What a global the file names resolves to: gencli's own check-then-build function."""

    shown_as = "numpy global"

    def __init__(self, name: str, build: Callable[..., Any] | None) -> None:
        self.name = name
        self.build = build

    def __repr__(self) -> str:
        return self.name


class _PlainUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with numpy's globals resolved to gencli's stand-ins and
    every operation that could build anything else refused."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = {}
    # What the base class sets up in load() (typeshed does not declare them).
    stack: list[Any]
    append: Callable[[Any], None]
    read: Callable[[int], bytes]
    readline: Callable[[], bytes]
    pop_mark: Callable[[], list[Any]]
    _unframer: Any
    metastack: list[list[Any]]

    def __init__(self, payload: bytes, name: str) -> None:
        self._file = io.BytesIO(payload)  # shares the payload's memory
        self._view = memoryview(payload)
        super().__init__(self._file)
        self.name = name
        self.payload_size = len(payload)
        self.operations = 0
        self.array_bytes = 0
        self.used_buffers: dict[int, bytearray] = {}  # by id, kept alive so ids stay unique

    def load(self) -> Any:
        """The base class's loop, counting operations as it goes (they bound the walk), with
        the cap on operations and the memory budget checked every so often."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch = self.read, self.dispatch
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError("pickle data was truncated")
                self.operations += 1
                if not self.operations % _CHECK_EVERY:
                    self._check_budget()
                dispatch[key[0]](self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def _check_budget(self) -> None:
        if self.operations >= MAX_OPERATIONS:
            raise Refused(
                f"it has more than {MAX_OPERATIONS:,} pickle operations (a gencli model file "
                "has about 250 plus 2 per column)"
            )
        check_memory(
            self.payload_size + _BYTES_PER_OPERATION * self.operations,
            f"{self.name}: reading it ({self.operations:,} pickle operations so far)",
            "pass a model file written by `gencli fit`",
        )

    # -- the stand-ins ------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        stand = _STANDS.get((module, name))
        if stand is None:
            shown = f"{module}.{name}"
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise Refused(f"it asks to load {shown}, which a gencli model file never does")
        return stand

    def _reconstruct(self, subtype: Any, shape: Any, code: Any) -> ArrayShell:
        if subtype is not _NDARRAY or not same(shape, (0,)) or code not in (b"b", "b"):
            raise Refused("it calls numpy's _reconstruct with arguments numpy never writes")
        return ArrayShell()

    def _frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        if type(buffer) is not bytearray or order not in ("C", "F"):
            raise Refused("it calls numpy's _frombuffer with arguments numpy never writes")
        return self._array(buffer, array_dtype(dtype), array_shape(shape), order == "F")

    def _array(
        self, raw: bytearray, dtype: np.dtype, shape: tuple[int, ...], fortran: bool
    ) -> np.ndarray:
        """The array of ``shape`` over the bytes ``raw``, once they match exactly.

        The array uses ``raw`` itself (a bytearray this unpickler made, so writable and not
        copied twice: loading is as fast as numpy's own); each one backs a single array.
        """
        if id(raw) in self.used_buffers:
            raise Refused("it builds two arrays over the same bytes, which numpy never writes")
        self.used_buffers[id(raw)] = raw
        count = math.prod(shape)
        need = count * dtype.itemsize  # Python integers: no overflow
        if need != len(raw):
            raise Refused(
                f"it declares an array of shape {shape} of {dtype.name} ({need:,} bytes) "
                f"that holds {len(raw):,} bytes"
            )
        self.array_bytes += need
        if self.array_bytes > self.payload_size:
            raise Refused(
                f"its arrays would take {self.array_bytes:,} bytes from a file of "
                f"{self.payload_size:,} (they share their bytes)"
            )
        if count == 0:
            return np.empty(shape, dtype=dtype)
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        return flat.reshape(shape, order="F" if fortran else "C")

    def _fill(self, shell: ArrayShell, state: Any) -> None:
        """numpy's ndarray.__setstate__((1, shape, dtype, is_fortran, raw)), checked."""
        if shell.array is not None:
            raise Refused("it sets an array's contents twice")
        if type(state) is not tuple or len(state) != 5 or not same(state[0], 1):
            raise Refused("it sets an array's state in a form numpy never writes")
        _, shape, dtype, fortran, raw = state
        shape, dtype = array_shape(shape), array_dtype(dtype)
        if type(fortran) is not bool:
            raise Refused("it sets an array's state in a form numpy never writes")
        if type(raw) is not bytearray:
            raise Refused(f"it fills an array from a {type(raw).__name__}, not from bytes")
        shell.array = self._array(raw, dtype, shape, fortran)

    # -- the operations -----------------------------------------------------------------

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if type(func) is not _Stand or type(args) is not tuple:
            raise Refused(f"it calls a {type(func).__name__}, which is not a function")
        if func.build is None:
            raise Refused(
                f"it calls {func.name} directly (an uninitialised array of any size, or a view "
                "with any strides), which numpy's own pickles never do"
            )
        self.stack[-1] = func.build(self, *args)

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if type(target) is ArrayShell:
            self._fill(target, state)
        elif type(target) is PlainDtype:
            target.set_state(state)
        else:
            raise Refused(f"it sets the state of a {type(target).__name__}")

    def _load_bytes(self, size: int) -> None:
        """Bytes as a bytearray, so that an array can use them in place; the size is checked
        against the file before anything is allocated."""
        if size > self.payload_size:
            raise EOFError("pickle data was truncated")
        if self._unframer.current_frame is None:
            # Outside a frame, where numpy's large arrays are: one copy, straight from
            # the payload (the base class would read a copy, then copy that again).
            start = self._file.tell()
            if start + size > len(self._view):
                raise EOFError("pickle data was truncated")
            self._file.seek(start + size)
            self.append(bytearray(self._view[start : start + size]))
        else:
            self.append(bytearray(self.read(size)))

    def _load_short_binbytes(self) -> None:
        self._load_bytes(self.read(1)[0])

    def _load_binbytes(self) -> None:
        self._load_bytes(struct.unpack("<I", self.read(4))[0])

    def _load_binbytes8(self) -> None:
        self._load_bytes(struct.unpack("<Q", self.read(8))[0])

    def _load_inst(self) -> None:
        module = self.readline()[:-1].decode("utf-8")
        name = self.readline()[:-1].decode("utf-8")
        self.find_class(module, name)
        raise Refused("it creates an object (INST), which a gencli model file never does")

    def _check_keys(self, items: list[Any]) -> None:
        # Before inserting: integer or float keys with equal hashes make each insertion
        # slower than the last (a quadratic bomb); string hashes are salted per process.
        for key in items[::2]:
            if type(key) is not str:
                kind = type(key).__name__
                raise Refused(f"it has a dictionary key of type {kind}, not a string")

    def _load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise pickle.UnpicklingError("odd number of items for DICT")
        self._check_keys(items)
        self.append(dict(zip(items[::2], items[1::2], strict=True)))

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not dict or len(items) % 2:
            raise pickle.UnpicklingError("SETITEMS on something that is not a dictionary")
        self._check_keys(items)
        target.update(zip(items[::2], items[1::2], strict=True))

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        if type(target) is not dict:
            raise pickle.UnpicklingError("SETITEM on something that is not a dictionary")
        self._check_keys([key])
        target[key] = value


def _refusal(what: str) -> Callable[[Any], None]:
    def refuse(self: Any) -> None:
        raise Refused(f"it {what}, which a gencli model file never does")

    return refuse


def _corrupt(self: Any) -> None:
    raise pickle.UnpicklingError("not a pickle operation")


def _dispatch() -> dict[int, Callable[[Any], None]]:
    ops = pickle
    table: dict[int, Callable[[Any], None]] = dict.fromkeys(range(256), _corrupt)
    table.update(pickle._Unpickler.dispatch)  # type: ignore[attr-defined,unused-ignore]
    plain = _PlainUnpickler
    table.update(
        {
            ops.REDUCE[0]: plain._load_reduce,
            ops.BUILD[0]: plain._load_build,
            ops.SHORT_BINBYTES[0]: plain._load_short_binbytes,
            ops.BINBYTES[0]: plain._load_binbytes,
            ops.BINBYTES8[0]: plain._load_binbytes8,
            ops.BYTEARRAY8[0]: plain._load_binbytes8,
            ops.INST[0]: plain._load_inst,
            ops.DICT[0]: plain._load_dict,
            ops.SETITEM[0]: plain._load_setitem,
            ops.SETITEMS[0]: plain._load_setitems,
            ops.OBJ[0]: _refusal("creates an object (OBJ)"),
            ops.NEWOBJ[0]: _refusal("creates an object (NEWOBJ)"),
            ops.NEWOBJ_EX[0]: _refusal("creates an object (NEWOBJ_EX)"),
            ops.EXT1[0]: _refusal("asks to load a registered extension"),
            ops.EXT2[0]: _refusal("asks to load a registered extension"),
            ops.EXT4[0]: _refusal("asks to load a registered extension"),
            ops.PERSID[0]: _refusal("refers to a persistent object outside the file"),
            ops.BINPERSID[0]: _refusal("refers to a persistent object outside the file"),
            ops.NEXT_BUFFER[0]: _refusal("refers to a buffer outside the file"),
            ops.READONLY_BUFFER[0]: _refusal("refers to a buffer outside the file"),
            ops.EMPTY_SET[0]: _refusal("holds a set"),
            ops.ADDITEMS[0]: _refusal("holds a set"),
            ops.FROZENSET[0]: _refusal("holds a set"),
        }
    )
    return table


_NDARRAY = _Stand("numpy.ndarray", None)
_RECONSTRUCT = _Stand("numpy's _reconstruct", _PlainUnpickler._reconstruct)
_FROMBUFFER = _Stand("numpy's _frombuffer", _PlainUnpickler._frombuffer)
_DTYPE = _Stand("numpy.dtype", lambda self, *args: PlainDtype(*args))
_STANDS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
}
_PlainUnpickler.dispatch = _dispatch()


# ----------------------------------------------------------------------------- reading


def read_plain(payload: bytes, name: str = "<bytes>") -> Any:
    """The plain data in the bytes of a model file; the only way gencli unpickles one.

    Refuses, with one line naming ``name``: bytes that are not a pickle, any global but
    numpy's plain-array ones, arrays whose bytes do not match their declared shape and
    dtype or that would take more bytes than the file, dtypes that are not plain numbers,
    deep nesting, and shared structures that would take more visits than the file has
    pickle operations. Nothing in the file runs, and numpy prints nothing.
    """
    if not payload:
        raise ModelFileError(f"{name}: is empty, not a gencli model file; pass a file from `fit`")
    if payload[:1] != b"\x80":
        raise ModelFileError(
            f"{name}: is not a gencli model file (not a pickle; is it a data file?); "
            "pass a model written by `gencli fit`"
        )
    unpickler = _PlainUnpickler(payload, name)
    try:
        raw = unpickler.load()
        return Walk(limit=unpickler.operations).plain(raw, "model")
    except Refused as exc:
        raise ModelFileError(f"{name}: refused: {exc}; {_TRUST_HINT}") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{name}: is not a valid gencli model file: {exc}") from None
    except MemoryError:
        raise ModelFileError(
            f"{name}: ran out of memory while reading it; is it really a model file from "
            "`gencli fit`?"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        struct.error,
        OverflowError,
    ) as exc:
        raise ModelFileError(
            f"{name}: is truncated or corrupted ({type(exc).__name__}); refit the model"
        ) from None
