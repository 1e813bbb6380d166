"""Writing output files safely: atomically where the target is a file, in place where it is not.

A regular file (or a new name) is written to a temporary file in the target's folder, then
renamed over it: a failure or an interrupt at any point leaves either the old file untouched
or the complete new one, never a partial file. The rename goes to the real target behind a
symbolic link, so the link stays a link.

Some outputs are not files to replace: ``-o /dev/null`` discards, ``-o /dev/stdout`` is the
terminal or a pipe, a named pipe feeds a reader. Renaming over those would replace a device
or a pipe with a regular file (as root, ``/dev/null`` itself), so character devices and named
pipes are written in place. Block devices, sockets and folders are refused.

:data:`written` lists the outputs completed so far in this process, so that an interrupted
command can say truthfully what it wrote.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from gencli.errors import OutputError, raise_if_stopped

#: Outputs finished in this process (their paths as given), in order.
written: list[str] = []
#: Special outputs (devices, pipes) that received some bytes before the process stopped.
touched: list[str] = []

_TEMP_SUFFIX_BYTES = 16  # ".", ".XXXXXXXX", ".tmp" around the name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def reason(exc: OSError) -> str:
    """An OS error's reason in the words of a one-line message."""
    return exc.strerror or str(exc)


def resolve_target(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """(the file an output path names, whether it is written in place), or one line saying
    why it cannot be an output.

    A device or a named pipe, however it is reached (``/dev/stdout`` is a link into /proc),
    is written in place through the path as given. Otherwise symbolic links are followed, a
    dangling one to the file it would create, so that the rename replaces the real file.
    """
    given = Path(path)
    if str(path) == "":
        raise OutputError("an output path is empty; give a file name")
    try:
        info: os.stat_result | None = os.stat(given)
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a link loop, a path through a file, a name too long
        if exc.errno == errno.ENAMETOOLONG:
            raise OutputError(_too_long(given)) from exc
        raise OutputError(f"{given}: cannot be written: {reason(exc)}") from exc
    if info is not None:
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            return given, True
        if stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{given}: is a folder; give a file name for the output")
        if not stat.S_ISREG(info.st_mode):
            kind = "a block device" if stat.S_ISBLK(info.st_mode) else "a socket"
            raise OutputError(
                f"{given}: is {kind}, not a file gencli can write; choose a file name"
            )
    target = Path(os.path.realpath(given))
    folder = target.parent
    if info is None and not folder.is_dir():
        shown = given.parent if str(given.parent) else Path(".")
        raise OutputError(f"{given}: folder {shown} does not exist; create it first")
    if len(os.fsencode(target.name)) > _name_max(folder):
        raise OutputError(_too_long(given))
    return target, False


def _too_long(given: Path) -> str:
    """The refusal of a name or path too long for the file system, the name cut short."""
    folder = given.parent if given.parent.is_dir() else Path(".")
    name, limit = os.fsencode(given.name), _name_max(folder)
    shown = given.name if len(given.name) <= 60 else f"{given.name[:28]}...{given.name[-28:]}"
    if len(name) > limit:
        return (
            f"{shown}: the file name is {len(name)} bytes, longer than the {limit} a name may "
            "have here; choose a shorter name"
        )
    return f"{shown}: the path is longer than the file system allows; choose a shorter name"


def check_outputs(
    outputs: Sequence[str | os.PathLike[str] | tuple[str | os.PathLike[str] | None, str] | None],
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> None:
    """Refuse, before any work, outputs that cannot be written, that are one of the inputs,
    or that are the same file as another output ('-' is stdout and is not checked).

    An output may come with what it is (``(path, "the report's figure")``) for the message.
    """
    seen: dict[Path, str] = {}
    for entry in outputs:
        output, what = entry if isinstance(entry, tuple) else (entry, "")
        if output is None or str(output) == "-":
            continue
        target, special = resolve_target(output)
        if not special:
            folder = target.parent
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(
                    f"{output}: folder {folder} is not writable; choose another output path"
                )
        for source in inputs:
            if source is None or str(source) == "-":
                continue
            if not special and _same_file(target, Path(source)):
                role = f"would be {what}, but it " if what else ""
                raise OutputError(
                    f"{output}: {role}is also an input; writing it would destroy it. "
                    "Choose another output path"
                )
        if target in seen and not special:
            first = seen[target] or "another output"
            raise OutputError(
                f"{output}: is also where {first} goes; one would overwrite the other. "
                "Choose different paths"
            )
        seen[target] = what


def _same_file(target: Path, source: Path) -> bool:
    try:
        if target.exists() and source.exists() and os.path.samefile(target, source):
            return True
        return target == Path(os.path.realpath(source))
    except OSError:
        return False


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open ``path`` for writing: a temporary sibling renamed over it on success, or the
    device or named pipe itself (see the module docstring).

    The temporary file is removed on any exception (including KeyboardInterrupt), so an
    existing file at ``path`` is never clobbered by a half-written one.
    """
    target, special = resolve_target(path)
    if special:
        with _in_place(target, str(path), mode) as handle:
            yield handle
        written.append(str(path))
        return
    folder = target.parent
    room = _name_max(folder) - _TEMP_SUFFIX_BYTES
    stem = os.fsdecode(os.fsencode(target.name)[: max(room, 1)])
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    except UnicodeDecodeError:  # the cut fell inside a character
        fd, tmp_name = tempfile.mkstemp(prefix=".gencli.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {folder}: {reason(exc)}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            raise_if_stopped()  # a stop signal whose exception was swallowed must not publish
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {reason(exc)}; nothing was changed") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    written.append(str(path))


@contextlib.contextmanager
def _in_place(target: Path, shown: str, mode: str) -> Iterator[IO]:
    """Write to a character device or a named pipe as it is (never replace it)."""
    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(
                f"{shown}: is a named pipe with no reader; start the reader first"
            ) from exc
        raise OutputError(f"{shown}: cannot write: {reason(exc)}") from exc
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    touched.append(shown)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            raise_if_stopped()
            handle.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write: {reason(exc)}") from exc
    touched.remove(shown)


def seekable(handle: IO) -> bool:
    """Whether ``handle`` can go back to rewrite a header (a file can, a pipe cannot)."""
    try:
        return bool(handle.seekable())
    except (OSError, ValueError, AttributeError):
        return False
