"""Who reads gencli's messages: a person at the command line, or a Python program.

The library writes each message once, in the command line's words (``--reg-covar``,
``--model kde``). While a command runs, :func:`command_line` says so; anywhere else the
reader is a Python caller, and a message's flags are shown as the Python API's parameters
(``reg_covar``, ``model='kde'``, see :func:`python_words`) when the message is shown, so
an error raised on a worker or a Dask cluster reads right wherever it lands. The same
switch decides whether a fit's repairs become Python warnings (the command line prints
them itself) and what a model file records as the command that made it.

The switch is process-wide, not a context variable: errors are raised on the candidate
search's worker threads too, and they must speak the caller's language. On a Dask worker
process (whose reader is elsewhere) messages keep the flags.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

_depth = 0  # how many command-line invocations are running (CliRunner nests them)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Messages raised or shown inside this block are for a person at the command line."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def process_is_command_line() -> None:
    """For the ``gencli`` process itself: the command line until the process ends."""
    global _depth
    _depth += 1


def at_command_line() -> bool:
    """Whether a command is running (its flags are the vocabulary), not a Python call."""
    return _depth > 0


#: The values a flag takes that read as that parameter's value ('--model kde').
CHOICES: dict[str, frozenset[str]] = {
    name: frozenset(values.split())
    for name, values in {
        "model": "auto gmm kde",
        "covariance": "full diag tied spherical auto",
        "select": "bic aic heldout",
        "missing": "em",
        "engine": "local dask",
        "bandwidth": "scott silverman cv",
        "kernel": "gaussian tophat epanechnikov exponential linear cosine",
        "discrete": "auto warn none",
        "bounds": "auto",
        "format": "csv tsv npy parquet",
        "output-format": "csv tsv npy parquet",
    }.items()
}
#: Flags that are switches: '--dropna' is ``dropna=True``, '--no-refit' ``refit=False``.
SWITCHES = frozenset({"dropna", "allow-underflow", "header", "refit", "standardize"})
#: Flags whose Python spelling is another parameter's value.
SPECIAL = {"approx": "mode='approx'", "exact": "mode='exact'", "proba": "predict_proba()"}
#: Flags that are not gencli's parameters (pip's, or the command line's own).
KEPT = frozenset({"upgrade", "help", "debug", "version", "quiet", "json"})

_FLAG = re.compile(
    r"(?<![\w'\"/=.-])--(?P<flag>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)"
    r"(?: (?P<value>[\w.-]+(?:,[\w.-]+)+"  # a list a,b
    r"|[\w.-]+(?:\|[\w.-]+)+"  # alternatives csv|npy
    r"|-?\d[\d.]*(?:e-?\d+)?"  # a number
    r"|[a-z][a-z0-9]*))?"  # a word: a value if it is one of the flag's CHOICES
    r"(?=[\s,;:)\]]|$)"
)


def python_words(text: str) -> str:
    """``text`` with its command-line flags written as Python parameters.

    '--reg-covar' becomes 'reg_covar', '--validation 0' 'validation=0', '--model kde'
    "model='kde'", '--columns a,b' "columns='a,b'", '--no-standardize' 'standardize=False',
    '--approx' "mode='approx'".
    A word after a flag that is not one of its values stays a word ('--components or').
    """

    def rewrite(match: re.Match[str]) -> str:
        flag, value = match.group("flag"), match.group("value")
        if flag in KEPT:
            return match.group(0)
        rest = f" {value}" if value is not None else ""
        if flag in SPECIAL:
            return SPECIAL[flag] + rest
        if flag.startswith("no-") and flag[3:] in SWITCHES:
            return f"{flag[3:].replace('-', '_')}=False{rest}"
        name = flag.replace("-", "_")
        if flag in SWITCHES:
            return f"{name}=True{rest}"
        if value is None:
            return name
        if "|" in value:  # one of these values
            return f"{name}=" + "|".join(repr(v) for v in value.split("|"))
        if "," not in value and (value[0].isdigit() or value[0] == "-"):
            return f"{name}={value}"
        if "," in value or value in CHOICES.get(flag, ()):
            return f"{name}={value!r}"
        return f"{name} {value}"

    return _FLAG.sub(rewrite, text)


def for_reader(text: str) -> str:
    """``text`` as its reader should see it: flags at the command line, parameters else.

    On a Dask worker the reader is elsewhere (the command line or a Python caller): a
    message composed there keeps the flags, which the client rewrites when it shows it.
    """
    return text if at_command_line() or _on_dask_worker() else python_words(text)


def _on_dask_worker() -> bool:
    distributed = sys.modules.get("distributed")  # never imported just to ask
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except (ValueError, AttributeError):
        return False
    return True


def recorded_command(call: Callable[[], str]) -> str:
    """What a model file records as the command that made it: the command line exactly as
    typed, or, from Python, the call (``sys.argv`` is ``['-c']`` after ``python -c``)."""
    return shlex.join(sys.argv) if at_command_line() else call()


def python_call(name: str, function: Callable[..., Any], arguments: Mapping[str, Any]) -> str:
    """``name(first, key=value, ...)`` with the arguments that differ from ``function``'s
    defaults; data (arrays, frames, tables) is shown by its kind and shape, not its values,
    and callbacks (which listen, not shape the result) are left out."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items()}
    items = list(arguments.items())
    shown = [_short(items[0][1])] if items else []
    for key, value in items[1:]:
        if callable(value) or (key in defaults and _same(value, defaults[key])):
            continue
        shown.append(f"{key}={_short(value)}")
    return f"{name}({', '.join(shown)})"


def _same(value: Any, default: Any) -> bool:
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # an array compared element by element
        return False


def _short(value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return repr(os.fspath(value))
    shape = getattr(value, "shape", None)
    if hasattr(value, "source") and hasattr(value, "values"):  # a gencli Table
        rows, cols = value.values.shape
        return f"<table {value.source} {rows}x{cols}>"
    if shape is not None:
        kind = "DataFrame" if hasattr(value, "columns") else type(value).__name__
        return f"<{kind} {'x'.join(str(n) for n in shape)}>"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)}>"
    return repr(value)
