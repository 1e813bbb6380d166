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
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from gencli.errors import OutputError, raise_if_stopped
from gencli.io.remote import is_url, local_path

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
    text = os.fspath(path)
    if text == "":
        raise OutputError("an output path is empty; give a file name")
    if is_url(text):
        raise OutputError(
            f"{text}: outputs are local files (URLs are for reading data); write a local "
            "file and copy it"
        )
    if text.endswith((os.sep, f"{os.sep}.", f"{os.sep}..")) or text in (".", ".."):
        raise OutputError(f"{text}: names a folder, not a file; give a file name for the output")
    try:
        info: os.stat_result | None = os.stat(given)
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a link loop, a path through a file, a name too long
        if exc.errno == errno.ENAMETOOLONG:
            raise OutputError(_too_long(given)) from exc
        raise OutputError(f"{given}: cannot be written: {reason(exc)}") from exc
    if info is not None:
        if standard_stream(given) is not None:
            return given, True  # stdout or stderr by another name: written through it
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
        shown = folder if given.is_symlink() else (given.parent if str(given.parent) else ".")
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


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def standard_stream(path: str | os.PathLike[str]) -> int | None:
    """1 or 2 when ``path`` is this process's stdout or stderr under another name
    (``/dev/stdout``, ``/proc/self/fd/1``, the file or pipe the shell redirected to), else
    None. Such an output is written through that descriptor, as '-' is: replacing the file
    would lose what the shell appended before, and a rename would not reach a pipe."""
    if os.fspath(path) == "-":
        return 1
    try:
        identity = _identity(os.stat(path))
    except (OSError, ValueError):
        return None
    for fd in (1, 2):
        try:
            if _identity(os.fstat(fd)) == identity:
                return fd
        except OSError:
            continue
    return None


