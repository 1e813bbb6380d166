"""Opening a data path or stdin safely: only things that end, and nothing that hangs.

A data path must be a regular file or a pipe. Devices (``/dev/zero`` never ends) and
sockets are refused from ``stat``, before they are opened. A named pipe is opened without
blocking and refused when nothing is writing to it (``open`` would wait forever); a pipe
that has a writer (``<(cat data.csv)``, ``/dev/stdin`` in a pipeline) is read as it comes.
Every other way a path can fail (a symbolic-link loop, a path through a file, no
permission, a name too long) gets its own one-line message.

Whole-table readers read through :func:`read_all`, which asks :func:`gencli.limits.check_memory`
before it starts (files: from their size) and as the bytes arrive (pipes), so an endless
stream is refused when it passes the memory budget instead of when the machine runs out.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gencli.errors import DataError
from gencli.io.remote import is_url, open_url
from gencli.limits import check_memory, format_size

READ_BLOCK = 1 << 23
_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_NOT_A_FILE = "give a regular file, or pipe the data in with '-'"


@dataclass
class Input:
    """An open source of bytes: ``size`` is known for regular files only."""

    name: str
    stream: IO[bytes]
    size: int | None
    path: str | None = None
    owned: bool = True
    seekable: bool = False  # a URL's file: random access without reading it all

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end (pipes may deliver less per read)."""
        parts = []
        wanted = n
        while wanted > 0:
            block = self.stream.read(min(wanted, READ_BLOCK))
            if not block:
                break
            parts.append(block)
            wanted -= len(block)
        return b"".join(parts)

    def close(self) -> None:
        if self.owned:
            self.stream.close()


