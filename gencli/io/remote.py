"""Data at a URL: ``s3://``, ``gs://``, ``https://``, ``file://``, ``memory://`` and every other
protocol fsspec knows, read through fsspec (the layer pandas, Dask and pyarrow share).

A URL may name a file, a folder of part files or a glob, like a local path. fsspec comes with
the ``dask`` extra; a protocol's own package (s3fs, gcsfs, aiohttp for http) with whatever
installs it. Every failure, a missing package, a missing file, a refused connection, is one
line naming the URL.
"""

from __future__ import annotations

import glob
import posixpath
import re
from typing import Any

from gencli.errors import DataError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_SUFFIXES = (".csv", ".txt", ".tsv", ".tab", ".npy", ".parquet", ".pq")


def is_url(text: object) -> bool:
    """Whether ``text`` is a URL (``scheme://...``; one-letter schemes are Windows drives)."""
    return isinstance(text, str) and _URL.match(text) is not None


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's filesystem for ``url`` and the path on it."""
    scheme = url.split("://", 1)[0]
    try:
        import fsspec.core
    except ImportError:
        raise DataError(
            f"{url}: reading URLs needs fsspec; install it with pip install 'gencli[dask]'"
        ) from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise DataError(f"{url}: cannot read {scheme}:// URLs here ({_short(exc)})") from None


def expand_url(url: str) -> list[str]:
    """The data files a URL names: itself, a glob's matches or a folder's data files, sorted
    (hidden and ``_``-prefixed names left out, as for local folders)."""
    fs, path = filesystem(url)
    try:
        if glob.has_magic(path):
            found = [p for p in sorted(fs.glob(path)) if fs.isfile(p) and _visible(p, None)]
            if not found:
                raise DataError(f"{url}: no data file matches this pattern; check it")
        elif fs.isdir(path):
            found = [
                p
                for p in sorted(fs.find(path))
                if p.lower().endswith(_SUFFIXES) and _visible(p, path)
            ]
            if not found:
                raise DataError(
                    f"{url}: is a folder with no data files (.csv, .tsv, .npy, .parquet) in it"
                )
        else:
            return [url]
    except DataError:
        raise
    except Exception as exc:  # the filesystem's own errors: network, permission, ...
        raise _failure(url, exc) from None
    return [fs.unstrip_protocol(p) for p in found]


def open_url(url: str) -> tuple[Any, int | None]:
    """An open, seekable binary file at ``url`` and its size (None when unknown)."""
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
        if info.get("type") == "directory":
            raise DataError(f"{url}: is a folder, not a data file; pass a file")
        size = info.get("size")
        return fs.open(path, "rb"), int(size) if isinstance(size, int) and size > 0 else None
    except DataError:
        raise
    except Exception as exc:
        raise _failure(url, exc) from None


def local_path(url: str) -> str | None:
    """The local path a ``file://`` URL names (so outputs can be checked against it)."""
    if not url.lower().startswith("file://"):
        return None
    return str(filesystem(url)[1])


def _visible(path: str, root: str | None) -> bool:
    rest = path[len(root) :].lstrip("/") if root is not None else posixpath.basename(path)
    return not any(part.startswith(("_", ".")) for part in rest.split("/"))


def _failure(url: str, exc: BaseException) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{url}: no such file; check the URL")
    if isinstance(exc, PermissionError):
        return DataError(f"{url}: permission denied; check the credentials for it")
    return DataError(f"{url}: could not be read ({type(exc).__name__}: {_short(exc)})")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
