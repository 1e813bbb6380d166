"""The paths a job reads and writes, checked before any work: a data path (or the files a
folder, glob or URL names) and the outputs, which must never be one of the inputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gencli.errors import OutputError
from gencli.io.atomic import check_outputs
from gencli.io.remote import expand_url, is_url
from gencli.io.sources import check_input


def input_paths(data: Any, many: bool) -> list[Any]:
    """The files ``data`` names (a folder or glob expanded), the one path checked first so
    that a bad data path is named as such."""
    if many:
        from gencli.io.parts import expand

        return list(expand(data))
    assert isinstance(data, (str, os.PathLike))
    check_input(data)
    return [data]


def check_fit_outputs(output: Any, report: Any, inputs: Sequence[Any]) -> None:
    """Refuse, before reading, a model file on stdout and outputs that are inputs."""
    if os.fspath(output) == "-":
        raise OutputError(
            "-o -: a model file does not go to stdout; give a file name such as -o model.pkl"
        )
    outputs: list[Any] = [(output, "the model file"), (report, "the report")]
    check_outputs(outputs, inputs)
    if report is not None:
        from gencli.reports.files import report_outputs

        check_outputs([outputs[0], *report_outputs(report)], inputs)


def is_many(data: Any) -> bool:
    """Whether ``data`` names several files: a list, a folder or a glob pattern."""
    import glob

    if not isinstance(data, (str, os.PathLike)):
        return True
    text = os.fspath(data)
    if is_url(text):  # a folder or a glob of part files, or one file
        return expand_url(text) != [text]
    return text != "-" and (
        os.path.isdir(text) or (glob.has_magic(text) and not os.path.exists(text))
    )
