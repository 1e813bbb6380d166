"""How commands print: summaries as lines or JSON, on stdout unless stdout carries data."""

from __future__ import annotations

import json
from typing import Any

from gencli.io.console import out, say


def writes_to_stdout(output: str) -> bool:
    """Whether ``output`` is stdout: '-', or stdout by another name (``/dev/stdout``)."""
    from gencli.io.atomic import standard_stream

    return standard_stream(output) == 1


def say_unless(message: str, quiet: bool) -> None:
    if not quiet:
        say(message)


def to_json(data: dict[str, Any]) -> str:
    """Strict JSON (NaN and infinities become null); json.dumps escapes control characters."""
    from gencli.io.jsonable import to_jsonable

    return json.dumps(to_jsonable(data), indent=2, allow_nan=False)


def emit(summary_lines: list[str], data: dict[str, Any], as_json: bool, to_stderr: bool) -> None:
    """The summary, as lines or JSON, on stdout (or on stderr when stdout carries data)."""
    if as_json:
        if to_stderr:
            say(to_json(data), escape=False)
        else:
            out(to_json(data), escape=False)
        return
    for line in summary_lines:
        if to_stderr:
            say(line)
        else:
            out(line)


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def estimate_note(estimate: dict[str, Any] | None) -> str:
    """How a training likelihood scored on a sample of the rows was estimated."""
    if not estimate:
        return ""
    return (
        f"; estimated on {estimate['rows_scored']:,} of {estimate['rows']:,} rows, "
        f"standard error {estimate['standard_error']:.4f}"
    )