class Prefixed(io.RawIOBase):
    """A stream that yields ``head`` and then the rest of ``tail`` (a pipe after a peek)."""

    def __init__(self, head: bytes, tail: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._tail.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._tail.close()
        super().close()


@functools.cache
def _pipefs_device() -> int:
    """The device number of anonymous pipes (named pipes live on their file system)."""
    read_end, write_end = os.pipe()
    try:
        return os.fstat(read_end).st_dev
    finally:
        os.close(read_end)
        os.close(write_end)


def _explain_os_error(path: str, exc: OSError) -> DataError:
    """One line naming what is wrong with ``path`` and what to do."""
    code = exc.errno
    if code == errno.ELOOP:
        return DataError(
            f"{path}: the symbolic links in this path loop (too many levels of symbolic "
            "links); point the link at the data file"
        )
    if code == errno.ENOTDIR:
        blocker = next(
            (p for p in reversed(Path(path).parents) if p.exists() and not p.is_dir()), None
        )
        where = f"{blocker} is a file, not a folder" if blocker else "a part of it is a file"
        return DataError(f"{path}: {where}, so nothing can be inside it; check the path")
    if code == errno.ENAMETOOLONG:
        longest = max(os.fsencode(path).split(b"/"), key=len)
        limit = _name_max(path)
        if len(longest) > limit:
            return DataError(
                f"{path}: the name {os.fsdecode(longest[:20])!r}... is {len(longest)} bytes "
                f"long, more than the {limit} the file system allows; shorten it"
            )
        return DataError(f"{path}: the path is longer than the system allows; shorten it")
    if code in (errno.EACCES, errno.EPERM):
        return DataError(
            f"{path}: permission denied; make the file (and its folders) readable, or "
            "run as a user who may read it"
        )
    if code == errno.ENOENT:
        if os.path.islink(path):
            return DataError(
                f"{path}: is a symbolic link to {os.readlink(path)!r}, which does not exist; "
                "fix the link"
            )
        return DataError(f"{path}: no such file; check the path")
    if code == errno.EISDIR:
        return DataError(f"{path}: is a folder, not a data file; pass a file")
    return DataError(f"{path}: cannot read: {exc.strerror or exc}; check the file")


def _name_max(path: str) -> int:
    folder = os.path.dirname(path) or "."
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return int(os.pathconf(folder or ".", "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _refuse_kind(name: str, mode: int) -> None:
    kind = _KINDS.get(stat.S_IFMT(mode))
    if kind is not None:
        raise DataError(f"{name}: is {kind}, not a data file; {_NOT_A_FILE}")
    if stat.S_ISDIR(mode):
        raise DataError(f"{name}: is a folder, not a data file; pass a file")


def check_input(source: str | os.PathLike[str]) -> None:
    """Refuse a data path that cannot be read as data, without opening it."""
    if str(source) == "-" or is_url(source):
        return  # a URL is checked when it is opened
    path = os.fspath(source)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _explain_os_error(path, exc) from None
    except ValueError as exc:  # a NUL byte in the name
        raise DataError(f"{path!r}: is not a valid path ({exc}); check it") from None
    _refuse_kind(path, info.st_mode)


def open_input(source: str | os.PathLike[str], stdin: IO[bytes] | None = None) -> Input:
    """Open a data path (or '-' for ``stdin``) for reading, refusing what would not end."""
    if str(source) == "-":
        return _open_stdin(stdin)
    if is_url(source):
        stream, url_size = open_url(str(source))
        return Input(str(source), stream, url_size, seekable=True)
    path = os.fspath(source)
    check_input(path)
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise _explain_os_error(path, exc) from None
    try:
        info = os.fstat(fd)
        _refuse_kind(path, info.st_mode)  # it may have changed since the stat
        if stat.S_ISFIFO(info.st_mode):
            return _open_pipe(path, fd, named=info.st_dev != _pipefs_device())
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    size = info.st_size if stat.S_ISREG(info.st_mode) and info.st_size > 0 else None
    return Input(path, stream, size, path=path)


def _open_pipe(path: str, fd: int, *, named: bool) -> Input:
    """A pipe opened without blocking: refuse a named one nothing writes to (its first
    read says end-of-file at once); read any other as a blocking stream."""
    try:
        first = os.read(fd, 1 << 16)
    except BlockingIOError:
        first = None  # a writer is there but has not written yet
    if first == b"" and named:
        raise DataError(
            f"{path}: is a named pipe with nothing writing to it; start the writer first, "
            "or pipe the data in with '-'"
        )
    os.set_blocking(fd, True)
    raw = os.fdopen(fd, "rb", buffering=0)
    stream: IO[bytes] = io.BufferedReader(Prefixed(first or b"", raw)) if first else raw
    return Input(path, stream, None)


def _open_stdin(stdin: IO[bytes] | None) -> Input:
    if stdin is None and sys.stdin is None:  # descriptor 0 was closed when gencli started
        raise DataError(
            "<stdin>: is closed (<&-), so there is nothing to read; pipe the data in or give a file"
        )
    stream = stdin if stdin is not None else sys.stdin.buffer
    size = None
    try:
        fd = stream.fileno()
        info = os.fstat(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return Input("<stdin>", stream, None, owned=False)
    mode = info.st_mode
    if (stat.S_ISCHR(mode) and not os.isatty(fd)) or stat.S_ISBLK(mode):
        raise DataError(
            f"<stdin>: is {_KINDS[stat.S_IFMT(mode)]}, not data; redirect a data file "
            "(< data.csv) or pipe the data in"
        )
    if stat.S_ISREG(mode) and info.st_size > 0:
        try:
            size = max(0, info.st_size - os.lseek(fd, 0, os.SEEK_CUR))
        except OSError:
            size = None
    return Input("<stdin>", stream, size, owned=False)


def read_all(
    source: Input,
    head: bytes | bytearray,
    need: Callable[[int], float],
    hint: str,
) -> bytearray:
    """``head`` and the rest of ``source``, asking the memory budget first and as it grows.

    ``need(n)`` is the memory reading a table of ``n`` bytes takes (the bytes, and what is
    built from them); a file is judged by its size before anything is read, a pipe after
    each block.
    """
    if source.size is not None:
        check_memory(
            need(max(source.size, len(head))),
            f"reading {source.name} ({format_size(source.size)})",
            hint,
        )
    buffer = bytearray(head)
    while True:
        block = source.stream.read(READ_BLOCK)
        if not block:
            return buffer
        buffer += block
        if source.size is None or len(buffer) > source.size:
            check_memory(
                need(len(buffer)),
                f"reading {source.name} ({format_size(len(buffer))} so far, not at its end)",
                hint,
            )