def _regular_identity(fd: int) -> tuple[int, int] | None:
    """The identity of a standard descriptor when it is a regular file (a redirect)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return _identity(info) if stat.S_ISREG(info.st_mode) else None


def _input_identity(source: str | os.PathLike[str]) -> tuple[int, int] | None:
    if os.fspath(source) == "-":
        return _regular_identity(0)
    if is_url(source):
        local = local_path(str(source))
        if local is None:
            return None
        source = local
    try:
        return _identity(os.stat(source))
    except (OSError, ValueError):
        return None


def check_outputs(
    outputs: Sequence[str | os.PathLike[str] | tuple[str | os.PathLike[str] | None, str] | None],
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> None:
    """Refuse, before any work, outputs that cannot be written, that are one of the inputs,
    or that are the same file as another output. '-' as an input is stdin and as an output
    stdout: when the shell redirected them to or from a file, that file counts too
    (``gencli fit - -o data.csv < data.csv`` and ``gencli score m.pkl d.csv >> d.csv`` are
    refused, as ``cat`` refuses "input file is output file").

    An output may come with what it is (``(path, "the report's figure")``) for the message.
    """
    seen: dict[Path, str] = {}
    sources = [(source, _input_identity(source)) for source in inputs if source is not None]
    for entry in outputs:
        output, what = entry if isinstance(entry, tuple) else (entry, "")
        if output is None:
            continue
        if os.fspath(output) == "-" or standard_stream(output) is not None:
            stream = standard_stream(output) or 1
            written_to = _regular_identity(stream)
            for source, identity in sources:
                if written_to is not None and identity == written_to:
                    name = "stdin" if os.fspath(source) == "-" else str(source)
                    raise OutputError(
                        f"{'stdout' if stream == 1 else 'stderr'} is redirected to {name}, "
                        "which is also an input; writing it would destroy it. Redirect the "
                        "output to another file"
                    )
            continue
        target, special = resolve_target(output)
        if not special:
            folder = target.parent
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(
                    f"{output}: folder {folder} is not writable; choose another output path"
                )
        for source, identity in sources:
            if special:
                continue
            same = (
                identity == _identity(os.stat(target))
                if identity is not None and target.exists()
                else os.fspath(source) != "-" and _same_file(target, Path(source))
            )
            if same:
                role = f"would be {what}, but it " if what else ""
                shown = " (it is what stdin reads)" if os.fspath(source) == "-" else ""
                raise OutputError(
                    f"{output}: {role}is also an input{shown}; writing it would destroy it. "
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
    # The temporary file's name is chosen before the file is made, so a stop signal at any
    # moment (one delivered to another thread is raised here at the next check, even
    # inside the creating call) finds the name to remove.
    names: list[Path] = []
    opened = False
    try:
        try:
            fd = _open_temporary(folder, stem, names)
        except UnicodeError:  # the cut fell inside a character
            names.clear()
            fd = _open_temporary(folder, "gencli", names)
        opened = True
        tmp = names[-1]
        with os.fdopen(fd, mode) as handle:
            with _SyncBehind(fd):
                yield handle
            raise_if_stopped()  # a stop signal whose exception was swallowed must not publish
            handle.flush()
            os.fsync(handle.fileno())
        _copy_mode(target, tmp)
        os.replace(tmp, target)
        live_temporaries.discard(tmp)
    except OSError as exc:
        _remove(names)
        if not opened:
            raise OutputError(f"{path}: cannot write in {folder}: {reason(exc)}") from exc
        raise OutputError(f"{path}: cannot write: {reason(exc)}; it was left as it was") from exc
    except BaseException:
        _remove(names)
        raise
    written.append(str(path))


class _SyncBehind:
    """Pushes a temporary file's bytes to disk while it is still being written, so that the
    sync before the rename waits for the last few MB rather than for the whole file (160 MB
    of scores: 0.3 s here, the command's last step, against 0.05 s).

    A thread looks at the file's size every :data:`SYNC_EVERY_SECONDS` and syncs once
    :data:`SYNC_BYTES` more have reached the kernel; it is stopped and joined before the file
    is closed (its descriptor must not outlive the file), whatever ends the writing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _SyncBehind:
        thread = threading.Thread(target=self._run, name="gencli-sync-behind", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the final sync does it all
            return self
        self.thread = thread
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is None:
            return
        try:
            self.thread.join()
        except BaseException:  # a stop signal during the join: the thread ends within a sync,
            self.thread.join()  # and the file must not be closed under it
            raise

    def _run(self) -> None:
        synced = 0
        while not self.stop.wait(SYNC_EVERY_SECONDS):
            try:
                size = os.fstat(self.fd).st_size
                if size - synced >= SYNC_BYTES and not self.stop.is_set():
                    _data_sync(self.fd)
                    synced = size
            except OSError:  # the final fsync reports any error that matters
                return


_data_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
#: Bytes written since the last sync that start another one (see :class:`_SyncBehind`).
SYNC_BYTES = 32 << 20
SYNC_EVERY_SECONDS = 0.25

_TEMP_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"
#: Temporary files being written. A stop signal that lands after one is made but before the
#: writer's cleanup is registered (a context manager entered, not yet on its exit stack)
#: unwinds past it; the stop handler removes what is left here before the process ends.
live_temporaries: set[Path] = set()


def remove_live_temporaries() -> None:
    """Remove every temporary file still being written (the stop handler's last step)."""
    _remove(list(live_temporaries))


def _open_temporary(folder: Path, stem: str, names: list[Path]) -> int:
    """Create ``.<stem>.<8 random letters>.tmp`` in ``folder`` (private, never an existing
    file or link), appending its name to ``names`` before the file exists."""
    import secrets

    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        letters = "".join(secrets.choice(_TEMP_LETTERS) for _ in range(8))
        names.append(folder / f".{stem}.{letters}.tmp")
        live_temporaries.add(names[-1])
        try:
            return os.open(names[-1], flags, 0o600)
        except FileExistsError:
            live_temporaries.discard(names.pop())  # somebody else's: never removed
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(folder))


def _remove(names: list[Path]) -> None:
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            name.unlink(missing_ok=True)
        live_temporaries.discard(name)


def _copy_mode(target: Path, tmp: Path) -> None:
    """The new file gets the old one's permissions (a private file stays private) and, when
    gencli may set it, its owner; a new file gets the usual 0666 less the umask."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        os.chmod(tmp, 0o666 & ~_umask())
        return
    if hasattr(os, "chown") and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.chown(tmp, old.st_uid, old.st_gid)
    os.chmod(tmp, stat.S_IMODE(old.st_mode))


@contextlib.contextmanager
def _in_place(target: Path, shown: str, mode: str) -> Iterator[IO]:
    """Write to a character device or a named pipe as it is (never replace it); to this
    process's own stdout or stderr through its descriptor, so a shell's ``>>`` appends."""
    stream = standard_stream(target)
    if stream is not None:
        fd = os.dup(stream)
    else:
        flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(target, flags)
        except OSError as exc:
            if exc.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(target).st_mode):
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
